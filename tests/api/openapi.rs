//! The OpenAPI document against the running server: every operation it
//! describes is one the router serves. The other direction, every route
//! described, is the unit test in `src/http/openapi.rs`, which reads actix's
//! own route report (see that module for why).

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::client::expect;
use crate::helpers::TestApp;

/// What the router itself answers for a path it has no route for.
fn is_no_such_route(status: u16, body: &Value) -> bool {
    status == 404 && body["error"]["message"] == "no such route"
}

/// A documented path with its `{params}` filled in: ids that exist nowhere,
/// so every request is refused before it could change anything.
fn concrete(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .map_or(rest.len(), |e| start + e + 1);
        let name = &rest[start + 1..end - 1];
        out.push_str(if name == "file" {
            "no-such-file.txt"
        } else {
            "0b6f1c8e-4b8e-4f43-9a0c-3f2d1f9e8a71"
        });
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn every_documented_operation_is_routed() {
    let app = TestApp::start(&[], &[], &[]);
    let api = &app.api;
    let doc = expect(api.get("/api/openapi.json", None), 200, "the document");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );

    // The check can tell: a path nobody routes is the router's 404, and a
    // routed path with a method it does not take is a 404 or 405 too.
    let (status, body, _) = api.get("/api/v1/no-such-thing", None);
    assert!(is_no_such_route(status, &body), "{status} {body}");
    let (status, body, _) = api.request(Method::PUT, "/api/v1/query", None, None);
    assert!(
        is_no_such_route(status, &body) || status == 405,
        "{status} {body}"
    );

    let mut checked = 0;
    let paths = doc["paths"].as_object().expect("paths");
    for (template, item) in paths {
        let path = concrete(template);
        let item = item.as_object().expect("path item");
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::HEAD,
            Method::OPTIONS,
        ] {
            if !item.contains_key(&method.as_str().to_ascii_lowercase()) {
                continue;
            }
            // No credentials and no body: refused by the handler at the
            // latest, after the router picked it.
            let (status, body, _) = api.request(method.clone(), &path, None, None);
            assert!(
                !is_no_such_route(status, &body) && status != 405,
                "{method} {template} (sent as {path}) is documented but not routed: {status} {body}"
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} operations in the document");

    // The UI is served from the binary and reads the document above.
    let (status, body, _) = api.get("/api/docs/", None);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.as_str().is_some_and(|html| html.contains("swagger")),
        "{body}"
    );
    let (status, config, _) = api.get("/api/docs/swagger-initializer.js", None);
    assert_eq!(status, 200);
    assert!(
        config
            .as_str()
            .is_some_and(|js| js.contains("/api/openapi.json")),
        "{config}"
    );
}

/// Found by `scripts/fuzz-api.sh`: a question naming an empty collection
/// was a 503 `unavailable` after its question had been stored; one naming a
/// collection the caller cannot search was refused only after that too. Bad
/// input is a 4xx and leaves the conversation as it was.
#[test]
fn an_ask_naming_a_bad_collection_is_refused_before_anything_is_stored() {
    let kb = crate::helpers::fixtures().join("kb");
    let app = TestApp::start(&[("ann", false)], &[("private", kb.as_path())], &[]);
    let (ann, _) = app.login("ann");
    let api = &app.api;
    let conversation = expect(
        api.post("/api/v1/conversations", Some(&ann), Some(json!({}))),
        201,
        "a conversation",
    );
    let messages = format!(
        "/api/v1/conversations/{}/messages",
        conversation["id"].as_str().unwrap_or_default()
    );
    for (collections, status) in [
        (json!([""]), 422),
        (json!(["private", "  "]), 422),
        (json!(["private"]), 404),
        (json!(["no-such-collection"]), 404),
    ] {
        let body = json!({"message": "What is a shock wave?", "collections": collections});
        let (got, body, _) = api.post(&messages, Some(&ann), Some(body));
        assert_eq!(got, status, "{collections}: {body}");
        // The stateless form answers the same.
        let completion = json!({
            "messages": [{"role": "user", "content": "What is a shock wave?"}],
            "collections": collections,
        });
        let (got, body, _) = api.post("/v1/chat/completions", Some(&ann), Some(completion));
        assert_eq!(got, status, "completions {collections}: {body}");
    }
    let stored = expect(api.get(&messages, Some(&ann)), 200, "messages");
    assert_eq!(stored["items"], json!([]), "{stored}");
}
