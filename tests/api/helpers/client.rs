//! HTTP and account helpers for the black-box auth and access tests: a small
//! blocking client, users created through the CLI, logins, API keys, the
//! error-body check, and hand-made HS256 JWTs.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use base64::Engine;
use reqwest::blocking::Client;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::Server;

/// A password long enough for the default `auth.min_password_length` (10).
pub const PASSWORD: &str = "correct horse battery";

/// Status, JSON body (`Value::Null` when empty, a string when not JSON), headers.
pub type Resp = (u16, Value, HeaderMap);

/// A blocking client bound to one server.
pub struct Api {
    pub base: String,
    client: Client,
}

impl Api {
    pub fn new(server: &Server) -> Self {
        Self::with_base(&server.base)
    }

    pub fn with_base(base: &str) -> Self {
        let client = Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .expect("http client");
        Self {
            base: base.trim_end_matches('/').to_string(),
            client,
        }
    }

    /// `path` starts at the root, e.g. `/api/v1/users/me`.
    pub fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        self.request_with(method, path, token, body, &[])
    }

    /// [`Api::request`] with extra headers (such as `X-Forwarded-For`).
    pub fn request_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut headers: Vec<(&str, String)> =
            extra.iter().map(|(k, v)| (*k, v.to_string())).collect();
        if let Some(t) = token {
            headers.push(("authorization", format!("Bearer {t}")));
        }
        let raw = body.map(|b| b.to_string().into_bytes());
        if raw.is_some() {
            headers.push(("content-type", "application/json".into()));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.raw(method, path, &headers, raw)
    }

    /// Full control: explicit headers (no `Authorization` added) and raw body bytes.
    pub fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let url = format!("{}{path}", self.base);
        let mut req = self.client.request(method.clone(), &url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req
            .send()
            .unwrap_or_else(|e| panic!("{method} {path}: request failed: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp
            .bytes()
            .unwrap_or_else(|e| panic!("{method} {path}: reading the body failed: {e}"));
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, value, headers)
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.request(Method::GET, path, token, None)
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        self.request(Method::POST, path, token, body)
    }

    pub fn patch(&self, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        self.request(Method::PATCH, path, token, body)
    }

    pub fn put(&self, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        self.request(Method::PUT, path, token, body)
    }

    pub fn delete(&self, path: &str, token: Option<&str>) -> Resp {
        self.request(Method::DELETE, path, token, None)
    }
}

/// Require `status`; returns the body for further checks.
#[track_caller]
pub fn expect(resp: Resp, status: u16, what: &str) -> Value {
    let (got, body, _) = resp;
    assert_eq!(got, status, "{what}: expected {status}, got {got}: {body}");
    body
}

/// The error contract: `expected_status` and `{"error": {"code": code, "message": non-empty}}`.
#[track_caller]
pub fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(
        status, expected_status,
        "expected {expected_status} {code}, got {status}: {body}"
    );
    assert_eq!(
        body["error"]["code"], code,
        "expected error code {code} (status {status}): {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.trim().is_empty()),
        "error without a message: {body}"
    );
}

/// An error body without its `request_id`, which differs per request, to
/// compare what two failures tell the client.
pub fn without_request_id(body: &Value) -> Value {
    let mut body = body.clone();
    if let Some(error) = body.get_mut("error").and_then(Value::as_object_mut) {
        error.remove("request_id");
    }
    body
}

/// `422 invalid_field` naming `field`.
#[track_caller]
pub fn assert_invalid_field(status: u16, body: &Value, field: &str) {
    assert_error(status, body, 422, "invalid_field");
    assert_eq!(
        body["error"]["field"], field,
        "expected `field` = {field:?} in the error: {body}"
    );
}

/// 401 with a `WWW-Authenticate: Bearer …` header and the given code.
#[track_caller]
pub fn assert_unauthorized(resp: &Resp, code: &str) {
    let (status, body, headers) = resp;
    assert_error(*status, body, 401, code);
    let www = headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        www.to_ascii_lowercase().starts_with("bearer"),
        "401 without `WWW-Authenticate: Bearer` (got {www:?}): {body}"
    );
}

/// The client IP as the server sees it with `rate_limit.trust_forwarded_for`.
pub fn forwarded_for(ip: &str) -> [(&'static str, &str); 1] {
    [("x-forwarded-for", ip)]
}

/// `Retry-After` as whole seconds.
pub fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `ragchat user create <name> --password-stdin [--admin]` (server not
/// running on `data_dir`); returns the new user's id.
pub fn create_user_cli(data_dir: &Path, name: &str, password: &str, admin: bool) -> String {
    let mut args = vec!["user", "create", name, "--password-stdin"];
    if admin {
        args.push("--admin");
    }
    let mut child = super::cmd(data_dir)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run the ragchat binary");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write the password");
    let out = child
        .wait_with_output()
        .expect("wait for ragchat user create");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ragchat {args:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The user is printed as JSON; tolerate a line of text before it.
    let user: Value = serde_json::from_str(stdout.trim())
        .or_else(|_| serde_json::from_str(&stdout[stdout.find('{').unwrap_or(0)..]))
        .unwrap_or_else(|e| panic!("`user create` did not print the user as JSON ({e}): {stdout}"));
    assert_eq!(
        user["username"],
        name.to_lowercase(),
        "`user create` output: {user}"
    );
    assert_eq!(
        user["role"],
        if admin { "admin" } else { "user" },
        "`user create` output: {user}"
    );
    user["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in `user create` output: {user}"))
        .to_string()
}

/// `ragchat ingest <path> --collection <name>` (server not running on `data_dir`).
pub fn ingest(data_dir: &Path, path: &Path, collection: &str) {
    super::run_ok(
        data_dir,
        &[
            "ingest",
            path.to_str().expect("utf-8 path"),
            "--collection",
            collection,
        ],
    );
}

/// (source, chunk id) of each result of a `/query` response, in rank order.
pub fn result_ids(body: &Value) -> Vec<(String, String)> {
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["source"].as_str().unwrap_or_default().to_string(),
                r["chunk_id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Log in; returns (access token, refresh token).
#[track_caller]
pub fn login(api: &Api, user: &str, password: &str) -> (String, String) {
    let (status, body, _) = api.post(
        "/api/v1/auth/login",
        None,
        Some(json!({"username": user, "password": password})),
    );
    assert_eq!(status, 200, "login {user}: {body}");
    token_pair(&body)
}

/// (access token, refresh token) of a login or refresh response.
#[track_caller]
pub fn token_pair(body: &Value) -> (String, String) {
    let access = body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token: {body}"));
    let refresh = body["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh_token: {body}"));
    (access.to_string(), refresh.to_string())
}

/// Create an API key with a JWT; returns (id, key).
#[track_caller]
pub fn create_api_key(api: &Api, token: &str, name: &str, scopes: &[&str]) -> (String, String) {
    let (status, body, _) = api.post(
        "/api/v1/api-keys",
        Some(token),
        Some(json!({"name": name, "scopes": scopes})),
    );
    assert_eq!(status, 201, "create API key {name} {scopes:?}: {body}");
    (
        body["id"].as_str().expect("key id").to_string(),
        body["key"].as_str().expect("key").to_string(),
    )
}

/// The id of the collection named `name` as the admin `token` lists it.
#[track_caller]
pub fn collection_id(api: &Api, token: &str, name: &str) -> String {
    let body = expect(
        api.get("/api/v1/collections", Some(token)),
        200,
        "list collections",
    );
    body["items"]
        .as_array()
        .and_then(|items| items.iter().find(|c| c["name"] == name))
        .and_then(|c| c["id"].as_str())
        .unwrap_or_else(|| panic!("collection {name} not listed: {body}"))
        .to_string()
}

// --- JWTs by hand -----------------------------------------------------------

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decode the header and the claims of a JWT (no verification).
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut next = || -> Value {
        let part = parts.next().unwrap_or_else(|| panic!("not a JWT: {token}"));
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .unwrap_or_else(|e| panic!("JWT part is not base64url ({e}): {token}"));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("JWT part is not JSON ({e})"))
    };
    let header = next();
    let claims = next();
    (header, claims)
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// A JWT signed with HS256 and `secret` (the header is taken as given).
pub fn sign_jwt(secret: &[u8], header: &Value, claims: &Value) -> String {
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = hmac_sha256(secret, signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&sig))
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// An RFC 3339 timestamp field.
#[track_caller]
pub fn timestamp(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("timestamp is not a string: {v}"));
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("timestamp {s:?} is not RFC 3339: {e}"))
}
