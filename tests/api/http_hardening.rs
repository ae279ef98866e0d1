//! Black-box tests of the HTTP boundary's hardening (issue 13, items 7, 8, 9
//! and 12): headers on every response, request ids in error bodies and
//! frames with no backend detail, readiness detail for admins only, password
//! endpoints under login's limits, client addresses from `X-Forwarded-For`,
//! answers that stop when their client leaves, and `check --repair`.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::client::{assert_error, assert_invalid_field, expect, forwarded_for, Resp};
use crate::helpers::openai_mock::{self, End, MockLlm, Reply};
use crate::helpers::ws::{answer_frames, connect, make_public, messages, send};
use crate::helpers::{self, check_consistent, fixtures, run, run_ok, TestApp};

const QUESTION: &str = "What happens to the pressure across a normal shock wave?";

fn header<'a>(resp: &'a Resp, name: &str) -> &'a str {
    resp.2
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header: {:?}", resp.2))
}

/// The response's `X-Request-Id`, checked to be a UUID.
#[track_caller]
fn request_id(resp: &Resp) -> String {
    let id = header(resp, "x-request-id");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "X-Request-Id {id:?}");
    id.to_string()
}

/// Poll `done` until it holds or `within` passes.
fn eventually(within: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

#[test]
fn every_response_carries_nosniff_no_store_and_its_own_request_id() {
    let s = TestApp::start(&[("ann", false)], &[], &[]);
    let api = &s.api;
    let (ann, _) = s.login("ann");
    let responses = [
        ("health", api.get("/health", None)),
        ("me", api.get("/api/v1/users/me", Some(&ann))),
        ("401", api.get("/api/v1/users/me", None)),
        ("404", api.get("/api/v1/nowhere", None)),
        ("405", api.delete("/api/v1/auth/login", None)),
        (
            "422",
            api.post(
                "/api/v1/conversations",
                Some(&ann),
                Some(json!({"title": ""})),
            ),
        ),
    ];
    // A known path with a method it does not take is a 405, an unknown one
    // a 404, with the API's error codes.
    assert_eq!(responses[3].1 .0, 404);
    assert_eq!(responses[3].1 .1["error"]["code"], "not_found");
    assert_eq!(responses[4].1 .0, 405, "{}", responses[4].1 .1);
    assert_eq!(responses[4].1 .1["error"]["code"], "method_not_allowed");
    let patch_query = api.patch("/api/v1/query", Some(&ann), None);
    assert_eq!(patch_query.0, 405, "{}", patch_query.1);
    let mut ids = std::collections::HashSet::new();
    for (what, resp) in &responses {
        assert_eq!(header(resp, "x-content-type-options"), "nosniff", "{what}");
        assert_eq!(header(resp, "cache-control"), "no-store", "{what}");
        let id = request_id(resp);
        assert!(ids.insert(id.clone()), "{what}: request id {id} repeated");
        // Error bodies name the same id.
        if resp.0 >= 400 {
            assert_eq!(
                resp.1["error"]["request_id"],
                id.as_str(),
                "{what}: {}",
                resp.1
            );
        }
    }
}

#[test]
fn ready_tells_anonymous_callers_only_whether_each_check_passed() {
    let s = TestApp::start(&[("root", true), ("ann", false)], &[], &[]);
    let (root, _) = s.login("root");
    let (ann, _) = s.login("ann");
    let checks = [
        "database",
        "vector_index",
        "lexical_index",
        "embedding_model",
    ];
    for token in [None, Some(ann.as_str()), Some("not-a-token")] {
        let body = expect(s.api.get("/ready", token), 200, "ready");
        assert_eq!(body["status"], "ready");
        for c in checks {
            assert_eq!(body["checks"][c], json!({"ok": true}), "{token:?}: {body}");
        }
    }
    let body = expect(s.api.get("/ready", Some(&root)), 200, "ready for an admin");
    for c in checks {
        assert_eq!(body["checks"][c]["ok"], true, "{body}");
        assert!(body["checks"][c]["detail"].is_string(), "{body}");
    }
}

/// A server whose chat model is an OpenAI-compatible endpoint at `base_url`.
fn openai_stack(base_url: &str, extra: &[(&str, &str)]) -> TestApp {
    let kb = fixtures().join("kb");
    let mut env = vec![
        ("RAGCHAT_CHAT_BACKEND", "openai"),
        ("RAGCHAT_LLM_BASE_URL", base_url),
        ("RAGCHAT_LLM_MODEL", "mock"),
        ("RAGCHAT_LLM_MAX_RETRIES", "0"),
    ];
    env.extend_from_slice(extra);
    let s = TestApp::start(
        &[("admin", true), ("ann", false)],
        &[("kb", kb.as_path())],
        &env,
    );
    make_public(&s, "kb");
    s
}

fn new_conversation(s: &TestApp, token: &str) -> String {
    let c = expect(
        s.api
            .post("/api/v1/conversations", Some(token), Some(json!({}))),
        201,
        "conversation",
    );
    c["id"].as_str().expect("conversation id").to_string()
}

/// What a failure on the server's side must not show a client.
#[track_caller]
fn assert_no_detail(text: &str, port: u16) {
    for leak in [
        "127.0.0.1",
        &format!(":{port}"),
        "connection refused",
        "os error",
        "cannot reach",
        "/v1/chat/completions",
    ] {
        assert!(
            !text.to_lowercase().contains(leak),
            "{leak:?} reached the client: {text}"
        );
    }
}

#[test]
fn a_failing_model_reaches_clients_as_a_code_and_a_request_id() {
    // A port nobody listens on: connecting fails with an OS error that names it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let s = openai_stack(&format!("http://127.0.0.1:{port}/v1"), &[]);
    let (ann, _) = s.login("ann");

    // One JSON body: 503 with a fixed message and the request's id.
    let conv = new_conversation(&s, &ann);
    let resp = s.api.post(
        &format!("/api/v1/conversations/{conv}/messages"),
        Some(&ann),
        Some(json!({"message": QUESTION})),
    );
    let id = request_id(&resp);
    assert_error(resp.0, &resp.1, 503, "unavailable");
    assert_eq!(resp.1["error"]["request_id"], id.as_str(), "{}", resp.1);
    assert_no_detail(&resp.1.to_string(), port);

    let resp = s.api.post(
        "/v1/chat/completions",
        Some(&ann),
        Some(json!({"messages": [{"role": "user", "content": QUESTION}]})),
    );
    let id = request_id(&resp);
    assert_error(resp.0, &resp.1, 503, "unavailable");
    assert_eq!(resp.1["error"]["request_id"], id.as_str(), "{}", resp.1);
    assert_no_detail(&resp.1.to_string(), port);

    // Server-sent events: the error event carries the code and the id.
    let resp = s.api.request_with(
        Method::POST,
        &format!("/api/v1/conversations/{conv}/messages"),
        Some(&ann),
        Some(json!({"message": QUESTION})),
        &[("accept", "text/event-stream")],
    );
    let id = request_id(&resp);
    let text = resp.1.as_str().expect("an event stream").to_string();
    assert_no_detail(&text, port);
    let error: Value = text
        .split("\n\n")
        .find(|e| e.starts_with("event: error"))
        .and_then(|e| e.split_once("data: "))
        .map(|(_, data)| serde_json::from_str(data).expect("JSON event"))
        .unwrap_or_else(|| panic!("no error event: {text}"));
    assert_eq!(error["code"], "llm_upstream", "{error}");
    assert_eq!(error["request_id"], id.as_str(), "{error}");

    // The streamed OpenAI format.
    let resp = s.api.post(
        "/v1/chat/completions",
        Some(&ann),
        Some(json!({"messages": [{"role": "user", "content": QUESTION}], "stream": true})),
    );
    let id = request_id(&resp);
    let text = resp.1.as_str().expect("an event stream").to_string();
    assert_no_detail(&text, port);
    assert!(text.contains(&format!("\"request_id\":\"{id}\"")), "{text}");

    // The WebSocket: the error frame, and the answer as stored.
    let mut ws = connect(&s, &ann);
    send(
        &mut ws,
        json!({"type": "ask", "conversation_id": null, "message": QUESTION}),
    );
    let frames = answer_frames(&mut ws);
    let error = frames.last().expect("frames");
    assert_eq!(error["type"], "error", "{frames:?}");
    assert_eq!(error["code"], "llm_upstream", "{error}");
    assert!(
        error["request_id"]
            .as_str()
            .is_some_and(|r| uuid::Uuid::parse_str(r).is_ok()),
        "{error}"
    );
    assert_no_detail(&error.to_string(), port);
    let conv = frames[0]["id"].as_str().expect("conversation id");
    assert_no_detail(&messages(&s, &ann, conv).to_string(), port);
}

/// Send `body` to `path` on a raw connection and leave once the model has
/// been asked, without reading a byte of the answer.
fn ask_and_leave(s: &TestApp, mock: &MockLlm, token: &str, path: &str, body: Value) {
    let asked = mock.request_count();
    let addr = s.server.base.trim_start_matches("http://");
    let mut sock = TcpStream::connect(addr).expect("connect");
    let body = body.to_string();
    write!(
        sock,
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send the request");
    assert!(
        eventually(Duration::from_secs(60), || mock.request_count() > asked),
        "the model was never asked"
    );
    drop(sock);
}

#[test]
fn an_answer_in_one_body_stops_when_its_client_leaves() {
    // The model says a word and then nothing, keeping its response open for
    // as long as the server reads it.
    let mock = MockLlm::start(vec![Reply::Stream {
        events: vec![openai_mock::role_chunk(), openai_mock::chunk("Pressure")],
        gap: Duration::from_millis(5),
        end: End::Hang,
    }]);
    let s = openai_stack(
        &mock.base_url,
        &[
            ("RAGCHAT_LLM_REQUEST_TIMEOUT_SECS", "3600"),
            ("RAGCHAT_LLM_FIRST_TOKEN_TIMEOUT_SECS", "60"),
        ],
    );
    let (ann, _) = s.login("ann");

    ask_and_leave(
        &s,
        &mock,
        &ann,
        "/v1/chat/completions",
        json!({"messages": [{"role": "user", "content": QUESTION}]}),
    );
    assert!(
        eventually(Duration::from_secs(30), || mock.client_gone() >= 1),
        "the model's response stayed open after the client of /v1/chat/completions left"
    );

    let conv = new_conversation(&s, &ann);
    ask_and_leave(
        &s,
        &mock,
        &ann,
        &format!("/api/v1/conversations/{conv}/messages"),
        json!({"message": QUESTION}),
    );
    assert!(
        eventually(Duration::from_secs(30), || mock.client_gone() >= 2),
        "the model's response stayed open after the client of the messages endpoint left"
    );
    // The partial answer is kept, marked cancelled.
    let cancelled = || messages(&s, &ann, &conv)["items"][1]["metadata"]["cancelled"] == true;
    assert!(
        eventually(Duration::from_secs(30), cancelled),
        "{}",
        messages(&s, &ann, &conv)
    );
}

/// Login's limits, small: three tokens per name, per user and per address.
const TIGHT_LOGIN_LIMITS: [(&str, &str); 4] = [
    ("RAGCHAT_RATE_LIMIT_ENABLED", "true"),
    ("RAGCHAT_RATE_LIMIT_LOGIN_BURST", "3"),
    ("RAGCHAT_RATE_LIMIT_LOGIN_PER_MINUTE", "1"),
    ("RAGCHAT_RATE_LIMIT_IP_FACTOR", "1"),
];

fn tight_limits(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut env = TIGHT_LOGIN_LIMITS.to_vec();
    env.extend_from_slice(extra);
    env
}

#[test]
fn password_endpoints_spend_login_tokens() {
    let s = TestApp::start(
        &[("root", true), ("ann", false)],
        &[],
        &tight_limits(&[
            ("RAGCHAT_AUTH_REGISTRATION", "open"),
            ("RAGCHAT_RATE_LIMIT_TRUST_FORWARDED_FOR", "true"),
        ]),
    );
    let api = &s.api;
    let post = |path: &str, token: Option<&str>, body: Value, ip: &str| {
        api.request_with(Method::POST, path, token, Some(body), &forwarded_for(ip))
    };
    let register = |name: &str, ip: &str| {
        post(
            "/api/v1/auth/register",
            None,
            json!({"username": name, "password": helpers::client::PASSWORD}),
            ip,
        )
    };

    // Per name: the same name from three addresses, then refused.
    let (status, body, _) = register("zed", "10.0.1.1");
    assert_eq!(status, 201, "{body}");
    for ip in ["10.0.1.2", "10.0.1.3"] {
        let (status, body, _) = register("zed", ip);
        assert_error(status, &body, 409, "username_taken");
    }
    let (status, body, _) = register("zed", "10.0.1.4");
    assert_error(status, &body, 429, "rate_limited");

    // Per address: fresh names from one address, then refused.
    for i in 1..=3 {
        let (status, body, _) = register(&format!("new{i}"), "10.0.2.1");
        assert_eq!(status, 201, "{body}");
    }
    let (status, body, headers) = register("new4", "10.0.2.1");
    assert_error(status, &body, 429, "rate_limited");
    assert!(headers.get("retry-after").is_some());

    // A password change, per user: wrong current passwords from many places.
    let login = |name: &str, ip: &str| {
        let (status, body, _) = post(
            "/api/v1/auth/login",
            None,
            json!({"username": name, "password": helpers::client::PASSWORD}),
            ip,
        );
        assert_eq!(status, 200, "{body}");
        helpers::client::token_pair(&body).0
    };
    let access = login("ann", "10.0.3.1");
    let change = |ip: &str| {
        post(
            "/api/v1/users/me/password",
            Some(&access),
            json!({"current_password": "not the password", "new_password": "a new long password"}),
            ip,
        )
    };
    for i in 1..=3 {
        let (status, body, _) = change(&format!("10.0.4.{i}"));
        assert_error(status, &body, 401, "invalid_credentials");
    }
    let (status, body, _) = change("10.0.4.4");
    assert_error(status, &body, 429, "rate_limited");

    // An admin creating users, per admin.
    let root = login("root", "10.0.5.1");
    let create = |name: &str, ip: &str| {
        post(
            "/api/v1/admin/users",
            Some(&root),
            json!({"username": name, "password": helpers::client::PASSWORD}),
            ip,
        )
    };
    for i in 1..=3 {
        let (status, body, _) = create(&format!("made{i}"), &format!("10.0.6.{i}"));
        assert_eq!(status, 201, "{body}");
    }
    let (status, body, _) = create("made4", "10.0.6.4");
    assert_error(status, &body, 429, "rate_limited");
}

#[test]
fn the_client_is_the_right_most_address_no_trusted_proxy_wrote() {
    let s = TestApp::start(
        &[],
        &[],
        &tight_limits(&[
            ("RAGCHAT_RATE_LIMIT_TRUST_FORWARDED_FOR", "true"),
            // The tests' own connections come from here.
            ("RAGCHAT_RATE_LIMIT_TRUSTED_PROXIES", "127.0.0.1"),
        ]),
    );
    let mut n = 0;
    let mut login = |forwarded: &str| {
        n += 1;
        s.api.request_with(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": format!("nobody{n}"), "password": "wrong password"})),
            &forwarded_for(forwarded),
        )
    };
    // Three attempts per address (fresh names, so only the address counts),
    // then the fourth from it is refused.
    let spend = |login: &mut dyn FnMut(&str) -> Resp, addresses: [&str; 4], what: &str| {
        for a in &addresses[..3] {
            let (status, body, _) = login(a);
            assert_error(status, &body, 401, "invalid_credentials");
        }
        let (status, body, _) = login(addresses[3]);
        assert_eq!(
            status, 429,
            "{what}: {} was not limited: {body}",
            addresses[3]
        );
    };
    // Whatever the client writes on the left is not its address.
    spend(
        &mut login,
        [
            "1.1.1.1, 203.0.113.10",
            "1.1.1.2, 203.0.113.10",
            "9.9.9.9, 8.8.8.8, 203.0.113.10",
            "1.1.1.4, 203.0.113.10",
        ],
        "spoofed left-most entries",
    );
    // One IPv6 subscriber, many addresses in its /64.
    spend(
        &mut login,
        [
            "2001:db8:5:6::1",
            "2001:db8:5:6::2",
            "2001:db8:5:6:aaaa::3",
            "2001:db8:5:6:ffff::4",
        ],
        "one /64",
    );
    let (status, body, _) = login("2001:db8:5:7::1");
    assert_error(status, &body, 401, "invalid_credentials");
    // Garbage is not an address: the connection's own address counts.
    spend(
        &mut login,
        ["garbage-1", "10.0.0.1, nonsense", "", "<script>"],
        "unreadable headers",
    );
    let (status, body, _) = login("203.0.113.99");
    assert_error(status, &body, 401, "invalid_credentials");
}

#[test]
fn an_over_long_login_name_is_refused_before_the_rate_limiter() {
    let s = TestApp::start(&[("kim", false)], &[], &TIGHT_LOGIN_LIMITS);
    let login = |body: Value| s.api.post("/api/v1/auth/login", None, Some(body));
    for i in 0..6 {
        let name = format!("{i}{}", "x".repeat(300));
        let (status, body, _) = login(json!({"username": name, "password": "pw"}));
        assert_invalid_field(status, &body, "username");
        let email = format!("{}@example.org", "y".repeat(300));
        let (status, body, _) = login(json!({"email": email, "password": "pw"}));
        assert_invalid_field(status, &body, "email");
    }
    // None of that spent a token of this address.
    let (status, body, _) =
        login(json!({"username": "kim", "password": helpers::client::PASSWORD}));
    assert_eq!(status, 200, "{body}");
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("dir entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

#[test]
fn check_finds_index_entries_without_a_chunk_and_repair_removes_them() {
    let dir = helpers::TestDir::new();
    let data = dir.path().join("data");
    let kb = fixtures().join("kb");
    helpers::client::ingest(&data, &kb, "aero");
    check_consistent(&data);
    // Plant orphans: indexes from before the collection was deleted, with
    // the database from after, as a crash between the steps could leave.
    // On a Qdrant server the vectors are not in the data directory: their
    // ids are put back through the server instead.
    let on_server = helpers::qdrant_collection(&data).is_some();
    let dirs: &[&str] = if on_server {
        &["tantivy"]
    } else {
        &["qdrant", "tantivy"]
    };
    let server_ids = on_server.then(|| helpers::qdrant::chunk_ids(&data));
    let saved = dir.path().join("saved");
    for index in dirs {
        copy_tree(&data.join(index), &saved.join(index));
    }
    run_ok(&data, &["delete-collection", "aero"]);
    for index in dirs {
        std::fs::remove_dir_all(data.join(index)).expect("remove index");
        copy_tree(&saved.join(index), &data.join(index));
    }
    if let Some(ids) = server_ids {
        assert!(!ids.is_empty());
        helpers::qdrant::plant(&data, ids);
    }

    let out = run(&data, &["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("database 0 chunks"), "{stdout}");
    assert!(stdout.contains("orphans in vector index"), "{stdout}");
    assert!(stdout.contains("orphans in lexical index"), "{stdout}");

    let repaired = run_ok(&data, &["check", "--repair"]);
    assert!(repaired.contains("repaired: removed"), "{repaired}");
    assert!(repaired.trim_end().ends_with("consistent"), "{repaired}");
    let out = check_consistent(&data);
    assert!(
        out.contains("database 0 chunks, vector index 0 points, lexical index 0 documents"),
        "{out}"
    );
}
