//! Black-box tests of the `/query` result cache on one node (in process):
//! a repeated search is a hit, an entry is only ever served for the same set
//! of searched collections, and any change to one of them (an upload, a
//! delete, a rename) makes its entries unreachable at once. Across nodes,
//! through Redis, `cluster::redis_*` shows the same.

use serde_json::{json, Value};

use crate::helpers::client::{
    collection_id, create_user_cli, expect, login, result_ids, Api, PASSWORD,
};
use crate::helpers::{fixtures, run_ok, Server, TestDir};
use crate::ingest::{upload_via, wait_job_via};

fn search(api: &Api, token: &str, body: Value) -> Value {
    expect(
        api.post("/api/v1/query", Some(token), Some(body)),
        200,
        "query",
    )
}

/// (source, chunk id) per result, and whether it was a hit.
fn seen(body: &Value) -> (Vec<(String, String)>, bool) {
    (
        result_ids(body),
        body["cached"]
            .as_bool()
            .expect("`cached` in every response"),
    )
}

#[test]
fn results_are_cached_per_collection_set_and_dropped_when_a_collection_changes() {
    let dir = TestDir::new();
    let data = dir.path().join("data");
    let kb = fixtures().join("kb");
    run_ok(
        &data,
        &["ingest", kb.to_str().unwrap(), "--collection", "aero"],
    );
    run_ok(
        &data,
        &["ingest", kb.to_str().unwrap(), "--collection", "open"],
    );
    create_user_cli(&data, "admin", PASSWORD, true);
    create_user_cli(&data, "ann", PASSWORD, false);
    let server = Server::start(&data);
    let api = Api::new(&server);
    let (admin, _) = login(&api, "admin", PASSWORD);
    let (ann, _) = login(&api, "ann", PASSWORD);
    let (aero, open) = (
        collection_id(&api, &admin, "aero"),
        collection_id(&api, &admin, "open"),
    );
    expect(
        api.patch(
            &format!("/api/v1/collections/{open}"),
            Some(&admin),
            Some(json!({"public": true})),
        ),
        200,
        "make `open` public",
    );
    let q = |extra: Value| {
        let mut body = json!({"query": "normal shock wave", "top_k": 5});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        body
    };

    // The admin reads both collections: a miss, then a hit with the same
    // results, however the query is spaced.
    let (first, cached) = seen(&search(&api, &admin, q(json!({}))));
    assert!(!cached);
    assert!(!first.is_empty());
    let spaced = json!({"query": "  normal   shock wave ", "top_k": 5});
    let (again, cached) = seen(&search(&api, &admin, spaced));
    assert!(cached, "the same search again is a hit");
    assert_eq!(again, first);
    // Other options are other entries.
    assert!(!seen(&search(&api, &admin, q(json!({"top_k": 4})))).1);
    assert!(!seen(&search(&api, &admin, q(json!({"mode": "dense"})))).1);

    // Ann reads only `open`: the same words are a search over another set
    // of collections, so never the admin's entry.
    let (anns, cached) = seen(&search(&api, &ann, q(json!({}))));
    assert!(!cached, "an entry for other collections is never served");
    let open_results = search(&api, &ann, q(json!({})));
    assert!(seen(&open_results).1);
    assert!(
        open_results["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["collection"] == "open"),
        "{open_results}"
    );
    assert!(anns.len() <= first.len());

    // An upload into `aero` makes the admin's entries miss; Ann's (only
    // `open`) stay hits.
    let doc = "# Normal shock wave tables\n\nA normal shock wave table lists the \
               pressure, density and temperature ratios across a normal shock wave \
               for each upstream Mach number.\n";
    let (status, body) = upload_via(&api, &admin, &aero, &[("shock-tables.md", doc.as_bytes())]);
    assert_eq!(status, 202, "{body}");
    let job = wait_job_via(&api, &admin, body["job"]["id"].as_str().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    let (after_upload, cached) = seen(&search(&api, &admin, q(json!({}))));
    assert!(
        !cached,
        "an upload into a searched collection drops its entries"
    );
    assert!(
        after_upload.iter().any(|(s, _)| s == "shock-tables.md"),
        "{after_upload:?}"
    );
    assert!(
        seen(&search(&api, &ann, q(json!({})))).1,
        "`open` did not change"
    );

    // Deleting the document: a miss again, and it is gone.
    let docs = expect(
        api.get(
            &format!("/api/v1/collections/{aero}/documents"),
            Some(&admin),
        ),
        200,
        "documents",
    );
    let doc_id = docs["items"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["source"] == "shock-tables.md"))
        .and_then(|d| d["id"].as_str())
        .expect("the upload is listed")
        .to_string();
    let (status, body, _) = api.delete(
        &format!("/api/v1/collections/{aero}/documents/{doc_id}"),
        Some(&admin),
    );
    assert_eq!(status, 204, "{body}");
    let (after_delete, cached) = seen(&search(&api, &admin, q(json!({}))));
    assert!(!cached, "a delete drops the collection's entries");
    assert!(after_delete.iter().all(|(s, _)| s != "shock-tables.md"));

    // A rename: results carry the collection's name, so they miss too.
    expect(
        api.patch(
            &format!("/api/v1/collections/{open}"),
            Some(&admin),
            Some(json!({"name": "opened"})),
        ),
        200,
        "rename",
    );
    let renamed = search(&api, &ann, q(json!({})));
    assert!(!seen(&renamed).1);
    assert!(renamed["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["collection"] == "opened"));

    let hits =
        server.metric("ragchat_cache_requests_total{cache=\"query_results\",result=\"hit\"} ");
    let misses =
        server.metric("ragchat_cache_requests_total{cache=\"query_results\",result=\"miss\"} ");
    assert_eq!(
        (hits, misses),
        (3.0, 7.0),
        "hits and misses as counted above"
    );
}

#[test]
fn results_are_not_cached_when_turned_off() {
    let dir = TestDir::new();
    let data = dir.path().join("data");
    let kb = fixtures().join("kb");
    run_ok(
        &data,
        &["ingest", kb.to_str().unwrap(), "--collection", "aero"],
    );
    create_user_cli(&data, "admin", PASSWORD, true);
    let server = Server::start_with(&data, &[("RAGCHAT_CACHE_RESULTS", "false")]);
    let api = Api::new(&server);
    let (admin, _) = login(&api, "admin", PASSWORD);
    for _ in 0..2 {
        let body = search(&api, &admin, json!({"query": "normal shock"}));
        assert_eq!(body["cached"], false, "{body}");
    }
}
