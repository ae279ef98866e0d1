//! Black-box tests of what guards the WebSockets: a socket lives no longer
//! than its credential and answers with the caller's current rights; tickets
//! open a socket once; connections are capped per user and per address and
//! upgrades are rate limited; API keys expire; credentials and questions in
//! query strings stay out of the log.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::Message;

use crate::helpers::client::{
    assert_error, assert_invalid_field, assert_unauthorized, create_api_key, expect, retry_after,
    Api, PASSWORD,
};
use crate::helpers::fixtures;
use crate::helpers::ws::{
    answer_frames, connect, expect_close, make_public, send, try_connect, ws_url, Ws,
};
use crate::helpers::TestApp;

const QUESTION: &str = "What happens to the pressure across a normal shock wave?";
const TICKETS: &str = "/api/v1/ws-tickets";
const KEYS: &str = "/api/v1/api-keys";
const ME: &str = "/api/v1/users/me";

fn ask(collections: Option<&[&str]>) -> Value {
    match collections {
        Some(c) => json!({"type": "ask", "message": QUESTION, "collections": c}),
        None => json!({"type": "ask", "message": QUESTION}),
    }
}

/// Ask on a socket whose credential has ended: the server closes it (1008)
/// with a reason and sends no answer.
#[track_caller]
fn ask_after_the_end(ws: &mut Ws) -> (u16, String) {
    // The server may already have closed the socket; the write may then fail.
    let _ = ws.send(Message::text(ask(None).to_string()));
    expect_close(ws)
}

fn last_type(frames: &[Value]) -> (Option<&str>, Option<&str>) {
    let last = frames.last().expect("frames");
    (last["type"].as_str(), last["code"].as_str())
}

/// An admin changes `user` (role, disabled).
#[track_caller]
fn set_user(s: &TestApp, admin: &str, user: &str, change: Value) {
    expect(
        s.api.patch(
            &format!("/api/v1/admin/users/{}", s.id(user)),
            Some(admin),
            Some(change),
        ),
        200,
        &format!("change {user}"),
    );
}

#[test]
fn an_open_chat_socket_keeps_no_rights_its_credential_lost() {
    let kb = fixtures().join("kb");
    let s = TestApp::start(
        &[
            ("admin", true),
            ("root", true),
            ("ann", false),
            ("bob", false),
            ("cat", false),
            ("dan", false),
        ],
        &[("kb", kb.as_path()), ("private", kb.as_path())],
        &[],
    );
    make_public(&s, "kb");
    let api = &s.api;
    let (admin, _) = s.login("admin");

    // Logout: the socket worked, then its session ends.
    let (ann, ann_refresh) = s.login("ann");
    let mut ws = connect(&s, &ann);
    send(&mut ws, ask(None));
    assert_eq!(last_type(&answer_frames(&mut ws)).0, Some("done"));
    expect(
        api.post(
            "/api/v1/auth/logout",
            None,
            Some(json!({"refresh_token": ann_refresh})),
        ),
        204,
        "logout",
    );
    assert_eq!(ask_after_the_end(&mut ws), (1008, "session ended".into()));

    // Disabled by an admin.
    let (bob, _) = s.login("bob");
    let mut ws = connect(&s, &bob);
    set_user(&s, &admin, "bob", json!({"disabled": true}));
    assert_eq!(ask_after_the_end(&mut ws), (1008, "session ended".into()));

    // Password changed (from another session).
    let (cat, _) = s.login("cat");
    let (cat2, _) = s.login("cat");
    let mut ws = connect(&s, &cat);
    expect(
        api.post(
            "/api/v1/users/me/password",
            Some(&cat2),
            Some(json!({"current_password": PASSWORD, "new_password": "another long passphrase"})),
        ),
        204,
        "change cat's password",
    );
    assert_eq!(ask_after_the_end(&mut ws), (1008, "session ended".into()));

    // An API key revoked.
    let (dan, _) = s.login("dan");
    let (key_id, key) = create_api_key(api, &dan, "chat", &["chat"]);
    let mut ws = connect(&s, &key);
    expect(
        api.delete(&format!("{KEYS}/{key_id}"), Some(&dan)),
        204,
        "revoke the key",
    );
    assert_eq!(ask_after_the_end(&mut ws), (1008, "session ended".into()));

    // Demoted: the socket stays open, but asks as the user it is now.
    let (root, _) = s.login("root");
    let mut ws = connect(&s, &root);
    send(&mut ws, ask(Some(&["private"])));
    assert_eq!(last_type(&answer_frames(&mut ws)).0, Some("done"));
    set_user(&s, &admin, "root", json!({"role": "user"}));
    send(&mut ws, ask(Some(&["private"])));
    let frames = answer_frames(&mut ws);
    assert_eq!(
        last_type(&frames),
        (Some("error"), Some("collection_not_found")),
        "{frames:?}"
    );
    assert!(
        frames
            .iter()
            .all(|f| !matches!(f["type"].as_str(), Some("sources" | "delta" | "done"))),
        "nothing of an answer: {frames:?}"
    );
    // A grant is read at each ask too.
    let private = crate::helpers::client::collection_id(api, &admin, "private");
    expect(
        api.put(
            &format!("/api/v1/collections/{private}/grants/{}", s.id("root")),
            Some(&admin),
            None,
        ),
        204,
        "grant root the private collection",
    );
    send(&mut ws, ask(Some(&["private"])));
    assert_eq!(last_type(&answer_frames(&mut ws)).0, Some("done"));
}

#[test]
fn an_idle_socket_is_closed_when_its_token_or_key_expires() {
    let s = TestApp::start(
        &[("eve", false)],
        &[],
        &[("RAGCHAT_AUTH_ACCESS_TTL_SECS", "4")],
    );
    let (eve, _) = s.login("eve");
    let mut ws = connect(&s, &eve);
    // Nothing is sent: the server closes the socket at the token's expiry.
    assert_eq!(expect_close(&mut ws), (1008, "token expired".into()));

    // A key with a near expiry: refused with its own code once past it, and
    // a socket it opened closes at that moment.
    let (eve, _) = s.login("eve");
    let at = (chrono::Utc::now() + chrono::Duration::seconds(5)).to_rfc3339();
    let created = expect(
        s.api.post(
            KEYS,
            Some(&eve),
            Some(json!({"name": "short", "scopes": ["chat"], "expires_at": at})),
        ),
        201,
        "key with expires_at",
    );
    let key = created["key"].as_str().unwrap().to_string();
    let mut ws = connect(&s, &key);
    assert_eq!(expect_close(&mut ws), (1008, "token expired".into()));
    assert_unauthorized(&s.api.get(ME, Some(&key)), "api_key_expired");
}

#[test]
fn api_key_expiry_is_validated_and_shown() {
    let s = TestApp::start(&[("fay", false)], &[], &[]);
    let api = &s.api;
    let (fay, _) = s.login("fay");
    let create = |body: Value| api.post(KEYS, Some(&fay), Some(body));
    let past = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let soon = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    for (body, field) in [
        (
            json!({"name": "k", "scopes": ["query"], "expires_at": past}),
            "expires_at",
        ),
        (
            json!({"name": "k", "scopes": ["query"], "expires_at": "next tuesday"}),
            "expires_at",
        ),
        (
            json!({"name": "k", "scopes": ["query"], "expires_at": "2999-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (
            json!({"name": "k", "scopes": ["query"], "expires_at": soon, "expires_in_days": 1}),
            "expires_at",
        ),
        (
            json!({"name": "k", "scopes": ["query"], "expires_in_days": 0}),
            "expires_in_days",
        ),
    ] {
        let (status, b, _) = create(body.clone());
        assert_invalid_field(status, &b, field);
    }
    let listed = expect(api.get(KEYS, Some(&fay)), 200, "list keys");
    assert_eq!(listed["items"], json!([]), "refused keys are not created");

    let created = expect(
        create(json!({"name": "k", "scopes": ["query"], "expires_at": soon})),
        201,
        "key with expires_at",
    );
    let shown = crate::helpers::client::timestamp(&created["expires_at"]);
    let asked = chrono::DateTime::parse_from_rfc3339(&soon).unwrap();
    assert!((shown - asked).num_milliseconds().abs() < 1000, "{created}");
    let listed = expect(api.get(KEYS, Some(&fay)), 200, "list keys");
    assert_eq!(listed["items"][0]["expires_at"], created["expires_at"]);
    expect(
        api.get(ME, Some(created["key"].as_str().unwrap())),
        200,
        "a key before its expiry",
    );

    // Past its expiry a key is refused on every request, with its own code
    // (checked here over plain HTTP, apart from any socket).
    let at = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let short = expect(
        create(json!({"name": "short", "scopes": ["query"], "expires_at": at})),
        201,
        "key expiring in 2 s",
    );
    let short = short["key"].as_str().expect("key").to_string();
    expect(api.get(ME, Some(&short)), 200, "a key before its expiry");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_unauthorized(&api.get(ME, Some(&short)), "api_key_expired");
}

/// `POST /ws-tickets` with `token`; the ticket.
#[track_caller]
fn ticket(api: &Api, token: &str) -> String {
    let body = expect(api.post(TICKETS, Some(token), None), 201, "ticket");
    assert!(body["expires_in"].as_u64().is_some(), "{body}");
    crate::helpers::client::timestamp(&body["expires_at"]);
    let t = body["ticket"].as_str().expect("ticket").to_string();
    assert!(t.starts_with("rcw_"), "{body}");
    t
}

/// A plain GET of a WebSocket URL (no upgrade): the checks before the
/// handshake answer with their JSON error, and a ticket is spent all the same.
fn get(api: &Api, path: &str) -> (u16, Value) {
    let (status, body, _) = api.get(path, None);
    (status, body)
}

#[test]
fn tickets_open_a_socket_once() {
    let kb = fixtures().join("kb");
    let s = TestApp::start(
        &[("admin", true), ("gus", false), ("hal", false)],
        &[("kb", kb.as_path())],
        &[],
    );
    make_public(&s, "kb");
    let api = &s.api;
    let url = ws_url(&s);
    let (gus, _) = s.login("gus");

    let (status, body, _) = api.post(TICKETS, None, None);
    assert_error(status, &body, 401, "unauthorized");

    // Works once, without any other credential.
    let t = ticket(api, &gus);
    let mut ws = try_connect(&format!("{url}?ticket={t}"), None).expect("ticket accepted");
    send(&mut ws, ask(None));
    assert_eq!(last_type(&answer_frames(&mut ws)).0, Some("done"));
    assert_eq!(
        try_connect(&format!("{url}?ticket={t}"), None).err(),
        Some(401)
    );
    let (status, body) = get(api, &format!("/api/v1/chat/ws?ticket={t}"));
    assert_error(status, &body, 401, "invalid_ticket");
    let (status, body) = get(api, "/api/v1/chat/ws?ticket=rcw_unknown");
    assert_error(status, &body, 401, "invalid_ticket");

    // A ticket stands for the credential that asked for it: a chat key's
    // ticket opens the chat socket; a key that may open no socket gets none.
    let (_, chat_key) = create_api_key(api, &gus, "c", &["chat"]);
    let t = ticket(api, &chat_key);
    let mut ws = try_connect(&format!("{url}?ticket={t}"), None).expect("key's ticket");
    send(&mut ws, ask(None));
    assert_eq!(last_type(&answer_frames(&mut ws)).0, Some("done"));
    let (_, query_key) = create_api_key(api, &gus, "q", &["query"]);
    let (status, body, _) = api.post(TICKETS, Some(&query_key), None);
    assert_error(status, &body, 403, "insufficient_scope");
    // A user's ticket does not open the admins' job-events socket.
    let t = ticket(api, &gus);
    let (status, body) = get(api, &format!("/api/v1/jobs/none/events?ticket={t}"));
    assert_error(status, &body, 403, "forbidden");

    // The job-events socket takes tickets too: an admin's gets past
    // authentication to the job lookup.
    let (admin, _) = s.login("admin");
    let t = ticket(api, &admin);
    let (status, body) = get(api, &format!("/api/v1/jobs/none/events?ticket={t}"));
    assert_error(status, &body, 404, "job_not_found");
    let (status, body) = get(api, &format!("/api/v1/jobs/none/events?ticket={t}"));
    assert_error(status, &body, 401, "invalid_ticket");

    // Issued, then the user is disabled: the ticket is worthless.
    let (hal, _) = s.login("hal");
    let t = ticket(api, &hal);
    set_user(&s, &admin, "hal", json!({"disabled": true}));
    assert_eq!(
        try_connect(&format!("{url}?ticket={t}"), None).err(),
        Some(401)
    );
}

#[test]
fn an_expired_ticket_is_refused() {
    let s = TestApp::start(
        &[("ivy", false)],
        &[],
        &[("RAGCHAT_AUTH_WS_TICKET_TTL_SECS", "1")],
    );
    let (ivy, _) = s.login("ivy");
    let t = ticket(&s.api, &ivy);
    std::thread::sleep(Duration::from_millis(2200));
    let (status, body) = get(&s.api, &format!("/api/v1/chat/ws?ticket={t}"));
    assert_error(status, &body, 401, "invalid_ticket");
}

#[test]
fn sockets_are_capped_per_user_and_per_address() {
    let s = TestApp::start(
        &[("jan", false), ("kim", false)],
        &[],
        &[
            ("RAGCHAT_SERVER_MAX_WS_PER_USER", "2"),
            ("RAGCHAT_SERVER_MAX_WS_PER_IP", "3"),
        ],
    );
    let url = ws_url(&s);
    let (jan, _) = s.login("jan");
    let (kim, _) = s.login("kim");
    let over = |token: &str| {
        let (status, body, headers) = s.api.get("/api/v1/chat/ws", Some(token));
        assert_error(status, &body, 429, "too_many_connections");
        assert!(retry_after(&headers).is_none(), "no time makes room");
        assert_eq!(try_connect(&url, Some(token)).err(), Some(429));
    };

    let mut jan1 = connect(&s, &jan);
    let _jan2 = connect(&s, &jan);
    over(&jan); // per user
    let _kim1 = connect(&s, &kim);
    over(&kim); // per address: all three come from 127.0.0.1

    // Closing a socket gives its place back.
    jan1.close(None).expect("close");
    let _ = jan1.flush();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match try_connect(&url, Some(&jan)) {
            Ok(_) => break,
            Err(429) => {
                assert!(Instant::now() < deadline, "the place was never freed");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(other) => panic!("expected 101 or 429, got {other}"),
        }
    }
}

#[test]
fn upgrades_are_rate_limited() {
    let s = TestApp::start(
        &[("lee", false)],
        &[],
        &[
            ("RAGCHAT_RATE_LIMIT_ENABLED", "true"),
            ("RAGCHAT_RATE_LIMIT_WS_CONNECT_PER_MINUTE", "1"),
            ("RAGCHAT_RATE_LIMIT_WS_CONNECT_BURST", "2"),
            ("RAGCHAT_RATE_LIMIT_IP_FACTOR", "1"),
        ],
    );
    let (lee, _) = s.login("lee");
    for _ in 0..2 {
        let mut ws = connect(&s, &lee);
        ws.close(None).expect("close");
    }
    let (status, body, headers) = s.api.get("/api/v1/chat/ws", Some(&lee));
    assert_error(status, &body, 429, "rate_limited");
    assert!(retry_after(&headers).is_some_and(|s| s >= 1), "{headers:?}");
    assert_eq!(try_connect(&ws_url(&s), Some(&lee)).err(), Some(429));
    // Other requests have buckets of their own.
    expect(s.api.get(ME, Some(&lee)), 200, "users/me");
}

#[test]
fn query_strings_stay_out_of_the_log() {
    // With ragchat at `debug`, refused requests are logged inside their
    // request span, which records the path.
    let s = TestApp::start_logged(
        &[("max", false)],
        &[],
        &[
            ("RUST_LOG", "info,ragchat=debug"),
            ("RAGCHAT_LOG_LEVEL", "info,ragchat=debug"),
        ],
    );
    let (max, _) = s.login("max");
    let secrets = [
        ("/api/v1/chat/ws", "token=eyJ-not-a-real-token-chat"),
        (
            "/api/v1/jobs/some-job/events",
            "token=rck_not-a-real-key-jobs",
        ),
        ("/api/v1/chat/ws", "ticket=rcw_not-a-real-ticket"),
        ("/api/v1/query", "q=what+is+my+neighbours+salary"),
    ];
    for (path, query) in secrets {
        let (status, _, _) = s.api.get(&format!("{path}?{query}"), None);
        assert_eq!(status, 401, "{path}");
    }
    // A refusal after authentication, too.
    let (status, _, _) = s
        .api
        .get("/api/v1/query?q=zebrafinch+migration&top_k=0", Some(&max));
    assert_eq!(status, 400);

    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = s.server.log();
        if [
            "/api/v1/chat/ws",
            "/api/v1/jobs/some-job/events",
            "/api/v1/query",
        ]
        .iter()
        .all(|p| log.contains(p))
        {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "the refused requests were never logged with their paths:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for needle in [
        "eyJ-not-a-real-token-chat",
        "rck_not-a-real-key-jobs",
        "rcw_not-a-real-ticket",
        "salary",
        "zebrafinch",
        "token=",
        "?q=",
    ] {
        assert!(!log.contains(needle), "`{needle}` reached the log:\n{log}");
    }
}
