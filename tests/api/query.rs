//! Black-box tests of the query API over a data directory ingested with the
//! CLI: the real binary, the real server over HTTP.

use crate::helpers;
use crate::helpers::client::{assert_unauthorized, create_user_cli, login, Api, PASSWORD};
use crate::helpers::{check_consistent, fixtures, run_ok, Server};
use serde_json::{json, Value};

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
    let dir = helpers::TestDir::new();
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
            helpers::repo_root().join("corpus").to_str().unwrap(),
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
    // The default fusion: the convex combination of the normalised scores
    // shown, alpha 0.85 with theoretical-minimum normalisation.
    assert_eq!(body["fusion"]["method"], "convex", "{body}");
    assert_eq!(body["fusion"]["normalization"], "theoretical_min", "{body}");
    let n = |s: &str| top[s]["normalized"].as_f64().unwrap();
    assert!(
        (top["score"].as_f64().unwrap() - (0.85 * n("dense") + 0.15 * n("lexical"))).abs() < 1e-5,
        "{top}"
    );
    // With RRF asked for, it is the RRF sum of the ranks shown.
    let (status, rrf) = post(
        &api,
        token,
        json!({"query": "boundary layer transition", "fusion": "rrf"}),
    );
    assert_eq!(status, 200, "{rrf}");
    let top_rrf = &rrf["results"][0];
    let expect: f64 = ["dense", "lexical"]
        .iter()
        .filter_map(|s| top_rrf[*s]["rank"].as_f64())
        .map(|r| 1.0 / (60.0 + r))
        .sum();
    assert!(
        (top_rrf["score"].as_f64().unwrap() - expect).abs() < 1e-5,
        "{top_rrf}"
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
        json!({"query": "boundary layer", "fusion": "rrf", "weights": {"dense": 2.0, "lexical": 0.5}}),
    );
    assert_eq!(status, 200, "{w}");
    assert_eq!(w["weights"]["dense"], 2.0);
    assert_eq!(w["fusion"]["method"], "rrf");
    assert_eq!(w["fusion"]["weights"]["lexical"], 0.5);
    assert!(w["results"][0]["dense"]["normalized"].is_null(), "{w}");

    // Convex fusion: each result's score is alpha × its normalised dense
    // score + (1 − alpha) × its normalised lexical score, and both are shown.
    for normalization in ["min_max", "theoretical_min"] {
        let (status, c) = post(
            &api,
            token,
            json!({"query": "boundary layer transition", "fusion": "convex", "alpha": 0.7,
                   "normalization": normalization, "top_k": 10}),
        );
        assert_eq!(status, 200, "{c}");
        assert_eq!(c["fusion"]["method"], "convex");
        assert_eq!(c["fusion"]["normalization"], normalization);
        let results = c["results"].as_array().unwrap();
        assert!(!results.is_empty());
        let mut previous = f64::INFINITY;
        for r in results {
            let score = r["score"].as_f64().unwrap();
            assert!(score <= previous + 1e-6, "not best first: {c}");
            previous = score;
            let n = |s: &str| r[s]["normalized"].as_f64();
            if let (Some(d), Some(l)) = (n("dense"), n("lexical")) {
                assert!((0.0..=1.0).contains(&d) && (0.0..=1.0).contains(&l), "{r}");
                assert!((score - (0.7 * d + 0.3 * l)).abs() < 1e-4, "{r}");
            }
        }
        // min-max puts the best of each signal at exactly 1.
        if normalization == "min_max" {
            assert!(
                results.iter().any(|r| r["dense"]["normalized"] == 1.0),
                "{c}"
            );
        }
    }
    // alpha 1 is the dense order, alpha 0 the lexical one.
    let order = |body: Value| -> Vec<String> {
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["chunk_id"].as_str().unwrap().to_string())
            .collect()
    };
    let q = "shock waves at supersonic speed";
    let dense_only = post(
        &api,
        token,
        json!({"query": q, "mode": "dense", "top_k": 5}),
    )
    .1;
    let alpha_one = post(
        &api,
        token,
        json!({"query": q, "fusion": "convex", "alpha": 1.0, "top_k": 5}),
    )
    .1;
    assert_eq!(order(dense_only)[..3], order(alpha_one)[..3]);
    let (status, get, _) = api.get(
        "/api/v1/query?q=boundary%20layer&fusion=convex&alpha=0.2&normalization=theoretical_min",
        Some(token),
    );
    assert_eq!(status, 200, "{get}");
    assert!(
        (get["fusion"]["alpha"].as_f64().unwrap() - 0.2).abs() < 1e-6,
        "{get}"
    );

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
        (json!({"query": "x", "fusion": "borda"}), "invalid_fusion"),
        (
            json!({"query": "x", "fusion": "convex", "alpha": 1.5}),
            "invalid_fusion",
        ),
        (json!({"query": "x", "alpha": -0.1}), "invalid_fusion"),
        (
            json!({"query": "x", "normalization": "zscore"}),
            "invalid_fusion",
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
        ("q=x&alpha=abc", "invalid_fusion"),
        ("q=x&fusion=sum", "invalid_fusion"),
    ] {
        let (status, body, _) = api.get(&format!("/api/v1/query?{qs}"), Some(token));
        assert_error(status, &body, code);
    }
    assert_eq!(api.get("/api/v1/nothing", Some(token)).0, 404);

    // Graceful shutdown exits cleanly and leaves consistent indexes.
    assert!(server.stop().success());
    check_consistent(&data);
}
