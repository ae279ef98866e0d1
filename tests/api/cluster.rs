//! Black-box test of the scale-out deployment, all on loopback: PostgreSQL,
//! the Qdrant server, two API nodes that run no jobs (`jobs.workers = 0`),
//! each with a data directory (so a lexical index) of its own, and
//! `ragchat worker` processes sharing only the uploads directory with them.
//! It runs in the suite's PostgreSQL pass, where `scripts/test.sh` provides
//! both servers; on SQLite it says it is skipped.
//!
//! What it shows, in order: an upload through node A is done by the worker,
//! its progress streams from node B, and both nodes then answer every query
//! alike in all three modes; a delete through B leaves A's results; a worker
//! killed with SIGKILL mid-job loses nothing, as a new worker finishes the job
//! once the lease lapses; a node started on an empty data directory catches
//! up and agrees; and at the end `ragchat check` finds DB = Qdrant = each
//! node's Tantivy. Timings go to stderr (`--nocapture` shows them).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::client::{create_user_cli, expect, login, result_ids, Api, PASSWORD};
use crate::helpers::ws::try_connect;
use crate::helpers::{self, fixtures, run_ok, Server, TestDir};
use crate::ingest::{essay, upload_via, wait_job_via};

const MODES: [&str; 3] = ["dense", "lexical", "hybrid"];

/// How long a node may take to apply what another process logged. Nodes
/// poll every 200 ms here; the bound leaves room for a loaded CI machine.
const CATCH_UP: Duration = Duration::from_secs(20);

/// The worker's lease: short, so the test does not wait long for a dead
/// worker's job to be taken again.
const LEASE_SECS: &str = "3";

struct Cluster {
    dir: TestDir,
    uploads: String,
}

impl Cluster {
    /// A test directory with its PostgreSQL database and Qdrant collection,
    /// the admin `root` created; None (after saying so) without both servers.
    fn new() -> Option<Self> {
        let dir = TestDir::new();
        if helpers::database_url(dir.path()).is_none()
            || helpers::qdrant_collection(dir.path()).is_none()
        {
            eprintln!(
                "skipped: the cluster tests need both {} and RAGCHAT_TEST_POSTGRES \
                 (scripts/test.sh's PostgreSQL pass sets them)",
                helpers::qdrant::ENV
            );
            return None;
        }
        let cluster = Cluster {
            uploads: dir
                .path()
                .join("shared-uploads")
                .to_string_lossy()
                .into_owned(),
            dir,
        };
        create_user_cli(&cluster.path("node-a"), "root", PASSWORD, true);
        Some(cluster)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn node(&self, name: &str) -> Server {
        self.node_with(name, &[])
    }

    /// A node with more settings.
    fn node_with(&self, name: &str, extra: &[(&str, &str)]) -> Server {
        let mut env = vec![
            ("RAGCHAT_JOBS_WORKERS", "0"),
            ("RAGCHAT_LEXICAL_POLL_INTERVAL_MS", "200"),
            ("RAGCHAT_UPLOADS_DIR", self.uploads.as_str()),
        ];
        env.extend_from_slice(extra);
        Server::start_with(&self.path(name), &env)
    }

    /// `ragchat worker` with one job worker, until killed.
    fn worker(&self, name: &str) -> Worker {
        self.worker_with_uploads(name, Path::new(&self.uploads))
    }

    /// A worker that looks for uploads in `uploads`.
    fn worker_with_uploads(&self, name: &str, uploads: &Path) -> Worker {
        let child = helpers::cmd(&self.path(name))
            .env("RAGCHAT_UPLOADS_DIR", uploads)
            .env("RAGCHAT_JOBS_LEASE_SECS", LEASE_SECS)
            .env("RAGCHAT_JOBS_POLL_INTERVAL_MS", "200")
            .args(["worker", "--workers", "1"])
            .stdout(Stdio::null())
            .spawn()
            .expect("start ragchat worker");
        Worker(child)
    }
}

struct Worker(Child);

impl Worker {
    fn kill9(&mut self) {
        // std's kill is SIGKILL on Unix: no shutdown path runs.
        self.0.kill().expect("SIGKILL the worker");
        let status = self.0.wait().expect("reap the worker");
        assert!(!status.success(), "{status}");
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// What a node answers for `q` in `mode`: the chunks in rank order with their
/// fused score. Both nodes search the same Qdrant collection and an index
/// built from the same log, so this must match exactly.
fn answer(api: &Api, token: &str, q: &str, mode: &str) -> Vec<(String, String)> {
    let body = expect(
        api.post(
            "/api/v1/query",
            Some(token),
            Some(json!({"query": q, "mode": mode, "top_k": 10})),
        ),
        200,
        "query",
    );
    result_ids(&body)
}

/// Wait until `ok` holds for every query in every mode; returns how long
/// that took.
fn until(what: &str, queries: &[&str], ok: impl Fn(&str, &str) -> Result<(), String>) -> Duration {
    let started = Instant::now();
    loop {
        let failed = queries
            .iter()
            .flat_map(|q| MODES.iter().map(move |m| (*q, *m)))
            .find_map(|(q, m)| ok(q, m).err().map(|e| format!("{q:?} in {m} mode: {e}")));
        let Some(failed) = failed else {
            return started.elapsed();
        };
        assert!(
            started.elapsed() < CATCH_UP,
            "{what}: not after {CATCH_UP:?}: {failed}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How closely two nodes' answers must match.
#[derive(Clone, Copy)]
enum Match {
    /// Same chunks in the same order: what nodes answer before any chunk
    /// was ever deleted.
    Exact,
    /// Dense exactly (one Qdrant collection); lexical and hybrid the same
    /// best chunk and at least 8 of the same 10. Once chunks have been
    /// deleted (a delete, or a document re-indexed), a node's BM25
    /// statistics still count them until Tantivy merges the segments that
    /// held them, and when that happens depends on how the node's commits
    /// fell (a node built fresh has none). The essays below share one
    /// vocabulary, so their scores are near-ties that such a difference can
    /// reorder. That every node holds exactly the chunks of the database is
    /// `ragchat check`'s part, at the end.
    Close,
}

fn matches(how: Match, mode: &str, a: &[(String, String)], b: &[(String, String)]) -> bool {
    match how {
        Match::Exact => a == b,
        Match::Close if mode == "dense" => a == b,
        Match::Close => {
            let shared = a.iter().filter(|hit| b.contains(hit)).count();
            a.first() == b.first() && a.len() == b.len() && shared + 2 >= a.len()
        }
    }
}

/// The nodes give the same answers to every query in every mode, and some
/// query finds something in each mode (agreeing on nothing proves nothing).
fn agree(what: &str, nodes: &[&Api], token: &str, queries: &[&str], how: Match) -> Duration {
    let took = until(what, queries, |q, m| {
        let first = answer(nodes[0], token, q, m);
        for other in &nodes[1..] {
            let theirs = answer(other, token, q, m);
            if !matches(how, m, &first, &theirs) {
                return Err(format!("{first:?} vs {theirs:?}"));
            }
        }
        Ok(())
    });
    for mode in MODES {
        assert!(
            queries
                .iter()
                .any(|q| !answer(nodes[0], token, q, mode).is_empty()),
            "{what}: no query finds anything in {mode} mode"
        );
    }
    took
}

/// Frames of the job-events socket on `api`'s node until the job finishes.
fn job_frames(api: &Api, token: &str, job: &str) -> Vec<Value> {
    let url = format!(
        "{}/api/v1/jobs/{job}/events",
        api.base.replacen("http://", "ws://", 1)
    );
    let mut ws = try_connect(&url, Some(token))
        .unwrap_or_else(|status| panic!("job events refused with {status}"));
    let mut frames = Vec::new();
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).expect("a JSON frame");
                let done = ["succeeded", "failed", "cancelled", "dead"]
                    .contains(&v["job"]["state"].as_str().unwrap_or(""));
                frames.push(v);
                if done {
                    return frames;
                }
            }
            Ok(tungstenite::Message::Close(_)) | Err(_) => return frames,
            Ok(_) => {}
        }
    }
}

fn collection(api: &Api, token: &str, name: &str) -> String {
    let c = expect(
        api.post(
            "/api/v1/collections",
            Some(token),
            Some(json!({"name": name, "public": true})),
        ),
        201,
        "create collection",
    );
    c["id"].as_str().expect("collection id").to_string()
}

fn documents_in(api: &Api, token: &str, collection: &str) -> i64 {
    let c = expect(
        api.get(&format!("/api/v1/collections/{collection}"), Some(token)),
        200,
        "collection",
    );
    c["documents"].as_i64().expect("document count")
}

fn files_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("fixtures")
        .map(|e| {
            let path = e.expect("dir entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("read fixture"))
        })
        .collect();
    files.sort();
    files
}

fn parts(files: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect()
}

#[test]
fn api_nodes_and_workers_apart_share_one_database_and_one_qdrant() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let started = Instant::now();
    let a = cluster.node("node-a");
    let b = cluster.node("node-b");
    let (a_api, b_api) = (Api::new(&a), Api::new(&b));
    let mut worker = cluster.worker("worker-1");
    let (root, _) = login(&a_api, "root", PASSWORD);
    eprintln!(
        "cluster: 2 API nodes and 1 worker up in {:?}",
        started.elapsed()
    );

    // An upload accepted by A, done by the worker, watched from B.
    let kb = collection(&a_api, &root, "kb");
    let files = files_in(&fixtures().join("kb"));
    let (status, body) = upload_via(&a_api, &root, &kb, &parts(&files));
    assert_eq!(status, 202, "{body}");
    let job = body["job"]["id"].as_str().expect("job id").to_string();
    let frames = job_frames(&b_api, &root, &job);
    let last = frames.last().expect("job frames from node B");
    assert_eq!(last["job"]["state"], "succeeded", "{last}");
    assert_eq!(last["job"]["result"]["documents_added"], 3, "{last}");
    let queries = [
        "normal shock wave",
        "boundary layer separation",
        "convective heat transfer coefficient",
    ];
    let took = agree(
        "A and B agree after the upload",
        &[&a_api, &b_api],
        &root,
        &queries,
        Match::Exact,
    );
    eprintln!(
        "cluster: upload through A, done by the worker; B agreed with A within {took:?} of the job's end"
    );

    // A delete through B leaves A's results in every mode.
    let docs = expect(
        b_api.get(&format!("/api/v1/collections/{kb}/documents"), Some(&root)),
        200,
        "documents on B",
    );
    let doc = docs["items"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["source"] == "shock-waves.txt"))
        .and_then(|d| d["id"].as_str())
        .expect("shock-waves.txt listed")
        .to_string();
    let (status, body, _) = b_api.delete(
        &format!("/api/v1/collections/{kb}/documents/{doc}"),
        Some(&root),
    );
    assert_eq!(status, 204, "{body}");
    let took = until("A still returns the deleted document", &queries, |q, m| {
        let hits = answer(&a_api, &root, q, m);
        match hits.iter().find(|(source, _)| source == "shock-waves.txt") {
            Some(hit) => Err(format!("{hit:?}")),
            None => Ok(()),
        }
    });
    eprintln!("cluster: delete through B; gone from A's results in every mode after {took:?}");
    agree(
        "A and B agree after the delete",
        &[&a_api, &b_api],
        &root,
        &queries,
        Match::Close,
    );

    // SIGKILL the worker in the middle of a job; a new worker finishes it.
    let many = collection(&b_api, &root, "many");
    let essays: Vec<(String, Vec<u8>)> = (0..240)
        .map(|i| {
            let text = format!(
                "# Station report {i}\n\n{}",
                essay(&format!("station {i}"), 4)
            );
            (format!("report-{i:03}.md"), text.into_bytes())
        })
        .collect();
    let (status, body) = upload_via(&b_api, &root, &many, &parts(&essays));
    assert_eq!(status, 202, "{body}");
    let job = body["job"]["id"].as_str().expect("job id").to_string();
    let wait_started = Instant::now();
    let progress = loop {
        let j = expect(
            a_api.get(&format!("/api/v1/jobs/{job}"), Some(&root)),
            200,
            "job",
        );
        // A tenth of the way in: well inside the job, with documents
        // already written through to both stores.
        let done = j["progress"]["documents_done"].as_u64().unwrap_or(0);
        if j["state"] == "running" && done >= 24 {
            break j;
        }
        assert!(
            j["state"] == "queued" || j["state"] == "running",
            "the job ended before the worker could be killed: {j}"
        );
        assert!(
            wait_started.elapsed() < Duration::from_secs(120),
            "the job never started: {j}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    worker.kill9();
    eprintln!(
        "cluster: worker-1 killed with SIGKILL at {} of 240 documents",
        progress["progress"]["documents_done"]
    );
    let j = expect(
        a_api.get(&format!("/api/v1/jobs/{job}"), Some(&root)),
        200,
        "job after the kill",
    );
    assert_eq!(j["state"], "running", "its lease still holds: {j}");
    let _worker = cluster.worker("worker-2");
    let restarted = Instant::now();
    let j = wait_job_via(&a_api, &root, &job);
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(j["attempts"], 2, "{j}");
    let r = &j["result"];
    let added = r["documents_added"].as_u64().unwrap_or(0);
    let unchanged = r["documents_unchanged"].as_u64().unwrap_or(0);
    // A document the kill caught between its DB write and its indexing is
    // stored but not marked indexed: the retry counts it as updated.
    let updated = r["documents_updated"].as_u64().unwrap_or(0);
    assert_eq!(added + unchanged + updated, 240, "{r}");
    assert!(
        unchanged > 0,
        "the first attempt's documents were kept: {r}"
    );
    assert_eq!(documents_in(&a_api, &root, &many), 240);
    eprintln!(
        "cluster: worker-2 finished the job {:?} after the kill (lease {LEASE_SECS} s): \
         {unchanged} documents kept from the first attempt, {updated} redone, {added} added",
        restarted.elapsed()
    );
    let reports = [
        "station 7 report",
        "calibrated sensor drift near the coastal station 131",
    ];
    let all: Vec<&str> = queries.iter().chain(reports.iter()).copied().collect();
    agree(
        "A and B agree after the retried job",
        &[&a_api, &b_api],
        &root,
        &all,
        Match::Close,
    );

    // A node on an empty data directory catches up from the DB and agrees.
    let joined = Instant::now();
    let c = cluster.node("node-c");
    let c_api = Api::new(&c);
    let took = agree(
        "C agrees with A and B",
        &[&a_api, &b_api, &c_api],
        &root,
        &all,
        Match::Close,
    );
    eprintln!(
        "cluster: node C on an empty data directory started and agreed within {:?} (the comparison {took:?} of it)",
        joined.elapsed()
    );

    // DB = Qdrant = every node's Tantivy. The nodes stop first: a lexical
    // index is open in one process at a time.
    let mut counts = Vec::new();
    for (name, node) in [("node-a", a), ("node-b", b), ("node-c", c)] {
        node.stop();
        let report = run_ok(&cluster.path(name), &["check"]);
        assert!(report.contains("consistent"), "{name}: {report}");
        counts.push(report.lines().next().unwrap_or_default().to_string());
    }
    assert!(
        counts.windows(2).all(|w| w[0] == w[1]),
        "every node holds the same: {counts:?}"
    );
    eprintln!("cluster: `ragchat check` on each node: {}", counts[0]);
    eprintln!("cluster: done in {:?}", started.elapsed());
}

/// A worker that does not see the uploads directory the nodes write to
/// (`uploads.dir` not shared) hands the job back, naming the setting, for a
/// worker that does; it never reports the files as unreadable.
#[test]
fn a_worker_without_the_shared_uploads_dir_hands_the_job_back() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let a = cluster.node("node-a");
    let api = Api::new(&a);
    let (root, _) = login(&api, "root", PASSWORD);
    // This worker's uploads directory is its own, not the node's.
    let elsewhere = cluster.path("worker-only-uploads");
    let _worker = cluster.worker_with_uploads("worker-1", &elsewhere);
    let coll = collection(&api, &root, "kb");
    let files = files_in(&fixtures().join("kb"));
    let (status, body) = upload_via(&api, &root, &coll, &parts(&files));
    assert_eq!(status, 202, "{body}");
    let job = body["job"]["id"].as_str().expect("job id").to_string();
    let started = Instant::now();
    loop {
        let j = expect(
            api.get(&format!("/api/v1/jobs/{job}"), Some(&root)),
            200,
            "job",
        );
        let error = j["last_error"].as_str().unwrap_or_default();
        if !error.is_empty() {
            assert!(error.contains("must share uploads.dir"), "{j}");
            assert_eq!(
                j["state"], "queued",
                "back in the queue for another worker: {j}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the worker never tried the job: {j}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A search's results (source, chunk) and whether they came from the cache.
fn cached_search(api: &Api, token: &str, q: &str) -> (Vec<(String, String)>, bool) {
    let body = expect(
        api.post(
            "/api/v1/query",
            Some(token),
            Some(json!({"query": q, "top_k": 7})),
        ),
        200,
        "query",
    );
    (result_ids(&body), body["cached"] == true)
}

/// Failed logins as `user` until one is refused with 429; how many were
/// answered 401 first.
fn logins_until_limited(api: &Api, user: &str) -> usize {
    for n in 0..50 {
        let (status, body, _) = api.post(
            "/api/v1/auth/login",
            None,
            Some(json!({"username": user, "password": "not the password"})),
        );
        match status {
            401 => continue,
            429 => return n,
            _ => panic!("login as {user}: {status} {body}"),
        }
    }
    panic!("50 failed logins as {user} and no 429");
}

fn login_status(api: &Api, user: &str) -> u16 {
    api.post(
        "/api/v1/auth/login",
        None,
        Some(json!({"username": user, "password": "not the password"})),
    )
    .0
}

/// Two API nodes sharing Redis (a server of the test's own, so it can be
/// stopped): a login limit spent through A holds on B; a search cached
/// through A is a hit on B; an ingest makes the collection's entries miss
/// on both; with Redis stopped everything still answers, each node limiting
/// alone; restarted, sharing resumes.
#[test]
fn redis_shares_limits_and_caches_between_nodes_and_outlives_an_outage() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let Some(mut redis) = ragchat::redis_conn::testing::TestRedis::start() else {
        return;
    };
    let url = redis.url();
    let env = [
        ("RAGCHAT_REDIS_URL", url.as_str()),
        ("RAGCHAT_REDIS_RETRY_AFTER_MS", "200"),
        ("RAGCHAT_RATE_LIMIT_ENABLED", "true"),
        // Every request comes from 127.0.0.1: limit by user name only.
        ("RAGCHAT_RATE_LIMIT_IP_FACTOR", "1000"),
        ("RAGCHAT_RATE_LIMIT_LOGIN_BURST", "3"),
        ("RAGCHAT_RATE_LIMIT_LOGIN_PER_MINUTE", "1"),
        // Searches are many here, from one user, on both nodes.
        ("RAGCHAT_RATE_LIMIT_QUERY_PER_MINUTE", "60000"),
        ("RAGCHAT_RATE_LIMIT_QUERY_BURST", "10000"),
    ];
    let a = cluster.node_with("node-a", &env);
    let b = cluster.node_with("node-b", &env);
    let _worker = cluster.worker("worker-1");
    let (a_api, b_api) = (Api::new(&a), Api::new(&b));
    let (root, _) = login(&a_api, "root", PASSWORD);
    let kb = collection(&a_api, &root, "kb");
    let essays: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| {
            (
                format!("essay-{i}.md"),
                essay(&format!("subject {i}"), i).into_bytes(),
            )
        })
        .collect();
    let (status, body) = upload_via(&a_api, &root, &kb, &parts(&essays));
    assert_eq!(status, 202, "{body}");
    let job = wait_job_via(&a_api, &root, body["job"]["id"].as_str().expect("job id"));
    assert_eq!(job["state"], "succeeded", "{job}");
    let queries = ["turbine pressure season", "careful engineers model flow"];
    agree(
        "after the upload",
        &[&a_api, &b_api],
        &root,
        &queries,
        Match::Exact,
    );

    // A limit spent through A is in force on B.
    let allowed = logins_until_limited(&a_api, "ann");
    assert_eq!(allowed, 3, "the burst");
    assert_eq!(login_status(&b_api, "ann"), 429, "node B refuses too");

    // Cached through A, a hit on B.
    let (q1, q2) = ("boundary layer turbine", "measured season flow");
    for q in [q1, q2] {
        let (through_a, hit) = cached_search(&a_api, &root, q);
        assert!(!hit, "{q}: first search");
        let (through_b, hit) = cached_search(&b_api, &root, q);
        assert!(hit, "{q}: cached through A, a hit on B");
        assert_eq!(through_a, through_b);
    }
    assert!(
        b.metric("ragchat_cache_requests_total{cache=\"query_results\",result=\"hit\"} ") >= 2.0
    );
    // Another mode is another result, but the same query vector: B takes
    // the one A computed from Redis instead of running the model.
    let embedded = |s: &Server| s.metric("ragchat_embedder_texts_total ");
    let before = embedded(&b);
    expect(
        b_api.post(
            "/api/v1/query",
            Some(&root),
            Some(json!({"query": q1, "mode": "dense", "top_k": 7})),
        ),
        200,
        "dense query on B",
    );
    assert_eq!(embedded(&b), before, "B embedded a query A had embedded");
    assert!(
        b.metric("ragchat_cache_requests_total{cache=\"query_embeddings\",result=\"hit\"} ") >= 1.0,
        "B used A's query embedding"
    );

    // An ingest into the collection: its entries miss on both nodes.
    let more = [("late.md".to_string(), essay("late subject", 9).into_bytes())];
    let (status, body) = upload_via(&b_api, &root, &kb, &parts(&more));
    assert_eq!(status, 202, "{body}");
    let job = wait_job_via(&b_api, &root, body["job"]["id"].as_str().expect("job id"));
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(
        !cached_search(&a_api, &root, q1).1,
        "A misses after the ingest"
    );
    assert!(
        !cached_search(&b_api, &root, q2).1,
        "B misses after the ingest"
    );

    // Redis stops: every request still answers; each node limits alone.
    redis.stop();
    let started = Instant::now();
    for api in [&a_api, &b_api] {
        for q in [q1, q2, "a query never asked"] {
            let (results, hit) = cached_search(api, &root, q);
            assert!(!hit && !results.is_empty(), "{q} without Redis");
        }
    }
    eprintln!(
        "cluster: 6 searches with Redis down answered in {:.0?}",
        started.elapsed()
    );
    assert_eq!(logins_until_limited(&a_api, "bob"), 3, "A's own limit");
    assert_eq!(login_status(&b_api, "bob"), 401, "B's own bucket is full");
    assert_eq!(a.metric("ragchat_redis_up "), 0.0);
    assert!(a.metric("ragchat_redis_errors_total{") >= 1.0);
    assert!(b.metric("ragchat_redis_fallbacks_total{") >= 1.0);

    // Redis is back (empty): sharing resumes within a few retry windows.
    redis.restart();
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let q = format!("resumed {}", started.elapsed().as_nanos());
        let _ = cached_search(&a_api, &root, &q);
        if cached_search(&b_api, &root, &q).1 {
            break;
        }
        assert!(Instant::now() < deadline, "the cache is not shared again");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(logins_until_limited(&a_api, "cy"), 3);
    assert_eq!(login_status(&b_api, "cy"), 429, "shared limits resumed");
    assert_eq!(b.metric("ragchat_redis_up "), 1.0);
}
