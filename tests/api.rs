//! Black-box tests: the real binary, a real data directory, the real server
//! over HTTP.

mod common;

use common::client::{assert_unauthorized, create_user_cli, login, Api, PASSWORD};
use common::{fixtures, run, run_ok, Server};
use serde_json::{json, Value};

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn check_consistent(data: &std::path::Path) -> String {
    let out = run_ok(data, &["check"]);
    assert!(out.contains("consistent"), "{out}");
    out
}

#[test]
fn bad_config_exits_with_the_key_named() {
    let dir = common::TestDir::new();
    let data = dir.path().join("data");
    let out = common::cmd(&data)
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
    let dir = common::TestDir::new();
    let data = dir.path().join("data");
    let out = common::cmd(&data)
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

#[test]
fn ingest_is_idempotent_and_changes_reach_db_and_both_indexes() {
    let dir = common::TestDir::new();
    let data = dir.path().join("data");
    let kb = dir.path().join("kb");
    copy_dir(&fixtures().join("kb"), &kb);
    let kb_s = kb.to_str().unwrap();

    let first = run_ok(&data, &["ingest", kb_s, "--collection", "aero"]);
    assert!(
        first.contains("3 documents") && first.contains("3 new"),
        "{first}"
    );
    check_consistent(&data);

    // Unchanged: nothing is embedded again.
    let second = run_ok(&data, &["ingest", kb_s, "--collection", "aero"]);
    assert!(
        second.contains("3 unchanged") && second.contains(" 0 chunks embedded"),
        "{second}"
    );

    // HTML chrome is not indexed; content is.
    let q = |text: &str| -> Value {
        serde_json::from_str(&run_ok(
            &data,
            &[
                "query",
                text,
                "--collection",
                "aero",
                "--mode",
                "lexical",
                "--json",
            ],
        ))
        .unwrap()
    };
    assert_eq!(
        q("zebrafish giraffe walrus")["results"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        q("ablative heat shields")["results"][0]["title"],
        "Heat transfer at hypersonic speeds"
    );

    // Change one document: the old text disappears from the lexical index and
    // the new one is found; the DB and both indexes still agree.
    std::fs::write(
        kb.join("shock-waves.txt"),
        "Shock waves\n\nA bow shock stands ahead of a blunt body in a supersonic stream; \
         behind it a subsonic pocket forms near the stagnation point.",
    )
    .unwrap();
    let third = run_ok(&data, &["ingest", kb_s, "--collection", "aero"]);
    assert!(
        third.contains("1 updated") && third.contains("2 unchanged"),
        "{third}"
    );
    assert!(q("oblique")["results"].as_array().unwrap().is_empty());
    assert_eq!(
        q("bow shock blunt body")["results"][0]["source"],
        "shock-waves.txt"
    );
    check_consistent(&data);

    // Deleting the collection removes it from the DB and both indexes.
    run_ok(&data, &["delete-collection", "aero"]);
    let out = check_consistent(&data);
    assert!(
        out.contains("database 0 chunks, vector index 0 points, lexical index 0 documents"),
        "{out}"
    );

    // And reindex rebuilds from the DB.
    run_ok(&data, &["ingest", kb_s, "--collection", "aero"]);
    run_ok(&data, &["reindex"]);
    check_consistent(&data);

    // A planted inconsistency: the full-text index loses its files. `check`
    // reports every chunk missing there and fails; `reindex` repairs it.
    std::fs::remove_dir_all(data.join("tantivy")).unwrap();
    let out = run(&data, &["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("missing in lexical index"), "{stdout}");
    assert!(stdout.contains("lexical index 0 documents"), "{stdout}");
    run_ok(&data, &["reindex"]);
    check_consistent(&data);
}

fn post(api: &Api, token: &str, body: Value) -> (u16, Value) {
    let (status, body, _) = api.post("/api/v1/query", Some(token), Some(body));
    (status, body)
}

/// `400 code`, or `404 collection_not_found` for that code.
fn assert_error(status: u16, body: &Value, code: &str) {
    let expected = if code == "collection_not_found" {
        404
    } else {
        400
    };
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[test]
fn query_api_happy_path_and_errors() {
    let dir = common::TestDir::new();
    let data = dir.path().join("data");
    run_ok(
        &data,
        &[
            "ingest",
            fixtures().join("kb").to_str().unwrap(),
            "--collection",
            "aero",
        ],
    );
    run_ok(
        &data,
        &[
            "ingest",
            common::repo_root().join("corpus").to_str().unwrap(),
            "--collection",
            "docs",
        ],
    );
    create_user_cli(&data, "admin", PASSWORD, true);
    let server = Server::start(&data);
    let api = Api::new(&server);
    let (token, _) = login(&api, "admin", PASSWORD);
    let token = token.as_str();

    // Searching needs a token; /health and /ready do not.
    assert_unauthorized(
        &api.post(
            "/api/v1/query",
            None,
            Some(json!({"query": "normal shock", "collections": ["aero"]})),
        ),
        "unauthorized",
    );
    assert_unauthorized(&api.get("/api/v1/query?q=shock", None), "unauthorized");

    let (status, health, _) = api.get("/health", None);
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");
    let (status, ready, _) = api.get("/ready", None);
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "ready", "{ready}");

    // Hybrid, restricted to one collection.
    let (status, body) = post(
        &api,
        token,
        json!({"query": "what happens across a normal shock", "collections": ["aero"], "top_k": 2}),
    );
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["source"], "shock-waves.txt", "{body}");
    assert!(results.iter().all(|r| r["collection"] == "aero"));
    let top = &results[0];
    for field in [
        "document_id",
        "chunk_id",
        "title",
        "score",
        "char_start",
        "char_end",
    ] {
        assert!(!top[field].is_null(), "missing {field}: {top}");
    }
    assert!(
        top["snippet"]["html"].as_str().unwrap().contains("<mark>"),
        "{top}"
    );
    assert_eq!(top["lexical"]["rank"], 1, "{top}");
    assert!(top["dense"]["rank"].as_u64().is_some(), "{top}");
    // The fused score is the RRF sum of the ranks shown.
    let expect: f64 = ["dense", "lexical"]
        .iter()
        .filter_map(|s| top[*s]["rank"].as_f64())
        .map(|r| 1.0 / (60.0 + r))
        .sum();
    assert!(
        (top["score"].as_f64().unwrap() - expect).abs() < 1e-5,
        "{top}"
    );
    assert!(body["took_ms"].as_f64().is_some());

    // Dense and lexical modes, weights, and searching every collection.
    let (_, dense) = post(
        &api,
        token,
        json!({"query": "re-entry vehicle heating", "mode": "dense", "top_k": 3}),
    );
    assert!(dense["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["lexical"].is_null()));
    let (_, lex) = post(
        &api,
        token,
        json!({"query": "reciprocal rank fusion", "mode": "lexical", "collections": ["docs"]}),
    );
    let lex_results = lex["results"].as_array().unwrap();
    assert!(!lex_results.is_empty());
    assert!(lex_results
        .iter()
        .all(|r| r["dense"].is_null() && r["collection"] == "docs"));
    let (status, w) = post(
        &api,
        token,
        json!({"query": "boundary layer", "weights": {"dense": 2.0, "lexical": 0.5}}),
    );
    assert_eq!(status, 200, "{w}");
    assert_eq!(w["weights"]["dense"], 2.0);

    // GET shorthand.
    let (status, get, _) = api.get(
        "/api/v1/query?q=boundary%20layer%20transition&top_k=1&collections=aero",
        Some(token),
    );
    assert_eq!(status, 200, "{get}");
    assert_eq!(get["results"][0]["source"], "boundary-layers.md", "{get}");

    // Every bad input is a 400 naming the problem.
    let cases = [
        (json!({"query": ""}), "empty_query"),
        (json!({"query": "   "}), "empty_query"),
        (json!({"top_k": 3}), "empty_query"),
        (json!({"query": "x", "top_k": 0}), "invalid_top_k"),
        (json!({"query": "x", "top_k": 101}), "invalid_top_k"),
        (json!({"query": "x", "top_k": -1}), "invalid_top_k"),
        (
            json!({"query": "x", "collections": ["nope"]}),
            "collection_not_found",
        ),
        (json!({"query": "x", "mode": "fuzzy"}), "unknown_mode"),
        (
            json!({"query": "x", "weights": {"dense": -1}}),
            "invalid_weights",
        ),
        (json!({"query": "x", "topk": 3}), "invalid_body"),
        (json!({"query": 5}), "invalid_body"),
    ];
    for (body, code) in cases {
        let (status, resp) = post(&api, token, body.clone());
        assert_error(status, &resp, code);
    }
    let auth = format!("Bearer {token}");
    let (status, body, _) = api.raw(
        reqwest::Method::POST,
        "/api/v1/query",
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        Some(b"{not json".to_vec()),
    );
    assert_error(status, &body, "invalid_body");
    for (qs, code) in [
        ("q=", "empty_query"),
        ("q=x&top_k=abc", "invalid_top_k"),
        ("q=x&mode=nope", "unknown_mode"),
        ("q=x&collections=missing", "collection_not_found"),
        ("q=x&bogus=1", "invalid_query_string"),
    ] {
        let (status, body, _) = api.get(&format!("/api/v1/query?{qs}"), Some(token));
        assert_error(status, &body, code);
    }
    assert_eq!(api.get("/api/v1/nothing", Some(token)).0, 404);

    // Graceful shutdown exits cleanly and leaves consistent indexes.
    assert!(server.stop().success());
    check_consistent(&data);
}
