//! Black-box tests of the chunk change log: a process that shares the
//! database but not the data directory sees, in its own lexical index, what
//! another process wrote, within the poll interval, and deletions travel the
//! same way. Each process here has its own data directory, so its own
//! embedded vector shard: only the lexical signal is shared (a shared vector
//! index needs the Qdrant server backend).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::client::{collection_id, expect, Api};
use crate::helpers::{self, fixtures, Server, TestApp};
use crate::ingest::{create_collection, upload_and_wait};

/// A second node's data directory inside the test's directory (so it shares
/// the test's PostgreSQL database), and the environment that points it at
/// the first node's SQLite file when there is no PostgreSQL.
fn second_node(s: &TestApp, name: &str) -> (PathBuf, Vec<(String, String)>) {
    let dir = s.data.parent().expect("data dir has a parent").join(name);
    let mut env = Vec::new();
    if helpers::database_url(&dir).is_none() {
        env.push((
            "RAGCHAT_DATABASE_URL".to_string(),
            format!("sqlite://{}", s.data.join("ragchat.db").display()),
        ));
    }
    (dir, env)
}

fn run_on(dir: &Path, env: &[(String, String)], args: &[&str]) -> String {
    let out = helpers::cmd(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .output()
        .expect("run ragchat");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ragchat {args:?} failed:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Sources of a lexical search for `q` through the server, in every
/// collection the caller may read.
fn lexical_sources(s: &TestApp, token: &str, q: &str) -> Vec<String> {
    lexical_sources_at(&s.api, token, q)
}

fn lexical_sources_at(api: &Api, token: &str, q: &str) -> Vec<String> {
    let body = expect(
        api.post(
            "/api/v1/query",
            Some(token),
            Some(json!({"query": q, "mode": "lexical", "top_k": 10})),
        ),
        200,
        "lexical query",
    );
    sources(&body)
}

fn sources(body: &Value) -> Vec<String> {
    let mut out: Vec<String> = body["results"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter_map(|r| r["source"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.dedup();
    out
}

/// Sources of a lexical search from the CLI on another node's directory.
fn cli_sources(dir: &Path, env: &[(String, String)], q: &str) -> Vec<String> {
    let out = run_on(
        dir,
        env,
        &[
            "query",
            q,
            "--collection",
            "kb",
            "--mode",
            "lexical",
            "--top-k",
            "10",
            "--json",
        ],
    );
    sources(&serde_json::from_str(&out).expect("query --json prints JSON"))
}

#[test]
fn another_process_sees_chunk_changes_through_the_log() {
    let s = TestApp::start(
        &[("root", true)],
        &[],
        &[("RAGCHAT_LEXICAL_POLL_INTERVAL_MS", "200")],
    );
    let (root, _) = s.login("root");
    assert!(lexical_sources(&s, &root, "boundary layer shock").is_empty());

    // Node B writes: the CLI ingests into the shared database, with a
    // lexical index of its own.
    let (b, env) = second_node(&s, "node-b");
    let kb = fixtures().join("kb");
    run_on(
        &b,
        &env,
        &["ingest", kb.to_str().unwrap(), "--collection", "kb"],
    );

    // Node A (the server) follows the log and finds it, within a bound.
    let started = Instant::now();
    loop {
        let found = lexical_sources(&s, &root, "boundary layer");
        if found.contains(&"boundary-layers.md".to_string()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "node A never saw node B's chunks: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let ready = expect(s.api.get("/ready", Some(&root)), 200, "ready");
    let log = ready["checks"]["lexical_log"]["detail"]
        .as_str()
        .unwrap_or("");
    assert!(log.contains(": 0 behind"), "{ready}");
    let metrics = reqwest::blocking::get(s.server.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    for line in [
        "ragchat_lexical_log_positions_behind 0",
        "ragchat_lexical_log_behind_seconds 0.0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ragchat_lexical_log_applied_total ")
                && l != "ragchat_lexical_log_applied_total 0"),
        "{metrics}"
    );

    // Node A deletes a document; node B, started again, no longer finds it
    // and still finds the rest.
    let kb_id = collection_id(&s.api, &root, "kb");
    let docs = expect(
        s.api.get(
            &format!("/api/v1/collections/{kb_id}/documents"),
            Some(&root),
        ),
        200,
        "documents",
    );
    let doc = docs["items"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["source"] == "boundary-layers.md"))
        .and_then(|d| d["id"].as_str())
        .expect("boundary-layers.md listed")
        .to_string();
    let (status, body, _) = s.api.delete(
        &format!("/api/v1/collections/{kb_id}/documents/{doc}"),
        Some(&root),
    );
    assert_eq!(status, 204, "{body}");
    assert!(!lexical_sources(&s, &root, "boundary layer").contains(&"boundary-layers.md".into()));
    let seen_by_b = cli_sources(&b, &env, "boundary layer shock");
    assert!(
        !seen_by_b.contains(&"boundary-layers.md".into()),
        "{seen_by_b:?}"
    );
    assert!(
        seen_by_b.contains(&"shock-waves.txt".into()),
        "{seen_by_b:?}"
    );

    // A node with an empty data directory builds its index from the database.
    let (c, env_c) = second_node(&s, "node-c");
    assert_eq!(cli_sources(&c, &env_c, "boundary layer shock"), seen_by_b);

    // The collection goes through node A; then every node's lexical index
    // and the database agree again.
    let (status, body, _) = s
        .api
        .delete(&format!("/api/v1/collections/{kb_id}"), Some(&root));
    assert_eq!(status, 204, "{body}");
    assert!(lexical_sources(&s, &root, "boundary layer shock").is_empty());
    let data = s.data.clone();
    let server = s.server;
    server.stop();
    helpers::check_consistent(&data);
    // Node B has not run since the collection went: `check` shows its
    // lexical index as it left it, with the entries it has not applied.
    let check_b = |args: &[&str]| {
        let out = helpers::cmd(&b)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let report = check_b(&["check"]);
    assert!(report.contains("orphans in lexical index"), "{report}");
    assert!(report.contains("entries not applied yet"), "{report}");
    // Caught up, its lexical index agrees. With the embedded index its own
    // vector shard still holds what it embedded, so only vector orphans are
    // left, which --repair removes; on a Qdrant server both nodes share the
    // vectors, which the delete through A already removed.
    let report = check_b(&["check", "--catch-up"]);
    assert!(report.contains("lexical index 0 documents"), "{report}");
    assert!(!report.contains("in lexical index"), "{report}");
    let shared_vectors = helpers::qdrant::collection_for(&b).is_some();
    assert_eq!(
        report.contains("orphans in vector index"),
        !shared_vectors,
        "{report}"
    );
    run_on(&b, &env, &["check", "--repair"]);
    assert!(run_on(&b, &env, &["check"]).contains("consistent"));
}

/// Wait (at most 10 s, several poll intervals) until `api`'s lexical search
/// for `q` satisfies `ok`.
fn until(api: &Api, token: &str, q: &str, what: &str, ok: impl Fn(&[String]) -> bool) {
    let started = Instant::now();
    loop {
        let found = lexical_sources_at(api, token, q);
        if ok(&found) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: still {found:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_servers_on_one_database_find_each_others_writes() {
    let s = TestApp::start(
        &[("root", true)],
        &[],
        &[("RAGCHAT_LEXICAL_POLL_INTERVAL_MS", "200")],
    );
    let (root, _) = s.login("root");
    let (b_dir, env) = second_node(&s, "node-b");
    let mut b_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // Uploads wait in the receiving node's data directory, so only node A
    // runs workers here.
    b_env.extend([
        ("RAGCHAT_JOBS_WORKERS", "0"),
        ("RAGCHAT_LEXICAL_POLL_INTERVAL_MS", "200"),
    ]);
    let b = Server::start_with(&b_dir, &b_env);
    let b_api = Api::new(&b);

    let coll = create_collection(&s, &root, "turbines");
    upload_and_wait(
        &s,
        &root,
        &coll,
        &[(
            "cooling.txt",
            b"Gas turbine blades are cooled by air bled from the compressor. \
              The air flows through internal passages and leaves through small holes, \
              forming a film that shields the blade surface from the hot gas."
                .as_slice(),
        )],
    );
    let q = "turbine blade cooling film";
    assert_eq!(lexical_sources(&s, &root, q), ["cooling.txt"]);
    until(&b_api, &root, q, "node B never saw node A's upload", |f| {
        f == ["cooling.txt"]
    });

    // A delete through node B reaches node A.
    let docs = expect(
        b_api.get(
            &format!("/api/v1/collections/{coll}/documents"),
            Some(&root),
        ),
        200,
        "documents on node B",
    );
    let doc = docs["items"][0]["id"]
        .as_str()
        .expect("a document")
        .to_string();
    let (status, body, _) = b_api.delete(
        &format!("/api/v1/collections/{coll}/documents/{doc}"),
        Some(&root),
    );
    assert_eq!(status, 204, "{body}");
    assert!(lexical_sources_at(&b_api, &root, q).is_empty());
    until(
        &s.api,
        &root,
        q,
        "node A still finds the deleted document",
        |f| f.is_empty(),
    );
    let ready = expect(b_api.get("/ready", Some(&root)), 200, "node B ready");
    assert_eq!(ready["checks"]["lexical_log"]["ok"], true, "{ready}");
}
