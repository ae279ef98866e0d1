//! Black-box tests of the command line: the real binary refusing a bad
//! configuration or missing models with a message that says what to fix.

use serde_json::json;

use crate::helpers;
use crate::helpers::client::{create_user_cli, login, Api, PASSWORD};
use crate::helpers::{check_consistent, fixtures, run, run_ok};

#[test]
fn bad_config_exits_with_the_key_named() {
    let dir = helpers::TestDir::new();
    let data = dir.path().join("data");
    let out = helpers::cmd(&data)
        .env("RAGCHAT_RETRIEVAL_RRF_K", "zero")
        .args(["check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("retrieval.rrf_k"), "{err}");

    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[chunking]\nmax_tokens = 9999\n").unwrap();
    let out = run(&data, &["--config", cfg.to_str().unwrap(), "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chunking.max_tokens"), "{err}");
}

#[test]
fn missing_models_is_a_clear_error() {
    let dir = helpers::TestDir::new();
    let data = dir.path().join("data");
    let out = helpers::cmd(&data)
        .env("RAGCHAT_MODELS_DIR", dir.path().join("nomodels"))
        .env_remove("ORT_DYLIB_PATH")
        .args(["check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scripts/setup-models.sh"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Embedded indexes belong to one process: a worker started next to a
/// running server on the same data directory stops with a message that says
/// why and what to run instead, rather than waiting or corrupting anything.
#[test]
fn a_second_process_on_an_embedded_data_directory_is_told_why_not() {
    let dir = helpers::TestDir::new();
    let data = dir.path().join("data");
    // An empty URL selects the embedded shard whatever this run's backend is.
    let embedded = [("RAGCHAT_QDRANT_URL", "")];
    let server = helpers::Server::start_with(&data, &embedded);
    let mut worker = helpers::cmd(&data)
        .envs(embedded)
        .args(["worker"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = worker.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = worker.kill();
            panic!("a worker runs beside the server on the same embedded data directory");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let out = worker.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{err}");
    for needed in [
        "embedded vector index (qdrant-edge)",
        "held by another ragchat process",
        "vector.qdrant_url",
        "database.url",
    ] {
        assert!(err.contains(needed), "{needed:?} in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    // The server was not disturbed.
    assert!(reqwest::blocking::get(server.url("/ready"))
        .unwrap()
        .status()
        .is_success());
}

/// Dense results for `query` over every collection: (chunk id, score).
fn dense_hits(server: &helpers::Server, query: &str) -> Vec<(String, f64)> {
    let api = Api::new(server);
    let (token, _) = login(&api, "admin", PASSWORD);
    let (status, body, _) = api.post(
        "/api/v1/query",
        Some(&token),
        Some(json!({"query": query, "mode": "dense", "top_k": 5})),
    );
    assert_eq!(status, 200, "{body}");
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["chunk_id"].as_str().expect("chunk id").to_owned(),
                r["score"].as_f64().expect("score"),
            )
        })
        .collect()
}

/// Moving from the embedded index to a Qdrant server is "set the URL, run
/// reindex" (docs/OPERATIONS.md): the server then answers like the shard did.
#[test]
fn reindex_moves_the_vectors_from_the_embedded_index_to_a_qdrant_server() {
    if helpers::qdrant::skip_without_server() {
        return;
    }
    let dir = helpers::TestDir::new();
    let data = dir.path().join("data");
    // An empty URL selects the embedded shard whatever this run's backend is.
    let embedded = [("RAGCHAT_QDRANT_URL", "")];
    let out = helpers::cmd(&data)
        .envs(embedded)
        .args(["ingest", fixtures().join("kb").to_str().unwrap()])
        .args(["--collection", "aero"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    create_user_cli(&data, "admin", PASSWORD, true);
    let query = "normal shock wave";
    let before = {
        let server = helpers::Server::start_with(&data, &embedded);
        dense_hits(&server, query)
    };
    assert!(!before.is_empty());

    // `cmd` points at this test's collection on the server: empty so far.
    let out = run(&data, &["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("vector index 0 points"), "{stdout}");
    assert!(stdout.contains("missing in vector index"), "{stdout}");
    let out = run_ok(&data, &["reindex"]);
    assert!(out.contains("reindexed"), "{out}");
    let out = check_consistent(&data);
    assert!(!out.contains("vector index 0 points"), "{out}");

    let server = helpers::Server::start(&data);
    let after = dense_hits(&server, query);
    assert_eq!(
        after.iter().map(|(id, _)| id).collect::<Vec<_>>(),
        before.iter().map(|(id, _)| id).collect::<Vec<_>>()
    );
    for ((_, a), (_, b)) in after.iter().zip(&before) {
        assert!((a - b).abs() < 1e-4, "{after:?} vs {before:?}");
    }
    let (status, ready, _) = Api::new(&server).get("/ready", None);
    assert_eq!(status, 200, "{ready}");
}

#[test]
fn a_qdrant_collection_of_another_dimension_is_refused_with_both_named() {
    if helpers::qdrant::skip_without_server() {
        return;
    }
    let dir = helpers::TestDir::new();
    let data = dir.path().join("data");
    helpers::qdrant::create_with_dimension(&data, 5);
    let (_, collection) = helpers::qdrant_collection(&data).unwrap();
    let out = run(&data, &["check"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&collection), "{err}");
    assert!(
        err.contains("dimension 5") && err.contains("dimension 384"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
