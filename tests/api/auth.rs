//! Black-box tests of accounts and authentication (docs/API.md,
//! "Authentication", "API keys", "Admin: users", "Limits"): the real binary,
//! the real server, HTTP only.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::helpers;
use crate::helpers::client::{
    assert_error, assert_invalid_field, assert_unauthorized, create_api_key, expect, forwarded_for,
    hmac_sha256, jwt_parts, login, now_secs, retry_after, sign_jwt, token_pair, without_request_id,
    Api, PASSWORD,
};
use crate::helpers::TestApp;
use crate::helpers::{fixtures, TEST_JWT_SECRET};
use reqwest::Method;
use serde_json::{json, Value};

const ME: &str = "/api/v1/users/me";
const LOGIN: &str = "/api/v1/auth/login";
const REFRESH: &str = "/api/v1/auth/refresh";
const LOGOUT: &str = "/api/v1/auth/logout";
const REGISTER: &str = "/api/v1/auth/register";
const PASSWORD_PATH: &str = "/api/v1/users/me/password";
const KEYS: &str = "/api/v1/api-keys";

fn refresh(api: &Api, token: &str) -> helpers::client::Resp {
    api.post(REFRESH, None, Some(json!({ "refresh_token": token })))
}

/// The user object of docs/API.md, and no secrets in it.
#[track_caller]
fn assert_user_shape(user: &Value) {
    for field in ["id", "username", "email", "role", "disabled", "created_at"] {
        assert!(user.get(field).is_some(), "user without `{field}`: {user}");
    }
    assert!(user["id"].as_str().is_some_and(|s| !s.is_empty()), "{user}");
    assert!(user["disabled"].is_boolean(), "{user}");
    let text = user.to_string().to_lowercase();
    for secret in ["password", "hash", "token_version", "argon2"] {
        assert!(
            !text.contains(secret),
            "user object leaks `{secret}`: {user}"
        );
    }
}

#[test]
fn hmac_helper_matches_rfc_4231() {
    // RFC 4231 test case 2, and case 6 (a key longer than the block): the
    // hand-made JWTs below are only meaningful if this HMAC is right.
    assert_eq!(
        hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        hex::encode(hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

#[test]
fn registration_is_closed_by_default() {
    let s = TestApp::start(&[], &[], &[]);
    let (status, body, _) = s.api.post(
        REGISTER,
        None,
        Some(json!({"username": "mallory", "password": PASSWORD})),
    );
    assert_error(status, &body, 403, "registration_closed");
    // Nothing was created.
    let (status, body, _) = s.api.post(
        LOGIN,
        None,
        Some(json!({"username": "mallory", "password": PASSWORD})),
    );
    assert_error(status, &body, 401, "invalid_credentials");
}

#[test]
fn open_registration_validation_and_case_insensitive_names() {
    let s = TestApp::start(
        &[],
        &[],
        &[
            ("RAGCHAT_AUTH_REGISTRATION", "open"),
            ("RAGCHAT_AUTH_MIN_PASSWORD_LENGTH", "12"),
        ],
    );
    let api = &s.api;
    let register = |body: Value| api.post(REGISTER, None, Some(body));

    let user = expect(
        register(json!({"username": "Alice", "password": PASSWORD, "email": "alice@example.org"})),
        201,
        "register Alice",
    );
    assert_user_shape(&user);
    assert_eq!(user["username"], "alice", "stored lower-case: {user}");
    assert_eq!(user["role"], "user", "{user}");
    assert_eq!(user["disabled"], false, "{user}");
    assert_eq!(user["email"], "alice@example.org", "{user}");

    for name in ["alice", "ALICE", "aLiCe"] {
        let (status, body, _) = register(json!({"username": name, "password": PASSWORD}));
        assert_error(status, &body, 409, "username_taken");
    }

    // Login is case-insensitive and returns the documented body.
    let (status, body, _) = api.post(
        LOGIN,
        None,
        Some(json!({"username": "ALICE", "password": PASSWORD})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert_eq!(body["expires_in"], 900, "default access_ttl_secs: {body}");
    assert!(
        body["refresh_expires_in"].as_u64().is_some_and(|n| n > 900),
        "{body}"
    );
    assert!(
        body["refresh_token"]
            .as_str()
            .is_some_and(|t| t.starts_with("rcr_")),
        "{body}"
    );
    assert_eq!(body["user"]["id"], user["id"], "{body}");
    assert_user_shape(&body["user"]);
    let (access, _) = token_pair(&body);

    // The access token is an HS256 JWT with the documented claims.
    let (header, claims) = jwt_parts(&access);
    assert_eq!(header["alg"], "HS256", "{header}");
    assert_eq!(claims["iss"], "ragchat", "{claims}");
    assert_eq!(claims["sub"], user["id"], "{claims}");
    assert!(
        claims["sid"].as_str().is_some_and(|s| !s.is_empty()),
        "{claims}"
    );
    assert!(claims["ver"].is_i64() || claims["ver"].is_u64(), "{claims}");
    assert!(claims["exp"].is_i64() || claims["exp"].is_u64(), "{claims}");

    let me = expect(api.get(ME, Some(&access)), 200, "users/me");
    assert_eq!(me, user, "users/me is the registered user");

    // Login by email (case-insensitive) is the same account; emails are unique.
    let (status, body, _) = api.post(
        LOGIN,
        None,
        Some(json!({"email": "Alice@Example.org", "password": PASSWORD})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["id"], user["id"], "{body}");
    let (status, body, _) = api.post(
        LOGIN,
        None,
        Some(json!({"email": "alice@example.org", "password": "wrong password!!"})),
    );
    assert_error(status, &body, 401, "invalid_credentials");
    let (status, body, _) = api.post(
        LOGIN,
        None,
        Some(json!({"username": "alice", "email": "alice@example.org", "password": PASSWORD})),
    );
    assert_invalid_field(status, &body, "username");
    let (status, body, _) =
        register(json!({"username": "alice2", "password": PASSWORD, "email": "ALICE@example.org"}));
    assert_error(status, &body, 409, "email_taken");

    // Password length: min 12 here, max 256.
    let (status, body, _) = register(json!({"username": "bob", "password": "a".repeat(11)}));
    assert_invalid_field(status, &body, "password");
    let (status, body, _) = register(json!({"username": "bob", "password": "a".repeat(257)}));
    assert_invalid_field(status, &body, "password");
    // Those failures created nothing: the name is still free.
    expect(
        register(json!({"username": "bob", "password": "b".repeat(12)})),
        201,
        "12-character password",
    );
    expect(
        register(json!({"username": "bob2", "password": "c".repeat(256)})),
        201,
        "256-character password",
    );
    login(api, "bob2", &"c".repeat(256));

    // Usernames: 3–64 of a-z 0-9 . _ -
    for bad in [
        "ab".to_string(),
        "has space".to_string(),
        "slash/name".to_string(),
        "at@sign".to_string(),
        "ünïcode".to_string(),
        "".to_string(),
        "a".repeat(65),
    ] {
        let (status, body, _) = register(json!({"username": bad, "password": PASSWORD}));
        assert_invalid_field(status, &body, "username");
    }
    for good in ["abc".to_string(), "a.b_c-9".to_string(), "z".repeat(64)] {
        expect(
            register(json!({"username": good, "password": PASSWORD})),
            201,
            &format!("register {good}"),
        );
    }

    let (status, body, _) =
        register(json!({"username": "carl", "password": PASSWORD, "admin": true}));
    assert_error(status, &body, 400, "invalid_body");
    let (status, body, _) =
        register(json!({"username": "carl", "password": PASSWORD, "role": "admin"}));
    assert_error(status, &body, 400, "invalid_body");
}

#[test]
fn login_failures_do_not_tell_why() {
    let s = TestApp::start(&[("carol", false)], &[], &[]);
    let api = &s.api;
    let attempt = |user: &str, pw: &str| {
        let (status, body, _) =
            api.post(LOGIN, None, Some(json!({"username": user, "password": pw})));
        (status, body)
    };
    let unknown = attempt("nobody-here", PASSWORD);
    let wrong = attempt("carol", "wrong password!!");
    assert_error(unknown.0, &unknown.1, 401, "invalid_credentials");
    assert_error(wrong.0, &wrong.1, 401, "invalid_credentials");
    assert_eq!(
        (unknown.0, without_request_id(&unknown.1)),
        (wrong.0, without_request_id(&wrong.1)),
        "unknown user and wrong password must look the same"
    );
    // Case-insensitive.
    for name in ["carol", "CAROL", "CaRoL"] {
        login(api, name, PASSWORD);
    }
}

#[test]
fn access_token_expires_and_refresh_token_still_works() {
    let s = TestApp::start(
        &[("dan", false)],
        &[],
        &[("RAGCHAT_AUTH_ACCESS_TTL_SECS", "1")],
    );
    let api = &s.api;
    let (status, body, _) = api.post(
        LOGIN,
        None,
        Some(json!({"username": "dan", "password": PASSWORD})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 1, "{body}");
    let (access, refresh_token) = token_pair(&body);

    // 1 s TTL; past 3 s the token is expired even with a 1 s clock leeway.
    std::thread::sleep(Duration::from_millis(3200));
    assert_unauthorized(&api.get(ME, Some(&access)), "token_expired");

    let (status, body, _) = refresh(api, &refresh_token);
    assert_eq!(
        status, 200,
        "refresh after the access token expired: {body}"
    );
    let (new_access, new_refresh) = token_pair(&body);
    assert_ne!(new_refresh, refresh_token);
    assert_ne!(new_access, access);
    assert_eq!(jwt_parts(&new_access).1["sub"], s.id("dan"));
}

#[test]
fn refresh_rotates_and_reuse_revokes_the_session() {
    let s = TestApp::start(&[("erin", false)], &[], &[]);
    let api = &s.api;
    let (other_access, other_refresh) = s.login("erin");
    let (a1, r1) = s.login("erin");

    let b = expect(refresh(api, &r1), 200, "first refresh");
    assert_eq!(b["token_type"], "Bearer", "{b}");
    assert!(b["expires_in"].as_u64().is_some(), "{b}");
    assert!(b["refresh_expires_in"].as_u64().is_some(), "{b}");
    assert_eq!(b["user"]["username"], "erin", "{b}");
    let (a2, r2) = token_pair(&b);
    assert_ne!(r2, r1, "a new refresh token");
    assert!(r2.starts_with("rcr_"), "{r2}");
    expect(api.get(ME, Some(&a2)), 200, "rotated access token");

    let (a3, r3) = token_pair(&expect(refresh(api, &r2), 200, "second refresh"));
    expect(api.get(ME, Some(&a3)), 200, "twice-rotated access token");

    // r1 was rotated already: reuse revokes the whole session.
    let (status, body, _) = refresh(api, &r1);
    assert_error(status, &body, 401, "refresh_token_reused");
    let (status, body, _) = refresh(api, &r3);
    assert_error(status, &body, 401, "invalid_refresh_token");
    for (name, token) in [("a1", &a1), ("a2", &a2), ("a3", &a3)] {
        let resp = api.get(ME, Some(token));
        assert_eq!(resp.0, 401, "{name} of the revoked session: {}", resp.1);
        assert_unauthorized(&resp, "unauthorized");
    }

    // Another session of the same user is not affected.
    expect(api.get(ME, Some(&other_access)), 200, "other session");
    expect(refresh(api, &other_refresh), 200, "other session refresh");

    // Unknown refresh tokens.
    for bogus in ["rcr_not-a-real-token", "garbage"] {
        let (status, body, _) = refresh(api, bogus);
        assert_error(status, &body, 401, "invalid_refresh_token");
    }

    // "Each refresh returns a new pair": the access token too, even within
    // the second of the login (checked last, so the rest runs first).
    assert_ne!(a2, a1, "refresh returned the same access token again");
    assert_ne!(a3, a2, "refresh returned the same access token again");
}

#[test]
fn logout_revokes_that_session_only() {
    let s = TestApp::start(&[("fay", false)], &[], &[]);
    let api = &s.api;
    let (a1, r1) = s.login("fay");
    let (a2, r2) = s.login("fay");
    expect(api.get(ME, Some(&a1)), 200, "before logout");

    let logout = |t: &str| api.post(LOGOUT, None, Some(json!({ "refresh_token": t })));
    let (status, body, _) = logout(&r1);
    assert_eq!(status, 204, "{body}");
    assert_eq!(body, Value::Null, "204 has no body");
    assert_unauthorized(&api.get(ME, Some(&a1)), "unauthorized");
    let (status, body, _) = refresh(api, &r1);
    assert_error(status, &body, 401, "invalid_refresh_token");
    // Idempotent, unknown tokens too.
    assert_eq!(logout(&r1).0, 204);
    assert_eq!(logout("rcr_unknown-token").0, 204);

    // The other session is untouched.
    expect(api.get(ME, Some(&a2)), 200, "other session after logout");
    expect(refresh(api, &r2), 200, "other session refresh after logout");
}

#[test]
fn admin_disables_enables_promotes_and_demotes_users() {
    let s = TestApp::start(&[("root", true), ("dave", false)], &[], &[]);
    let api = &s.api;
    let (root, _) = s.login("root");
    let dave_id = s.id("dave").to_string();
    let root_id = s.id("root").to_string();
    let user_path = format!("/api/v1/admin/users/{dave_id}");
    let (dave, dave_refresh) = s.login("dave");
    let (_, dave_key) = create_api_key(api, &dave, "dave-q", &["query"]);
    expect(api.get(ME, Some(&dave_key)), 200, "dave's key");

    let body = expect(
        api.patch(&user_path, Some(&root), Some(json!({"disabled": true}))),
        200,
        "disable dave",
    );
    assert_eq!(body["disabled"], true, "{body}");
    assert_eq!(body["id"], dave_id.as_str(), "{body}");
    assert_user_shape(&body);
    let fetched = expect(api.get(&user_path, Some(&root)), 200, "get dave");
    assert_eq!(fetched["disabled"], true, "{fetched}");

    // At once: JWT, API key, refresh and login.
    assert_unauthorized(&api.get(ME, Some(&dave)), "unauthorized");
    assert_unauthorized(&api.get(ME, Some(&dave_key)), "unauthorized");
    let (status, body, _) = refresh(api, &dave_refresh);
    assert_eq!(status, 401, "refresh of a disabled user: {body}");
    let (status, disabled_body, _) = api.post(
        LOGIN,
        None,
        Some(json!({"username": "dave", "password": PASSWORD})),
    );
    assert_error(status, &disabled_body, 401, "invalid_credentials");
    let (_, unknown_body, _) = api.post(
        LOGIN,
        None,
        Some(json!({"username": "nobody-here", "password": PASSWORD})),
    );
    assert_eq!(
        without_request_id(&disabled_body),
        without_request_id(&unknown_body),
        "a disabled user's login looks like an unknown user's"
    );

    let body = expect(
        api.patch(&user_path, Some(&root), Some(json!({"disabled": false}))),
        200,
        "enable dave",
    );
    assert_eq!(body["disabled"], false, "{body}");
    let (dave, _) = s.login("dave");
    expect(api.get(ME, Some(&dave)), 200, "re-enabled dave");

    // An admin cannot disable or demote themselves; nothing changes.
    let self_path = format!("/api/v1/admin/users/{root_id}");
    for patch in [json!({"disabled": true}), json!({"role": "user"})] {
        let (status, body, _) = api.patch(&self_path, Some(&root), Some(patch));
        assert_error(status, &body, 409, "cannot_modify_self");
    }
    let me = expect(
        api.get(ME, Some(&root)),
        200,
        "root after refused self-change",
    );
    assert_eq!(me["role"], "admin", "{me}");
    assert_eq!(me["disabled"], false, "{me}");

    // Roles are checked on every request, not frozen into the token.
    let (status, body, _) = api.get("/api/v1/admin/users", Some(&dave));
    assert_error(status, &body, 403, "forbidden");
    let body = expect(
        api.patch(&user_path, Some(&root), Some(json!({"role": "admin"}))),
        200,
        "promote dave",
    );
    assert_eq!(body["role"], "admin", "{body}");
    expect(
        api.get("/api/v1/admin/users", Some(&dave)),
        200,
        "dave as admin",
    );
    let (_, dave_admin_key) = create_api_key(api, &dave, "dave-admin", &["admin"]);
    expect(
        api.get("/api/v1/admin/users", Some(&dave_admin_key)),
        200,
        "dave's admin key",
    );
    expect(
        api.patch(&user_path, Some(&root), Some(json!({"role": "user"}))),
        200,
        "demote dave",
    );
    let (status, body, _) = api.get("/api/v1/admin/users", Some(&dave));
    assert_error(status, &body, 403, "forbidden");
    // The admin scope only works while its owner is an admin.
    let (status, body, _) = api.get("/api/v1/admin/users", Some(&dave_admin_key));
    assert_eq!(status, 403, "admin key of a demoted user: {body}");

    // Bad values, unknown users.
    let (status, body, _) = api.patch(&user_path, Some(&root), Some(json!({"role": "superuser"})));
    assert_invalid_field(status, &body, "role");
    let (status, body, _) = api.patch(&user_path, Some(&root), Some(json!({"banned": true})));
    assert_error(status, &body, 400, "invalid_body");
    let unknown = "/api/v1/admin/users/00000000-0000-4000-8000-000000000000";
    assert_eq!(api.get(unknown, Some(&root)).0, 404);
    assert_eq!(
        api.patch(unknown, Some(&root), Some(json!({"disabled": true})))
            .0,
        404
    );

    // A patch that changes nothing does not sign the user out.
    expect(api.get(ME, Some(&dave)), 200, "dave before a no-op patch");
    for patch in [json!({"disabled": false}), json!({"role": "user"})] {
        expect(
            api.patch(&user_path, Some(&root), Some(patch.clone())),
            200,
            "no-op patch",
        );
        let (status, body, _) = api.get(ME, Some(&dave));
        assert_eq!(
            status, 200,
            "PATCH {patch} (no change) made dave's access token stop working: {body}"
        );
    }
}

#[test]
fn admin_user_listing_and_creation() {
    let s = TestApp::start(
        &[("root", true), ("user1", false), ("user2", false)],
        &[],
        &[],
    );
    let api = &s.api;
    let (root, _) = s.login("root");

    let made = expect(
        api.post(
            "/api/v1/admin/users",
            Some(&root),
            Some(json!({"username": "Made", "password": PASSWORD, "email": "m@example.org"})),
        ),
        201,
        "admin creates a user",
    );
    assert_user_shape(&made);
    assert_eq!(made["username"], "made");
    assert_eq!(made["role"], "user", "default role: {made}");
    login(api, "made", PASSWORD);
    let boss = expect(
        api.post(
            "/api/v1/admin/users",
            Some(&root),
            Some(json!({"username": "boss", "password": PASSWORD, "role": "admin"})),
        ),
        201,
        "admin creates an admin",
    );
    assert_eq!(boss["role"], "admin");
    let (status, body, _) = api.post(
        "/api/v1/admin/users",
        Some(&root),
        Some(json!({"username": "MADE", "password": PASSWORD})),
    );
    assert_error(status, &body, 409, "username_taken");
    let (status, body, _) = api.post(
        "/api/v1/admin/users",
        Some(&root),
        Some(json!({"username": "shorty", "password": "short"})),
    );
    assert_invalid_field(status, &body, "password");
    let (status, body, _) = api.post(
        "/api/v1/admin/users",
        Some(&root),
        Some(json!({"username": "x", "password": PASSWORD})),
    );
    assert_invalid_field(status, &body, "username");

    // Pages of one, oldest first, each user once; nothing from the failed requests.
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/admin/users?limit=1&cursor={c}"),
            None => "/api/v1/admin/users?limit=1".to_string(),
        };
        let page = expect(api.get(&path, Some(&root)), 200, "admin user page");
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 1, "limit=1: {page}");
        for u in items {
            assert_user_shape(u);
            names.push(u["username"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => {
                assert!(page["next_cursor"].is_null(), "{page}");
                break;
            }
        }
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["boss", "made", "root", "user1", "user2"],
        "every user exactly once over the pages: {names:?}"
    );
    // The CLI users were made seconds before the server even started.
    let pos = |n: &str| names.iter().position(|x| x == n).unwrap();
    assert!(
        pos("root").max(pos("user1")).max(pos("user2")) < pos("made").min(pos("boss")),
        "oldest first: {names:?}"
    );
    let all = expect(
        api.get("/api/v1/admin/users", Some(&root)),
        200,
        "all users",
    );
    assert_eq!(all["items"].as_array().unwrap().len(), 5, "{all}");
    assert!(all["next_cursor"].is_null(), "{all}");
    let one = expect(
        api.get(
            &format!("/api/v1/admin/users/{}", s.id("user1")),
            Some(&root),
        ),
        200,
        "get user1",
    );
    assert_eq!(one["username"], "user1");
}

#[test]
fn password_change() {
    let s = TestApp::start(&[("gail", false)], &[], &[]);
    let api = &s.api;
    let (a1, r1) = s.login("gail");
    let (a2, r2) = s.login("gail");
    let (_, key) = create_api_key(api, &a1, "k", &["query"]);
    let new_password = "a brand new passphrase";
    let change = |token: &str, current: &str, new: &str| {
        api.post(
            PASSWORD_PATH,
            Some(token),
            Some(json!({"current_password": current, "new_password": new})),
        )
    };

    let (status, body, _) = change(&key, PASSWORD, new_password);
    assert_error(status, &body, 403, "session_required");
    let (status, body, _) = change(&a1, "not the password", new_password);
    assert_error(status, &body, 401, "invalid_credentials");
    let (status, body, _) = change(&a1, PASSWORD, "short");
    assert_invalid_field(status, &body, "new_password");
    let (status, body, _) = api.post(
        PASSWORD_PATH,
        Some(&a1),
        Some(json!({"current_password": PASSWORD, "new_password": new_password, "logout": false})),
    );
    assert_error(status, &body, 400, "invalid_body");
    // None of those changed anything.
    expect(api.get(ME, Some(&a1)), 200, "after refused changes");
    login(api, "gail", PASSWORD);

    let (status, body, _) = change(&a1, PASSWORD, new_password);
    assert_eq!(status, 204, "{body}");
    for (name, token) in [("a1", &a1), ("a2", &a2)] {
        let resp = api.get(ME, Some(token));
        assert_eq!(resp.0, 401, "{name} after password change: {}", resp.1);
        assert_unauthorized(&resp, "unauthorized");
    }
    for token in [&r1, &r2] {
        let (status, body, _) = refresh(api, token);
        assert_eq!(status, 401, "refresh after password change: {body}");
    }
    let (status, body, _) = api.post(
        LOGIN,
        None,
        Some(json!({"username": "gail", "password": PASSWORD})),
    );
    assert_error(status, &body, 401, "invalid_credentials");
    let (a3, _) = login(api, "gail", new_password);
    expect(api.get(ME, Some(&a3)), 200, "new session");
    // API keys stay valid.
    expect(
        api.get(ME, Some(&key)),
        200,
        "API key after password change",
    );
}

#[test]
fn api_keys() {
    let kb = fixtures().join("kb");
    let s = TestApp::start(
        &[("root", true), ("frank", false), ("gina", false)],
        &[("kb", &kb)],
        &[],
    );
    let api = &s.api;
    let (root, _) = s.login("root");
    let kb_id = helpers::client::collection_id(api, &root, "kb");
    expect(
        api.patch(
            &format!("/api/v1/collections/{kb_id}"),
            Some(&root),
            Some(json!({"public": true})),
        ),
        200,
        "make kb public",
    );
    let (frank, _) = s.login("frank");
    let (gina, _) = s.login("gina");

    let created = expect(
        api.post(
            KEYS,
            Some(&frank),
            Some(json!({"name": "q", "scopes": ["query"]})),
        ),
        201,
        "create key",
    );
    for field in [
        "id",
        "name",
        "prefix",
        "scopes",
        "created_at",
        "expires_at",
        "last_used_at",
        "key",
    ] {
        assert!(
            created.get(field).is_some(),
            "key without `{field}`: {created}"
        );
    }
    let q_key = created["key"].as_str().unwrap().to_string();
    let q_id = created["id"].as_str().unwrap().to_string();
    let prefix = created["prefix"].as_str().unwrap();
    assert!(q_key.starts_with("rck_"), "{created}");
    assert!(
        !prefix.is_empty() && prefix.len() < q_key.len() && q_key.starts_with(prefix),
        "prefix identifies the key without being it: {created}"
    );
    assert_eq!(created["scopes"], json!(["query"]), "{created}");
    assert_eq!(created["name"], "q");
    assert!(created["expires_at"].is_null(), "{created}");
    assert!(created["last_used_at"].is_null(), "{created}");
    let with_expiry = expect(
        api.post(
            KEYS,
            Some(&frank),
            Some(json!({"name": "e", "scopes": ["query", "chat"], "expires_in_days": 30})),
        ),
        201,
        "key with expiry",
    );
    assert!(with_expiry["expires_at"].is_string(), "{with_expiry}");
    let (chat_id, chat_key) = create_api_key(api, &frank, "c", &["chat"]);
    let (_, ingest_key) = create_api_key(api, &frank, "i", &["ingest"]);
    let all_frank_keys = [
        q_key.clone(),
        chat_key.clone(),
        ingest_key.clone(),
        with_expiry["key"].as_str().unwrap().to_string(),
    ];

    // Listing: own keys only, never the secret.
    let list = expect(api.get(KEYS, Some(&frank)), 200, "list keys");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 4, "{list}");
    let text = list.to_string();
    for key in &all_frank_keys {
        assert!(
            !text.contains(key.as_str()),
            "a key is shown in the list: {list}"
        );
    }
    assert!(items.iter().all(|k| k.get("key").is_none()), "{list}");
    let created_at: Vec<_> = items
        .iter()
        .map(|k| helpers::client::timestamp(&k["created_at"]))
        .collect();
    assert!(
        created_at.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {list}"
    );
    let gina_list = expect(api.get(KEYS, Some(&gina)), 200, "gina's keys");
    assert_eq!(gina_list["items"], json!([]), "{gina_list}");
    let (gina_key_id, _) = create_api_key(api, &gina, "g", &["query"]);
    let gina_list = expect(api.get(KEYS, Some(&gina)), 200, "gina's keys");
    let ids: Vec<&Value> = gina_list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["id"])
        .collect();
    assert_eq!(ids, [&json!(gina_key_id)], "{gina_list}");

    // Every key authenticates /users/me as its owner.
    for key in &all_frank_keys {
        let me = expect(api.get(ME, Some(key)), 200, "users/me with a key");
        assert_eq!(me["id"], s.id("frank"), "{me}");
    }

    // Scopes.
    let query = json!({"query": "shock wave", "collections": ["kb"]});
    let body = expect(
        api.post("/api/v1/query", Some(&q_key), Some(query.clone())),
        200,
        "query key on /query",
    );
    assert!(!body["results"].as_array().unwrap().is_empty(), "{body}");
    expect(
        api.get("/api/v1/query?q=shock", Some(&q_key)),
        200,
        "query key on GET /query",
    );
    expect(
        api.get("/api/v1/collections", Some(&q_key)),
        200,
        "query key lists collections",
    );
    expect(
        api.get("/api/v1/collections", Some(&chat_key)),
        200,
        "chat key lists collections",
    );
    expect(
        api.get("/api/v1/conversations", Some(&chat_key)),
        200,
        "chat key on conversations",
    );
    expect(
        api.post(
            "/api/v1/conversations",
            Some(&chat_key),
            Some(json!({"title": "via key"})),
        ),
        201,
        "chat key creates a conversation",
    );
    let denied: [(&str, Method, &str, Option<Value>); 7] = [
        (
            &chat_key,
            Method::POST,
            "/api/v1/query",
            Some(query.clone()),
        ),
        (&chat_key, Method::GET, "/api/v1/query?q=shock", None),
        (&q_key, Method::GET, "/api/v1/conversations", None),
        (
            &q_key,
            Method::POST,
            "/api/v1/conversations",
            Some(json!({"title": "x"})),
        ),
        (
            &ingest_key,
            Method::POST,
            "/api/v1/query",
            Some(query.clone()),
        ),
        (&ingest_key, Method::GET, "/api/v1/collections", None),
        (&ingest_key, Method::GET, "/api/v1/conversations", None),
    ];
    for (key, method, path, body) in denied {
        let (status, resp, _) = api.request(method.clone(), path, Some(key), body);
        assert_eq!(
            status, 403,
            "{method} {path} with a key lacking the scope: {resp}"
        );
        assert_error(status, &resp, 403, "insufficient_scope");
    }

    // `admin` only for admins.
    for scopes in [json!(["admin"]), json!(["query", "admin"])] {
        let (status, body, _) = api.post(
            KEYS,
            Some(&frank),
            Some(json!({"name": "a", "scopes": scopes})),
        );
        assert_error(status, &body, 403, "forbidden");
    }
    let (_, root_admin_key) = create_api_key(api, &root, "root-admin", &["admin"]);
    expect(
        api.get("/api/v1/admin/users", Some(&root_admin_key)),
        200,
        "admin key",
    );
    let (status, body, _) = api.get("/api/v1/admin/users", Some(&q_key));
    assert_eq!(status, 403, "{body}");

    // Validation.
    for (body, field) in [
        (json!({"name": "x", "scopes": []}), "scopes"),
        (json!({"name": "x", "scopes": ["bogus"]}), "scopes"),
        (json!({"name": "", "scopes": ["query"]}), "name"),
        (
            json!({"name": "n".repeat(101), "scopes": ["query"]}),
            "name",
        ),
    ] {
        let (status, resp, _) = api.post(KEYS, Some(&frank), Some(body));
        assert_invalid_field(status, &resp, field);
    }
    let (status, body, _) = api.post(
        KEYS,
        Some(&frank),
        Some(json!({"name": "x", "scopes": ["query"], "owner": "root"})),
    );
    assert_error(status, &body, 400, "invalid_body");
    expect(
        api.post(
            KEYS,
            Some(&frank),
            Some(json!({"name": "n".repeat(100), "scopes": ["query"]})),
        ),
        201,
        "100-character name",
    );

    // Keys cannot manage keys (or passwords).
    for (method, path, body) in [
        (
            Method::POST,
            KEYS.to_string(),
            Some(json!({"name": "k2", "scopes": ["query"]})),
        ),
        (Method::GET, KEYS.to_string(), None),
        (Method::DELETE, format!("{KEYS}/{chat_id}"), None),
    ] {
        let (status, resp, _) = api.request(method.clone(), &path, Some(&q_key), body);
        assert_error(status, &resp, 403, "session_required");
    }
    expect(
        api.get(ME, Some(&chat_key)),
        200,
        "chat key survives a refused delete",
    );

    // Someone else's key or an unknown id: 404, and nothing happens.
    assert_eq!(api.delete(&format!("{KEYS}/{q_id}"), Some(&gina)).0, 404);
    assert_eq!(
        api.delete(
            &format!("{KEYS}/00000000-0000-4000-8000-000000000000"),
            Some(&frank)
        )
        .0,
        404
    );
    expect(
        api.get(ME, Some(&q_key)),
        200,
        "key survives another user's delete",
    );

    // Revoke: at once, and gone from the list.
    let (status, body, _) = api.delete(&format!("{KEYS}/{q_id}"), Some(&frank));
    assert_eq!(status, 204, "{body}");
    assert_unauthorized(&api.get(ME, Some(&q_key)), "unauthorized");
    assert_unauthorized(
        &api.post("/api/v1/query", Some(&q_key), Some(query)),
        "unauthorized",
    );
    let list = expect(api.get(KEYS, Some(&frank)), 200, "list after revoke");
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["id"] != q_id.as_str()),
        "revoked keys are not listed: {list}"
    );
    assert_unauthorized(
        &api.get(ME, Some(&format!("rck_{}", "0".repeat(40)))),
        "unauthorized",
    );
}

/// `ragchat serve` with `env` changes; killed (by pid) on drop.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn serve_refuses_to_start_without_a_jwt_secret() {
    let dir = helpers::TestDir::new();
    let data = dir.path().join("data");
    for unset in [false, true] {
        let mut c = helpers::cmd(&data);
        if unset {
            c.env_remove("RAGCHAT_AUTH_JWT_SECRET");
        } else {
            c.env("RAGCHAT_AUTH_JWT_SECRET", "");
        }
        let mut child = Spawned(
            c.args(["serve", "--bind", "127.0.0.1:0"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn ragchat serve"),
        );
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.0.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "serve without a JWT secret (unset: {unset}) is still running"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut stderr = String::new();
        let mut stdout = String::new();
        child
            .0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        child
            .0
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        assert_eq!(status.code(), Some(2), "unset: {unset}; stderr: {stderr}");
        assert!(stderr.contains("auth.jwt_secret"), "{stderr}");
        assert!(!stdout.contains("listening"), "{stdout}");
    }
}

#[test]
fn serve_dev_starts_without_a_jwt_secret() {
    let dir = helpers::TestDir::new();
    let data = dir.path().join("data");
    helpers::client::create_user_cli(&data, "hal", PASSWORD, false);
    let mut child = Spawned(
        helpers::cmd(&data)
            .env("RAGCHAT_AUTH_JWT_SECRET", "")
            .args(["serve", "--dev", "--bind", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ragchat serve --dev"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("ragchat listening on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("serve --dev without a secret did not report its address");
    let api = Api::with_base(&base);
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.get("/ready", None).0 != 200 {
        assert!(Instant::now() < deadline, "serve --dev never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Tokens signed with the generated secret work.
    let (access, refresh_token) = login(&api, "hal", PASSWORD);
    expect(api.get(ME, Some(&access)), 200, "users/me on --dev");
    expect(refresh(&api, &refresh_token), 200, "refresh on --dev");
    // And tokens signed with the usual test secret do not.
    let (header, claims) = jwt_parts(&access);
    let forged = sign_jwt(TEST_JWT_SECRET.as_bytes(), &header, &claims);
    assert_unauthorized(&api.get(ME, Some(&forged)), "unauthorized");
    drop(child);
}

#[test]
fn body_limits_and_malformed_input() {
    let s = TestApp::start(&[("root", true), ("judy", false)], &[], &[]);
    let api = &s.api;
    let (root, _) = s.login("root");
    let (judy, _) = s.login("judy");

    // Above 64 KiB: 413, on public and authenticated endpoints alike.
    let big = "x".repeat(70 * 1024);
    let (status, body, _) = api.post(
        LOGIN,
        None,
        Some(json!({"username": "judy", "password": big})),
    );
    assert_error(status, &body, 413, "payload_too_large");
    let (status, body, _) = api.post("/api/v1/query", Some(&judy), Some(json!({"query": big})));
    assert_error(status, &body, 413, "payload_too_large");
    let (status, body, _) = api.post(
        "/api/v1/conversations",
        Some(&judy),
        Some(json!({"title": big})),
    );
    assert_error(status, &body, 413, "payload_too_large");
    // Below the limit the body is read and validated normally.
    let (status, body, _) = api.post(
        "/api/v1/query",
        Some(&judy),
        Some(json!({"query": "y".repeat(60 * 1024)})),
    );
    assert_error(status, &body, 400, "query_too_long");

    // Malformed JSON, unknown fields, wrong types: 400 invalid_body.
    let (status, body, _) = api.raw(
        Method::POST,
        LOGIN,
        &[("content-type", "application/json")],
        Some(b"{\"username\": \"judy\", ".to_vec()),
    );
    assert_error(status, &body, 400, "invalid_body");
    for bad in [
        json!({"username": "judy", "password": PASSWORD, "remember_me": true}),
        json!({"username": 5, "password": PASSWORD}),
    ] {
        let (status, body, _) = api.post(LOGIN, None, Some(bad));
        assert_error(status, &body, 400, "invalid_body");
    }
    let (status, body, _) = api.post(
        REFRESH,
        None,
        Some(json!({"refresh_token": "rcr_x", "extra": 1})),
    );
    assert_error(status, &body, 400, "invalid_body");
    let (status, body, _) = api.post(
        "/api/v1/conversations",
        Some(&judy),
        Some(json!({"title": "t", "owner": "root"})),
    );
    assert_error(status, &body, 400, "invalid_body");
    let (status, body, _) = api.post(
        "/api/v1/admin/users",
        Some(&root),
        Some(json!({"username": "newbie", "password": PASSWORD, "disabled": true})),
    );
    assert_error(status, &body, 400, "invalid_body");

    // Validation: 422 invalid_field naming the field.
    for (body, field) in [
        (
            json!({"username": "newbie", "password": "short"}),
            "password",
        ),
        (json!({"username": "no", "password": PASSWORD}), "username"),
        (
            json!({"username": "bad name", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"username": "newbie", "password": PASSWORD, "role": "owner"}),
            "role",
        ),
    ] {
        let (status, resp, _) = api.post("/api/v1/admin/users", Some(&root), Some(body));
        assert_invalid_field(status, &resp, field);
    }
    for title in [String::new(), "t".repeat(201)] {
        let (status, resp, _) = api.post(
            "/api/v1/conversations",
            Some(&judy),
            Some(json!({ "title": title })),
        );
        assert_invalid_field(status, &resp, "title");
    }
    expect(
        api.post(
            "/api/v1/conversations",
            Some(&judy),
            Some(json!({"title": "t".repeat(200)})),
        ),
        201,
        "200-character title",
    );
    for name in ["", "bad name", "slash/name", &"c".repeat(101)] {
        let (status, resp, _) = api.post(
            "/api/v1/collections",
            Some(&root),
            Some(json!({ "name": name })),
        );
        assert_invalid_field(status, &resp, "name");
    }
    // None of the refused requests created anything.
    let users = expect(api.get("/api/v1/admin/users", Some(&root)), 200, "users");
    assert_eq!(users["items"].as_array().unwrap().len(), 2, "{users}");
    let convs = expect(
        api.get("/api/v1/conversations", Some(&judy)),
        200,
        "conversations",
    );
    assert_eq!(convs["items"].as_array().unwrap().len(), 1, "{convs}");
}

#[test]
fn login_is_rate_limited() {
    let s = TestApp::start(
        &[("kim", false)],
        &[],
        &[
            ("RAGCHAT_RATE_LIMIT_ENABLED", "true"),
            ("RAGCHAT_RATE_LIMIT_LOGIN_BURST", "3"),
            ("RAGCHAT_RATE_LIMIT_LOGIN_PER_MINUTE", "1"),
        ],
    );
    let api = &s.api;
    for _ in 0..3 {
        let (status, body, _) = api.post(
            LOGIN,
            None,
            Some(json!({"username": "kim", "password": "wrong password"})),
        );
        assert_error(status, &body, 401, "invalid_credentials");
    }
    // Even the right password is refused now.
    let (status, body, headers) = api.post(
        LOGIN,
        None,
        Some(json!({"username": "kim", "password": PASSWORD})),
    );
    assert_error(status, &body, 429, "rate_limited");
    let after = retry_after(&headers);
    assert!(
        after.is_some_and(|s| s >= 1),
        "429 needs Retry-After in whole seconds >= 1, got {:?}",
        headers.get("retry-after")
    );
}

#[test]
fn login_is_rate_limited_per_ip_and_per_username() {
    let s = TestApp::start(
        &[("kim", false), ("lee", false)],
        &[],
        &[
            ("RAGCHAT_RATE_LIMIT_ENABLED", "true"),
            ("RAGCHAT_RATE_LIMIT_LOGIN_BURST", "3"),
            ("RAGCHAT_RATE_LIMIT_LOGIN_PER_MINUTE", "1"),
            ("RAGCHAT_RATE_LIMIT_TRUST_FORWARDED_FOR", "true"),
        ],
    );
    let api = &s.api;
    let attempt = |user: &str, password: &str, ip: &str| {
        api.request_with(
            Method::POST,
            LOGIN,
            None,
            Some(json!({"username": user, "password": password})),
            &forwarded_for(ip),
        )
    };
    // Per username: one attempt from each of four addresses.
    for i in 1..=3 {
        let (status, body, _) = attempt("kim", "wrong password", &format!("10.1.0.{i}"));
        assert_error(status, &body, 401, "invalid_credentials");
    }
    let (status, body, headers) = attempt("kim", PASSWORD, "10.1.0.4");
    assert_error(status, &body, 429, "rate_limited");
    assert!(
        retry_after(&headers).is_some_and(|s| s >= 1),
        "Retry-After: {:?}",
        headers.get("retry-after")
    );
    // Per IP: new names from one address until the address is refused (the
    // per-IP quota may be larger than the per-name one, but it is finite).
    let mut refused = None;
    for i in 1..=100 {
        let (status, body, headers) = attempt(&format!("nobody{i}"), "wrong password", "10.2.0.1");
        if status == 429 {
            assert_error(status, &body, 429, "rate_limited");
            assert!(retry_after(&headers).is_some_and(|s| s >= 1));
            refused = Some(i);
            break;
        }
        assert_error(status, &body, 401, "invalid_credentials");
    }
    assert!(
        refused.is_some(),
        "100 logins with fresh names from one address were never limited"
    );
    let (status, body, _) = attempt("lee", PASSWORD, "10.2.0.1");
    assert_error(status, &body, 429, "rate_limited");
    // Neither limit is global: another name from another address gets in.
    let (status, body, _) = attempt("lee", PASSWORD, "10.3.0.1");
    assert_eq!(status, 200, "lee from a fresh address: {body}");
}

#[test]
fn query_is_rate_limited_per_user() {
    let kb = fixtures().join("kb");
    // Admins read every collection, so both users see the fixtures.
    let s = TestApp::start(
        &[("ann", true), ("ben", true)],
        &[("kb", &kb)],
        &[
            ("RAGCHAT_RATE_LIMIT_ENABLED", "true"),
            ("RAGCHAT_RATE_LIMIT_QUERY_BURST", "3"),
            ("RAGCHAT_RATE_LIMIT_QUERY_PER_MINUTE", "1"),
            ("RAGCHAT_RATE_LIMIT_TRUST_FORWARDED_FOR", "true"),
        ],
    );
    let api = &s.api;
    let (ann, _) = s.login("ann");
    let (ben, _) = s.login("ben");
    let q = json!({"query": "shock wave", "top_k": 1});
    let query = |token: &str, ip: &str| {
        api.request_with(
            Method::POST,
            "/api/v1/query",
            Some(token),
            Some(q.clone()),
            &forwarded_for(ip),
        )
    };
    for i in 0..3 {
        expect(
            query(&ann, "10.0.0.1"),
            200,
            &format!("ann's query {i} within the burst"),
        );
    }
    let (status, body, headers) = query(&ann, "10.0.0.1");
    assert_error(status, &body, 429, "rate_limited");
    assert!(
        retry_after(&headers).is_some_and(|s| s >= 1),
        "Retry-After: {:?}",
        headers.get("retry-after")
    );
    let (status, body, _) = api.request_with(
        Method::GET,
        "/api/v1/query?q=shock",
        Some(&ann),
        None,
        &forwarded_for("10.0.0.1"),
    );
    assert_error(status, &body, 429, "rate_limited");
    // Per user: ann stays limited from another address.
    let (status, body, _) = query(&ann, "10.0.0.2");
    assert_error(status, &body, 429, "rate_limited");
    // Another user is still served.
    expect(query(&ben, "10.0.0.3"), 200, "ben while ann is limited");
}

#[test]
fn bad_authorization_is_401_with_www_authenticate() {
    let s = TestApp::start(&[("ivan", false), ("root", true)], &[], &[]);
    let api = &s.api;
    let (access, refresh_token) = s.login("ivan");
    let (header, claims) = jwt_parts(&access);
    let secret = TEST_JWT_SECRET.as_bytes();
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims.clone();
        change(&mut c);
        c
    };

    // Control: a token made here with the server's secret and the same
    // claims is accepted, so the refusals below are about what was changed.
    let control = sign_jwt(
        secret,
        &header,
        &with(&|c| c["exp"] = json!(c["exp"].as_i64().unwrap() + 60)),
    );
    let me = expect(
        api.get(ME, Some(&control)),
        200,
        "hand-signed control token",
    );
    assert_eq!(me["id"], s.id("ivan"));

    // No or malformed header.
    let headers: Vec<(String, Option<String>)> = vec![
        ("no header".into(), None),
        (
            "Basic".into(),
            Some("Basic aXZhbjpjb3JyZWN0IGhvcnNl".into()),
        ),
        ("bare token".into(), Some(access.clone())),
        ("Token scheme".into(), Some(format!("Token {access}"))),
        ("Bearer only".into(), Some("Bearer".into())),
        ("Bearer empty".into(), Some("Bearer ".into())),
        ("garbage".into(), Some("Bearer not.a.jwt".into())),
        ("garbage 2".into(), Some("Bearer abc".into())),
        (
            "refresh token".into(),
            Some(format!("Bearer {refresh_token}")),
        ),
        (
            "unknown API key".into(),
            Some(format!("Bearer rck_{}", "a".repeat(40))),
        ),
    ];
    // Hand-made JWTs.
    let mut jwts: Vec<(&str, String)> = vec![
        (
            "other secret",
            sign_jwt(
                b"another-secret-another-secret-another-secret",
                &header,
                &claims,
            ),
        ),
        (
            "wrong issuer",
            sign_jwt(
                secret,
                &header,
                &with(&|c| c["iss"] = json!("someone-else")),
            ),
        ),
        (
            "token version bumped",
            sign_jwt(
                secret,
                &header,
                &with(&|c| c["ver"] = json!(c["ver"].as_i64().unwrap() + 1)),
            ),
        ),
        (
            "unknown session",
            sign_jwt(
                secret,
                &header,
                &with(&|c| c["sid"] = json!("00000000-0000-4000-8000-000000000000")),
            ),
        ),
        (
            "unknown user",
            sign_jwt(
                secret,
                &header,
                &with(&|c| c["sub"] = json!("00000000-0000-4000-8000-000000000000")),
            ),
        ),
        (
            "no exp",
            sign_jwt(
                secret,
                &header,
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            ),
        ),
    ];
    // alg none, and a tampered payload under the original signature.
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    jwts.push((
        "alg none",
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&claims)
        ),
    ));
    let sig = access.rsplit('.').next().unwrap();
    jwts.push((
        "tampered sub",
        format!(
            "{}.{}.{sig}",
            access.split('.').next().unwrap(),
            b64(&with(&|c| c["sub"] = json!(s.id("root"))))
        ),
    ));
    let all: Vec<(String, Option<String>)> = headers
        .into_iter()
        .chain(
            jwts.into_iter()
                .map(|(n, t)| (n.to_string(), Some(format!("Bearer {t}")))),
        )
        .collect();
    for (name, value) in &all {
        let mut h: Vec<(&str, &str)> = Vec::new();
        if let Some(v) = value {
            h.push(("authorization", v.as_str()));
        }
        for path in [ME, "/api/v1/query?q=shock", "/api/v1/admin/users"] {
            let resp = api.raw(Method::GET, path, &h, None);
            assert_eq!(resp.0, 401, "{name} on {path}: {}", resp.1);
            assert_unauthorized(&resp, "unauthorized");
        }
    }
    // Also before the body is looked at.
    let resp = api.post("/api/v1/query", None, Some(json!({"query": "shock"})));
    assert_unauthorized(&resp, "unauthorized");

    // Correctly signed but past its exp: token_expired.
    let expired = sign_jwt(
        secret,
        &header,
        &with(&|c| c["exp"] = json!(now_secs() - 3600)),
    );
    assert_unauthorized(&api.get(ME, Some(&expired)), "token_expired");

    // The real token still works after all that.
    expect(api.get(ME, Some(&access)), 200, "original token");
}
