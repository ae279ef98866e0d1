//! Black-box tests of who may do what (docs/API.md): an authorization matrix
//! over every endpoint and every kind of caller, explicit "zero leak" checks,
//! collection access inside every search mode, and the CRUD endpoints of
//! collections and conversations.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use crate::helpers;
use crate::helpers::client::{
    assert_error, assert_invalid_field, collection_id, create_api_key, expect, timestamp,
    without_request_id, Api, PASSWORD,
};
use crate::helpers::fixtures;
use crate::helpers::TestApp;
use reqwest::Method;
use serde_json::{json, Value};

const UNKNOWN_ID: &str = "00000000-0000-4000-8000-000000000000";
const TITLE_A: &str = "Alpha quarterly secret plans";
const TITLE_B: &str = "Bravo private notes";

/// The callers of the matrix, in column order.
const CALLERS: [&str; 8] = [
    "anon",      // no Authorization header
    "A",         // user A, JWT
    "B",         // user B, JWT
    "admin",     // admin, JWT
    "A:q+c",     // A's API key with scopes query + chat
    "A:ingest",  // A's API key with scope ingest only
    "adm:admin", // the admin's API key with scope admin only
    "adm:q+c",   // the admin's API key with scopes query + chat (no admin)
];

struct World {
    s: TestApp,
    /// Token per caller (None for anon), in `CALLERS` order.
    tokens: Vec<Option<String>>,
    a: String,
    admin: String,
    pub_id: String,
    granted_id: String,
    private_id: String,
    conv_a: String,
    conv_b: String,
    counter: Cell<usize>,
}

impl World {
    fn api(&self) -> &Api {
        &self.s.api
    }

    fn uniq(&self) -> usize {
        self.counter.set(self.counter.get() + 1);
        self.counter.get()
    }

    /// A new collection made by the admin: optionally public, optionally
    /// granted to `grant`.
    fn new_collection(&self, public: bool, grant: Option<&str>) -> String {
        let name = format!("fresh-{}", self.uniq());
        let body = expect(
            self.api().post(
                "/api/v1/collections",
                Some(&self.admin),
                Some(json!({"name": name, "public": public})),
            ),
            201,
            "setup: create a collection",
        );
        let id = body["id"].as_str().expect("collection id").to_string();
        if let Some(user) = grant {
            let (status, body, _) = self.api().put(
                &format!("/api/v1/collections/{id}/grants/{}", self.s.id(user)),
                Some(&self.admin),
                None,
            );
            assert_eq!(status, 204, "setup: grant {user}: {body}");
        }
        id
    }

    fn new_conversation(&self, token: &str) -> String {
        let body = expect(
            self.api().post(
                "/api/v1/conversations",
                Some(token),
                Some(json!({"title": "scratch"})),
            ),
            201,
            "setup: create a conversation",
        );
        body["id"].as_str().expect("conversation id").to_string()
    }

    /// Fill the placeholders of a path or body; `{new_…}` ones make a fresh
    /// resource for this cell.
    fn resolve(&self, template: &str) -> String {
        let mut out = template.to_string();
        let fixed: [(&str, &str); 10] = [
            ("{pub}", &self.pub_id),
            ("{granted}", &self.granted_id),
            ("{private}", &self.private_id),
            ("{convA}", &self.conv_a),
            ("{convB}", &self.conv_b),
            ("{A}", self.s.id("usera")),
            ("{B}", self.s.id("userb")),
            ("{admin}", self.s.id("root")),
            ("{unknown}", UNKNOWN_ID),
            ("{password}", PASSWORD),
        ];
        for (k, v) in fixed {
            out = out.replace(k, v);
        }
        out = out
            .replace("{titleA}", TITLE_A)
            .replace("{titleB}", TITLE_B);
        while out.contains("{uniq}") {
            out = out.replacen("{uniq}", &self.uniq().to_string(), 1);
        }
        if out.contains("{new_conv_A}") {
            out = out.replace("{new_conv_A}", &self.new_conversation(&self.a));
        }
        if out.contains("{new_conv_B}") {
            let b = self.tokens[2].clone().unwrap();
            out = out.replace("{new_conv_B}", &self.new_conversation(&b));
        }
        if out.contains("{new_user}") {
            let body = expect(
                self.api().post(
                    "/api/v1/admin/users",
                    Some(&self.admin),
                    Some(json!({"username": format!("fresh-user-{}", self.uniq()), "password": PASSWORD})),
                ),
                201,
                "setup: create a user",
            );
            out = out.replace("{new_user}", body["id"].as_str().expect("user id"));
        }
        if out.contains("{new_key_A}") {
            let (id, _) = create_api_key(
                self.api(),
                &self.a,
                &format!("m{}", self.uniq()),
                &["query"],
            );
            out = out.replace("{new_key_A}", &id);
        }
        if out.contains("{new_refresh_A}") {
            let (_, refresh) = self.s.login("usera");
            out = out.replace("{new_refresh_A}", &refresh);
        }
        for (placeholder, public, grant) in [
            ("{new_coll}", false, None),
            ("{new_coll_pub}", true, None),
            ("{new_coll_A}", false, Some("usera")),
            ("{new_coll_B}", false, Some("userb")),
        ] {
            if out.contains(placeholder) {
                out = out.replace(placeholder, &self.new_collection(public, grant));
            }
        }
        let unresolved = out.split('{').skip(1).any(|rest| {
            rest.split_once('}').is_some_and(|(name, _)| {
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        });
        assert!(!unresolved, "unresolved placeholder in {template}: {out}");
        out
    }
}

/// Does the response match one of the `|`-separated `status[:code]`
/// alternatives? Error bodies must also have the documented shape.
fn matches(expected: &str, status: u16, body: &Value, www_auth: bool) -> bool {
    let shape_ok = status < 400
        || (body["error"]["code"].is_string()
            && body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
    let bearer_ok = status != 401
        || !matches!(
            body["error"]["code"].as_str(),
            Some("unauthorized" | "token_expired")
        )
        || www_auth;
    shape_ok
        && bearer_ok
        && expected.split('|').any(|alt| {
            let (s, code) = match alt.split_once(':') {
                Some((s, c)) => (s, Some(c)),
                None => (alt, None),
            };
            s.parse::<u16>().ok() == Some(status) && code.is_none_or(|c| body["error"]["code"] == c)
        })
}

type Row = (&'static str, &'static str, &'static str, [&'static str; 8]);

const U: &str = "401:unauthorized";
const SCOPE: &str = "403:insufficient_scope";
const FORB: &str = "403:forbidden";
const SESS: &str = "403:session_required";
/// A key without the needed scope on a resource its owner cannot see: the
/// scope refusal or the 404 both leak nothing.
const HIDDEN: &str = "403:insufficient_scope|404";
const CNF: &str = "404:collection_not_found";

/// An admin endpoint that succeeds with `ok` for admins.
const fn admin_row(ok: &'static str) -> [&'static str; 8] {
    [U, FORB, FORB, ok, "403", "403", ok, SCOPE]
}

#[rustfmt::skip]
fn rows() -> Vec<Row> {
    let all = |s: &'static str| [s; 8];
    let session_only = |ok: &'static str| [U, ok, ok, ok, SESS, SESS, SESS, SESS];
    let me_ok = [U, "200", "200", "200", "200", "200", "200", "200"];
    let read = [U, "200", "200", "200", "200", SCOPE, SCOPE, "200"];
    let read_a = [U, "200", "404", "200", "200", SCOPE, SCOPE, "200"];
    let query_a = [U, "200", CNF, "200", "200", SCOPE, SCOPE, "200"];
    let query_admin_only = [U, CNF, CNF, "200", CNF, "403:insufficient_scope|404:collection_not_found", SCOPE, "200"];
    let conv_a = [U, "200", "404", "404", "200", SCOPE, HIDDEN, "404"];
    let conv_b = [U, "404", "200", "404", "404", HIDDEN, HIDDEN, "404"];
    let missing_conv = [U, "404", "404", "404", "404", HIDDEN, HIDDEN, "404"];
    let wrong_password = "401:invalid_credentials";
    // Admin action on a collection readable by A / by B / by nobody but admins.
    let admin_on_a = [U, FORB, "404", "200", "403", "403", "200", SCOPE];
    let admin_on_b = [U, "404", FORB, "200", "403|404", "403|404", "200", SCOPE];
    let admin_on_none = [U, "404", "404", "200", "403|404", "403|404", "200", SCOPE];
    let no_content = |row: [&'static str; 8]| row.map(|c| if c == "200" { "204" } else { c });
    vec![
        // columns: anon, A, B, admin, A:q+c, A:ingest, adm:admin, adm:q+c
        // Public endpoints: the token does not matter.
        ("POST", "/api/v1/auth/register", r#"{"username": "reg{uniq}", "password": "{password}"}"#, all("403:registration_closed")),
        ("POST", "/api/v1/auth/login", r#"{"username": "usera", "password": "{password}"}"#, all("200")),
        ("POST", "/api/v1/auth/refresh", r#"{"refresh_token": "{new_refresh_A}"}"#, all("200")),
        ("POST", "/api/v1/auth/logout", r#"{"refresh_token": "{new_refresh_A}"}"#, all("204")),
        ("GET", "/health", "", all("200")),
        ("GET", "/ready", "", all("200")),
        // Account.
        ("GET", "/api/v1/users/me", "", me_ok),
        ("POST", "/api/v1/users/me/password", r#"{"current_password": "not the password", "new_password": "another long passphrase"}"#,
            [U, wrong_password, wrong_password, wrong_password, SESS, SESS, SESS, SESS]),
        // API keys.
        ("POST", "/api/v1/api-keys", r#"{"name": "k{uniq}", "scopes": ["query"]}"#, session_only("201")),
        ("POST", "/api/v1/api-keys", r#"{"name": "k{uniq}", "scopes": ["admin"]}"#, [U, FORB, FORB, "201", SESS, SESS, SESS, SESS]),
        ("GET", "/api/v1/api-keys", "", session_only("200")),
        ("DELETE", "/api/v1/api-keys/{new_key_A}", "", [U, "204", "404", "404", SESS, SESS, SESS, SESS]),
        ("DELETE", "/api/v1/api-keys/{unknown}", "", session_only("404")),
        // Admin: users.
        ("GET", "/api/v1/admin/users", "", admin_row("200")),
        ("GET", "/api/v1/admin/users?limit=1", "", admin_row("200")),
        ("POST", "/api/v1/admin/users", r#"{"username": "made{uniq}", "password": "{password}"}"#, admin_row("201")),
        ("GET", "/api/v1/admin/users/{A}", "", admin_row("200")),
        ("GET", "/api/v1/admin/users/{unknown}", "", admin_row("404")),
        // (On fresh users: these requests change nothing, but need not keep the user's tokens.)
        ("PATCH", "/api/v1/admin/users/{new_user}", r#"{"disabled": false}"#, admin_row("200")),
        ("PATCH", "/api/v1/admin/users/{new_user}", r#"{"role": "user"}"#, admin_row("200")),
        ("PATCH", "/api/v1/admin/users/{new_user}", r#"{"disabled": true}"#, admin_row("200")),
        ("PATCH", "/api/v1/admin/users/{new_user}", r#"{"role": "admin"}"#, admin_row("200")),
        ("PATCH", "/api/v1/admin/users/{unknown}", r#"{"disabled": false}"#, admin_row("404")),
        // Collections.
        ("GET", "/api/v1/collections", "", read),
        ("GET", "/api/v1/collections/{pub}", "", read),
        ("GET", "/api/v1/collections/{granted}", "", read_a),
        ("GET", "/api/v1/collections/{private}", "", [U, "404", "404", "200", "404", HIDDEN, SCOPE, "200"]),
        ("GET", "/api/v1/collections/{unknown}", "", [U, "404", "404", "404", "404", HIDDEN, HIDDEN, "404"]),
        ("POST", "/api/v1/collections", r#"{"name": "c{uniq}"}"#, admin_row("201")),
        ("POST", "/api/v1/collections", r#"{"name": "pub"}"#, admin_row("409:collection_exists")),
        ("PATCH", "/api/v1/collections/{pub}", r#"{"description": "public fixtures"}"#, admin_row("200")),
        ("PATCH", "/api/v1/collections/{granted}", r#"{"description": "granted to A"}"#, admin_on_a),
        ("PATCH", "/api/v1/collections/{private}", r#"{"description": "nobody's"}"#, admin_on_none),
        ("PATCH", "/api/v1/collections/{new_coll_B}", r#"{"description": "B's"}"#, admin_on_b),
        ("PATCH", "/api/v1/collections/{unknown}", r#"{"description": "nothing"}"#, [U, "404", "404", "404", "403|404", "403|404", "404", HIDDEN]),
        ("DELETE", "/api/v1/collections/{new_coll}", "", no_content(admin_on_none)),
        ("DELETE", "/api/v1/collections/{new_coll_A}", "", no_content(admin_on_a)),
        ("DELETE", "/api/v1/collections/{new_coll_pub}", "", admin_row("204")),
        ("DELETE", "/api/v1/collections/{unknown}", "", [U, "404", "404", "404", "403|404", "403|404", "404", HIDDEN]),
        ("GET", "/api/v1/collections/{granted}/grants", "", admin_on_a),
        ("GET", "/api/v1/collections/{private}/grants", "", admin_on_none),
        ("PUT", "/api/v1/collections/{new_coll}/grants/{B}", "", no_content(admin_on_none)),
        ("PUT", "/api/v1/collections/{granted}/grants/{A}", "", no_content(admin_on_a)),
        ("PUT", "/api/v1/collections/{pub}/grants/{unknown}", "", admin_row("404")),
        ("DELETE", "/api/v1/collections/{new_coll_B}/grants/{B}", "", no_content(admin_on_b)),
        ("DELETE", "/api/v1/collections/{new_coll}/grants/{B}", "", no_content(admin_on_none)),
        // Conversations.
        ("POST", "/api/v1/conversations", r#"{"title": "t{uniq}"}"#, [U, "201", "201", "201", "201", SCOPE, SCOPE, "201"]),
        ("POST", "/api/v1/conversations", "{}", [U, "201", "201", "201", "201", SCOPE, SCOPE, "201"]),
        ("GET", "/api/v1/conversations", "", read),
        ("GET", "/api/v1/conversations?limit=5", "", read),
        ("GET", "/api/v1/conversations/{convA}", "", conv_a),
        ("GET", "/api/v1/conversations/{convB}", "", conv_b),
        ("PATCH", "/api/v1/conversations/{convA}", r#"{"title": "{titleA}"}"#, conv_a),
        ("PATCH", "/api/v1/conversations/{convB}", r#"{"title": "{titleB}"}"#, conv_b),
        ("DELETE", "/api/v1/conversations/{new_conv_A}", "", no_content(conv_a)),
        ("DELETE", "/api/v1/conversations/{new_conv_B}", "", no_content(conv_b)),
        ("GET", "/api/v1/conversations/{convA}/messages", "", conv_a),
        ("GET", "/api/v1/conversations/{convB}/messages", "", conv_b),
        ("GET", "/api/v1/conversations/{unknown}", "", missing_conv),
        ("PATCH", "/api/v1/conversations/{unknown}", r#"{"title": "x"}"#, missing_conv),
        ("DELETE", "/api/v1/conversations/{unknown}", "", missing_conv),
        ("GET", "/api/v1/conversations/{unknown}/messages", "", missing_conv),
        // Query.
        ("POST", "/api/v1/query", r#"{"query": "shock wave", "collections": ["pub"]}"#, read),
        ("POST", "/api/v1/query", r#"{"query": "shock wave", "collections": ["granted"]}"#, query_a),
        ("POST", "/api/v1/query", r#"{"query": "shock wave", "collections": ["private"]}"#, query_admin_only),
        ("POST", "/api/v1/query", r#"{"query": "shock wave", "collections": ["pub", "private"]}"#, query_admin_only),
        ("POST", "/api/v1/query", r#"{"query": "shock wave"}"#, read),
        ("POST", "/api/v1/query", r#"{"query": "shock wave", "collections": ["nope"]}"#, [U, CNF, CNF, CNF, CNF, "403|404", "403|404", CNF]),
        ("GET", "/api/v1/query?q=shock%20wave&collections=pub", "", read),
        ("GET", "/api/v1/query?q=shock%20wave&collections=granted", "", query_a),
        ("GET", "/api/v1/query?q=shock%20wave&collections=private", "", query_admin_only),
        ("GET", "/api/v1/query?q=shock%20wave", "", read),
        // Last: refused changes to oneself, which would break later cells if allowed.
        ("PATCH", "/api/v1/admin/users/{admin}", r#"{"disabled": true}"#, admin_row("409:cannot_modify_self")),
        ("PATCH", "/api/v1/admin/users/{admin}", r#"{"role": "user"}"#, admin_row("409:cannot_modify_self")),
    ]
}

fn kb() -> std::path::PathBuf {
    fixtures().join("kb")
}

fn setup_world() -> World {
    let kb = kb();
    let s = TestApp::start(
        &[("root", true), ("usera", false), ("userb", false)],
        &[("pub", &kb), ("granted", &kb), ("private", &kb)],
        &[],
    );
    let api = &s.api;
    let (admin, _) = s.login("root");
    let (a, _) = s.login("usera");
    let (b, _) = s.login("userb");
    let pub_id = collection_id(api, &admin, "pub");
    let granted_id = collection_id(api, &admin, "granted");
    let private_id = collection_id(api, &admin, "private");
    let made_public = expect(
        api.patch(
            &format!("/api/v1/collections/{pub_id}"),
            Some(&admin),
            Some(json!({"public": true})),
        ),
        200,
        "make pub public",
    );
    assert_eq!(made_public["public"], true, "{made_public}");
    let (status, body, _) = api.put(
        &format!("/api/v1/collections/{granted_id}/grants/{}", s.id("usera")),
        Some(&admin),
        None,
    );
    assert_eq!(status, 204, "grant A: {body}");

    let (_, a_qc) = create_api_key(api, &a, "a-qc", &["query", "chat"]);
    let (_, a_ingest) = create_api_key(api, &a, "a-ingest", &["ingest"]);
    let (_, adm_admin) = create_api_key(api, &admin, "adm-admin", &["admin"]);
    let (_, adm_qc) = create_api_key(api, &admin, "adm-qc", &["query", "chat"]);

    let conv = |token: &str, title: &str| {
        let body = expect(
            api.post(
                "/api/v1/conversations",
                Some(token),
                Some(json!({ "title": title })),
            ),
            201,
            "create conversation",
        );
        assert_eq!(body["title"], title, "{body}");
        body["id"].as_str().unwrap().to_string()
    };
    let conv_a = conv(&a, TITLE_A);
    let conv_b = conv(&b, TITLE_B);
    let tokens = vec![
        None,
        Some(a.clone()),
        Some(b),
        Some(admin.clone()),
        Some(a_qc),
        Some(a_ingest),
        Some(adm_admin),
        Some(adm_qc),
    ];
    World {
        s,
        tokens,
        a,
        admin,
        pub_id,
        granted_id,
        private_id,
        conv_a,
        conv_b,
        counter: Cell::new(0),
    }
}

fn names(list: &Value) -> BTreeSet<String> {
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {list}"))
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// What B must not learn about A's conversation or the collections B cannot read.
fn zero_leak_checks(w: &World) {
    let api = w.api();
    let a = w.tokens[1].as_deref();
    let b = w.tokens[2].as_deref();
    let admin = w.tokens[3].as_deref();

    // A's conversation does not exist for B or for the admin, and looks
    // exactly like one that does not exist at all.
    let (_, missing, _) = api.get(&format!("/api/v1/conversations/{UNKNOWN_ID}"), b);
    let missing = without_request_id(&missing);
    for (who, token) in [("B", b), ("admin", admin)] {
        let (status, body, _) = api.get(&format!("/api/v1/conversations/{}", w.conv_a), token);
        assert_eq!(status, 404, "{who} reads A's conversation: {body}");
        let text = without_request_id(&body).to_string();
        assert!(!text.contains(TITLE_A), "{who} learns A's title: {body}");
        assert_eq!(
            text.replace(&w.conv_a, "ID"),
            missing.to_string().replace(UNKNOWN_ID, "ID"),
            "A's conversation must look like a missing one to {who}"
        );
        let list = expect(api.get("/api/v1/conversations", token), 200, "list");
        let text = list.to_string();
        assert!(
            !text.contains(TITLE_A) && !text.contains(&w.conv_a),
            "{who}'s conversation list shows A's conversation: {list}"
        );
    }
    let list = expect(api.get("/api/v1/conversations", a), 200, "A's list");
    let text = list.to_string();
    assert!(text.contains(&w.conv_a), "{list}");
    assert!(
        !text.contains(&w.conv_b) && !text.contains(TITLE_B),
        "{list}"
    );

    // Collection lists: only readable collections, sorted by name.
    let all = ["granted", "private", "pub"];
    for (who, token, visible) in [
        ("B", b, vec!["pub"]),
        ("A", a, vec!["granted", "pub"]),
        ("admin", admin, all.to_vec()),
    ] {
        let list = expect(api.get("/api/v1/collections", token), 200, "collections");
        let listed = names(&list);
        let listed: Vec<&str> = all
            .iter()
            .copied()
            .filter(|n| listed.contains(*n))
            .collect();
        assert_eq!(listed, visible, "{who}'s collections: {list}");
        let order: Vec<String> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "collections by name: {list}");
        assert!(list["next_cursor"].is_null(), "{list}");
        if who != "admin" {
            let text = list.to_string();
            for (name, id) in [("private", &w.private_id), ("granted", &w.granted_id)] {
                if !visible.contains(&name) {
                    assert!(
                        !text.contains(id.as_str()),
                        "{who} sees {name}'s id: {list}"
                    );
                }
            }
        }
    }
    let pub_for_b = expect(
        api.get(&format!("/api/v1/collections/{}", w.pub_id), b),
        200,
        "B reads pub",
    );
    for field in [
        "id",
        "name",
        "description",
        "public",
        "documents",
        "chunks",
        "created_at",
    ] {
        assert!(
            pub_for_b.get(field).is_some(),
            "collection without `{field}`: {pub_for_b}"
        );
    }
    assert_eq!(pub_for_b["documents"], 3, "{pub_for_b}");

    // An unreadable collection looks exactly like a missing one.
    let (_, missing, _) = api.get(&format!("/api/v1/collections/{UNKNOWN_ID}"), b);
    let missing = without_request_id(&missing);
    for id in [&w.private_id, &w.granted_id] {
        let (status, body, _) = api.get(&format!("/api/v1/collections/{id}"), b);
        assert_eq!(status, 404, "{body}");
        assert_eq!(
            without_request_id(&body)
                .to_string()
                .replace(id.as_str(), "ID"),
            missing.to_string().replace(UNKNOWN_ID, "ID"),
            "an unreadable collection must look like a missing one"
        );
    }
    let query = |token: Option<&str>, collection: &str| {
        api.post(
            "/api/v1/query",
            token,
            Some(json!({"query": "shock wave", "collections": [collection]})),
        )
    };
    let (_, missing, _) = query(b, "no-such-collection");
    assert_error(404, &missing, 404, "collection_not_found");
    let missing = without_request_id(&missing);
    for name in ["granted", "private"] {
        let (status, body, _) = query(b, name);
        assert_error(status, &body, 404, "collection_not_found");
        assert_eq!(
            without_request_id(&body).to_string().replace(name, "NAME"),
            missing.to_string().replace("no-such-collection", "NAME"),
            "querying an unreadable collection must look like querying a missing one"
        );
    }

    // B's searches over "all readable" never touch the others.
    for resp in [
        api.post(
            "/api/v1/query",
            b,
            Some(json!({"query": "shock wave boundary layer heat", "top_k": 100})),
        ),
        api.get(
            "/api/v1/query?q=shock%20wave%20boundary%20layer%20heat&top_k=100",
            b,
        ),
    ] {
        let body = expect(resp, 200, "B searches everything");
        let results = body["results"].as_array().unwrap();
        assert!(!results.is_empty(), "{body}");
        assert!(results.iter().all(|r| r["collection"] == "pub"), "{body}");
        let searched = body["collections"].to_string();
        assert!(
            !searched.contains("granted") && !searched.contains("private"),
            "B's response names collections B cannot read: {searched}"
        );
    }
}

#[test]
fn authorization_matrix() {
    let w = setup_world();
    zero_leak_checks(&w);

    let rows = rows();
    let mut table = String::new();
    let mut failures = Vec::new();
    let mut broken_tokens = vec![false; CALLERS.len()];
    let mut cells = 0;
    for (method, path, body, expected) in &rows {
        let mut line = format!("{method:<6} {path:<52}");
        for (i, caller) in CALLERS.iter().enumerate() {
            let exp = expected[i];
            if exp == "-" {
                line.push_str(&format!(" {:>9}", "-"));
                continue;
            }
            cells += 1;
            // A failed setup (or request) is a failed cell, not the end of the table.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let path_r = w.resolve(path);
                let body_r = (!body.is_empty()).then(|| {
                    let text = w.resolve(body);
                    serde_json::from_str::<Value>(&text)
                        .unwrap_or_else(|e| panic!("row body {body} is not JSON ({e}): {text}"))
                });
                let m = Method::from_bytes(method.as_bytes()).unwrap();
                let resp = w
                    .api()
                    .request(m, &path_r, w.tokens[i].as_deref(), body_r.clone());
                (path_r, body_r, resp)
            }));
            let (path_r, body_r, (status, resp, headers)) = match outcome {
                Ok(o) => o,
                Err(panic) => {
                    let msg = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    line.push_str(&format!(" {:>9}", "!panic"));
                    failures.push(format!("{method} {path} as {caller}: {msg}"));
                    continue;
                }
            };
            let ok = matches(exp, status, &resp, headers.contains_key("www-authenticate"));
            line.push_str(&format!(" {status:>8}{}", if ok { ' ' } else { '!' }));
            if !ok {
                let mut detail =
                    format!("{method} {path_r} as {caller}: expected {exp}, got {status} {resp}");
                if status == 401 && !headers.contains_key("www-authenticate") {
                    detail.push_str(" (no WWW-Authenticate)");
                }
                if let Some(b) = &body_r {
                    let _ = write!(detail, "\n    request body: {b}");
                }
                failures.push(detail);
            }
        }
        table.push_str(&line);
        table.push('\n');
        // No cell may break the callers' own credentials.
        for (i, token) in w.tokens.iter().enumerate() {
            if let (Some(t), false) = (token, broken_tokens[i]) {
                let (status, resp, _) = w.api().get("/api/v1/users/me", Some(t));
                if status != 200 {
                    broken_tokens[i] = true;
                    failures.push(format!(
                        "after the row `{method} {path}` {}'s token stopped working: {status} {resp}",
                        CALLERS[i]
                    ));
                }
            }
        }
    }
    let header = format!(
        "{:<59}{}",
        "",
        CALLERS
            .iter()
            .map(|c| format!(" {c:>9}"))
            .collect::<String>()
    );
    eprintln!("{} rows, {cells} cells", rows.len());
    assert!(
        failures.is_empty(),
        "{} of {cells} cells differ from docs/API.md ('!' marks them):\n{header}\n{table}\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The refused self-changes changed nothing.
    let me = expect(
        w.api().get("/api/v1/users/me", Some(&w.admin)),
        200,
        "admin after the matrix",
    );
    assert_eq!(me["role"], "admin", "{me}");
    assert_eq!(me["disabled"], false, "{me}");
}

// --- collection access inside every search mode ------------------------------

const HEAT_QUERY: &str = "ablative heat shields for hypersonic re-entry heating";

/// The fixtures plus many documents that match HEAT_QUERY better than
/// anything in the fixtures, so the unreadable collection crowds the top of
/// an unfiltered ranking.
fn crowded_kb(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("crowded");
    std::fs::create_dir_all(&out).unwrap();
    for e in std::fs::read_dir(kb()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), out.join(e.file_name())).unwrap();
    }
    for i in 0..30 {
        std::fs::write(
            out.join(format!("shield-{i:02}.txt")),
            format!(
                "Ablative heat shields, note {i}\n\nAblative heat shields protect re-entry \
                 vehicles from hypersonic heating: the ablative heat shield chars and erodes, \
                 carrying heat away during re-entry. Variant {i} of the heat shield study."
            ),
        )
        .unwrap();
    }
    out
}

#[test]
fn collection_access_applies_in_every_search_mode() {
    let scratch = tempfile::tempdir().unwrap();
    let crowded = crowded_kb(scratch.path());
    let kb = kb();
    let s = TestApp::start(
        &[("root", true), ("uma", false)],
        &[("shared", &kb), ("secret", &crowded)],
        &[],
    );
    let api = &s.api;
    let (root, _) = s.login("root");
    let (uma, _) = s.login("uma");
    let shared = collection_id(api, &root, "shared");
    let secret = collection_id(api, &root, "secret");
    expect(
        api.patch(
            &format!("/api/v1/collections/{shared}"),
            Some(&root),
            Some(json!({"public": true})),
        ),
        200,
        "make shared public",
    );

    let search = |token: &str, mode: &str, top_k: u32, get: bool| -> Value {
        let resp = if get {
            api.get(
                &format!(
                    "/api/v1/query?q={}&mode={mode}&top_k={top_k}",
                    HEAT_QUERY.replace(' ', "%20")
                ),
                Some(token),
            )
        } else {
            api.post(
                "/api/v1/query",
                Some(token),
                Some(json!({"query": HEAT_QUERY, "mode": mode, "top_k": top_k})),
            )
        };
        expect(resp, 200, &format!("{mode} search"))
    };
    let collections_of = |body: &Value| -> BTreeSet<String> {
        body["results"]
            .as_array()
            .unwrap_or_else(|| panic!("no results: {body}"))
            .iter()
            .map(|r| r["collection"].as_str().unwrap_or("<missing>").to_string())
            .collect()
    };
    let only_shared = |stage: &str| {
        for mode in ["dense", "lexical", "hybrid"] {
            for get in [false, true] {
                let body = search(&uma, mode, 10, get);
                assert_eq!(
                    collections_of(&body),
                    BTreeSet::from(["shared".to_string()]),
                    "{stage}: uma's {mode} search (GET: {get}) must return results, all from `shared`: {body}"
                );
                assert!(
                    !body["collections"].to_string().contains("secret"),
                    "{stage}: {body}"
                );
                if mode != "dense" {
                    assert!(
                        body["results"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|r| r["source"] == "heat-transfer.html"),
                        "{stage}: uma's {mode} search misses the matching readable document: {body}"
                    );
                }
            }
            // Filtering happens inside the indexes: the top result is still
            // there when the unreadable collection would crowd it out.
            let top = search(&uma, mode, 1, false);
            assert_eq!(
                top["results"].as_array().unwrap().len(),
                1,
                "{stage}: uma's {mode} top 1: {top}"
            );
            assert_eq!(top["results"][0]["collection"], "shared", "{stage}: {top}");
            let (status, body, _) = api.post(
                "/api/v1/query",
                Some(&uma),
                Some(
                    json!({"query": HEAT_QUERY, "mode": mode, "collections": ["shared", "secret"]}),
                ),
            );
            assert_error(status, &body, 404, "collection_not_found");
        }
    };
    let sees_both = |who: &str, token: &str, stage: &str| {
        for mode in ["dense", "lexical", "hybrid"] {
            let body = search(token, mode, 50, false);
            assert_eq!(
                collections_of(&body),
                BTreeSet::from(["shared".to_string(), "secret".to_string()]),
                "{stage}: {who}'s {mode} search sees both collections: {body}"
            );
            let body = expect(
                api.post(
                    "/api/v1/query",
                    Some(token),
                    Some(json!({"query": HEAT_QUERY, "mode": mode, "collections": ["secret"]})),
                ),
                200,
                "search secret",
            );
            assert_eq!(
                collections_of(&body),
                BTreeSet::from(["secret".to_string()]),
                "{stage}: {who} searches only `secret` in {mode} mode: {body}"
            );
        }
    };
    let listed = |token: &str| {
        names(&expect(
            api.get("/api/v1/collections", Some(token)),
            200,
            "list",
        ))
    };

    only_shared("no grant");
    sees_both("admin", &root, "admin");
    assert!(!listed(&uma).contains("secret"));

    // Grant: visible at once, in every mode.
    let grant = format!("/api/v1/collections/{secret}/grants/{}", s.id("uma"));
    assert_eq!(api.put(&grant, Some(&root), None).0, 204);
    sees_both("uma", &uma, "granted");
    assert!(listed(&uma).contains("secret"));
    expect(
        api.get(&format!("/api/v1/collections/{secret}"), Some(&uma)),
        200,
        "read granted",
    );
    let grants = expect(
        api.get(&format!("/api/v1/collections/{secret}/grants"), Some(&root)),
        200,
        "grants",
    );
    let items = grants["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{grants}");
    assert_eq!(items[0]["user_id"], s.id("uma"), "{grants}");
    assert_eq!(items[0]["username"], "uma", "{grants}");
    assert!(items[0]["created_at"].is_string(), "{grants}");
    // Idempotent.
    assert_eq!(api.put(&grant, Some(&root), None).0, 204);
    let grants = expect(
        api.get(&format!("/api/v1/collections/{secret}/grants"), Some(&root)),
        200,
        "grants",
    );
    assert_eq!(grants["items"].as_array().unwrap().len(), 1, "{grants}");

    // Revoke: gone at once, in every mode (no cached results).
    let (status, body, _) = api.delete(&grant, Some(&root));
    assert_eq!(status, 204, "{body}");
    only_shared("grant revoked");
    assert!(!listed(&uma).contains("secret"));
    assert_eq!(
        api.get(&format!("/api/v1/collections/{secret}"), Some(&uma))
            .0,
        404
    );
    assert_eq!(api.delete(&grant, Some(&root)).0, 204, "revoking again");
    let grants = expect(
        api.get(&format!("/api/v1/collections/{secret}/grants"), Some(&root)),
        200,
        "grants",
    );
    assert_eq!(grants["items"], json!([]), "{grants}");

    // Public works the same way.
    let patch = |public: bool| {
        let body = expect(
            api.patch(
                &format!("/api/v1/collections/{secret}"),
                Some(&root),
                Some(json!({ "public": public })),
            ),
            200,
            "toggle public",
        );
        assert_eq!(body["public"], public, "{body}");
    };
    patch(true);
    sees_both("uma", &uma, "public");
    patch(false);
    only_shared("no longer public");
}

// --- CRUD -------------------------------------------------------------------

#[test]
fn collections_crud_and_grants() {
    let kb = kb();
    let s = TestApp::start(&[("root", true), ("ulla", false)], &[("kb", &kb)], &[]);
    let api = &s.api;
    let (root, _) = s.login("root");
    let (ulla, _) = s.login("ulla");

    let created = expect(
        api.post(
            "/api/v1/collections",
            Some(&root),
            Some(json!({"name": "Docs.v1", "description": "manuals", "public": false})),
        ),
        201,
        "create collection",
    );
    for field in [
        "id",
        "name",
        "description",
        "public",
        "documents",
        "chunks",
        "created_at",
    ] {
        assert!(
            created.get(field).is_some(),
            "collection without `{field}`: {created}"
        );
    }
    assert_eq!(created["name"], "Docs.v1");
    assert_eq!(created["description"], "manuals");
    assert_eq!(created["public"], false);
    assert_eq!(created["documents"], 0);
    assert_eq!(created["chunks"], 0);
    timestamp(&created["created_at"]);
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/collections/{id}");
    let minimal = expect(
        api.post(
            "/api/v1/collections",
            Some(&root),
            Some(json!({"name": "a_b-c.9"})),
        ),
        201,
        "create with a name only",
    );
    assert_eq!(minimal["public"], false, "private by default: {minimal}");

    assert_eq!(expect(api.get(&path, Some(&root)), 200, "get"), created);
    let renamed = expect(
        api.patch(
            &path,
            Some(&root),
            Some(json!({"name": "Docs.v2", "public": true})),
        ),
        200,
        "rename",
    );
    assert_eq!(renamed["name"], "Docs.v2");
    assert_eq!(renamed["public"], true);
    assert_eq!(
        renamed["description"], "manuals",
        "unchanged fields stay: {renamed}"
    );
    expect(api.get(&path, Some(&ulla)), 200, "public now");
    let (status, body, _) = api.patch(&path, Some(&root), Some(json!({"name": "kb"})));
    assert_eq!(status, 409, "rename onto an existing name: {body}");
    let (status, body, _) = api.patch(&path, Some(&root), Some(json!({"name": "bad name"})));
    assert_invalid_field(status, &body, "name");
    let (status, body, _) = api.patch(&path, Some(&root), Some(json!({"owner": "x"})));
    assert_error(status, &body, 400, "invalid_body");
    assert_eq!(
        expect(api.get(&path, Some(&root)), 200, "get"),
        renamed,
        "refused patches change nothing"
    );

    let list = expect(api.get("/api/v1/collections", Some(&root)), 200, "list");
    let order: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "by name: {list}");
    assert_eq!(order.len(), 3, "{list}");
    let kb_item = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "kb")
        .unwrap()
        .clone();
    assert_eq!(kb_item["documents"], 3, "{kb_item}");
    assert!(
        kb_item["chunks"].as_u64().is_some_and(|n| n >= 3),
        "{kb_item}"
    );

    // Grants on an unknown user or collection.
    let kb_id = kb_item["id"].as_str().unwrap();
    assert_eq!(
        api.put(
            &format!("/api/v1/collections/{kb_id}/grants/{UNKNOWN_ID}"),
            Some(&root),
            None
        )
        .0,
        404
    );
    assert_eq!(
        api.put(
            &format!("/api/v1/collections/{UNKNOWN_ID}/grants/{}", s.id("ulla")),
            Some(&root),
            None
        )
        .0,
        404
    );

    // Deleting a collection with documents removes it everywhere.
    let (status, body, _) = api.delete(&format!("/api/v1/collections/{kb_id}"), Some(&root));
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        api.get(&format!("/api/v1/collections/{kb_id}"), Some(&root))
            .0,
        404
    );
    let (status, body, _) = api.post(
        "/api/v1/query",
        Some(&root),
        Some(json!({"query": "shock wave", "collections": ["kb"]})),
    );
    assert_error(status, &body, 404, "collection_not_found");
    for mode in ["dense", "lexical", "hybrid"] {
        let body = expect(
            api.post(
                "/api/v1/query",
                Some(&root),
                Some(json!({"query": "shock wave boundary layer", "mode": mode})),
            ),
            200,
            "search after delete",
        );
        assert_eq!(body["results"], json!([]), "{mode}: {body}");
    }
    assert_eq!(
        api.delete(&format!("/api/v1/collections/{kb_id}"), Some(&root))
            .0,
        404
    );
    let TestApp { server, data, .. } = s;
    assert!(server.stop().success());
    let out = helpers::run_ok(&data, &["check"]);
    assert!(
        out.contains("database 0 chunks, vector index 0 points, lexical index 0 documents")
            && out.contains("consistent"),
        "{out}"
    );
}

#[test]
fn conversations_crud_and_pagination() {
    let s = TestApp::start(&[("pat", false)], &[], &[]);
    let api = &s.api;
    let (pat, _) = s.login("pat");

    let first = expect(
        api.post("/api/v1/conversations", Some(&pat), Some(json!({}))),
        201,
        "create",
    );
    for field in ["id", "title", "created_at", "updated_at"] {
        assert!(
            first.get(field).is_some(),
            "conversation without `{field}`: {first}"
        );
    }
    assert_eq!(first["title"], "New conversation", "{first}");
    timestamp(&first["created_at"]);
    timestamp(&first["updated_at"]);
    let mut ids = vec![first["id"].as_str().unwrap().to_string()];
    for title in ["second", "third", "fourth", "fifth"] {
        let c = expect(
            api.post(
                "/api/v1/conversations",
                Some(&pat),
                Some(json!({ "title": title })),
            ),
            201,
            "create",
        );
        assert_eq!(c["title"], title);
        ids.push(c["id"].as_str().unwrap().to_string());
    }

    // Pages of two: every conversation once, newest first.
    let mut seen = Vec::new();
    let mut times = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 10, "pagination does not end");
        let path = match &cursor {
            Some(c) => format!("/api/v1/conversations?limit=2&cursor={c}"),
            None => "/api/v1/conversations?limit=2".to_string(),
        };
        let page = expect(api.get(&path, Some(&pat)), 200, "page");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2, "{page}");
        for c in items {
            seen.push(c["id"].as_str().unwrap().to_string());
            times.push(timestamp(&c["created_at"]));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert!(pages >= 3, "5 conversations in pages of 2");
    let mut sorted_seen = seen.clone();
    sorted_seen.sort();
    let mut sorted_ids = ids.clone();
    sorted_ids.sort();
    assert_eq!(sorted_seen, sorted_ids, "each conversation exactly once");
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let all = expect(
        api.get("/api/v1/conversations", Some(&pat)),
        200,
        "default page",
    );
    assert_eq!(all["items"].as_array().unwrap().len(), 5, "{all}");
    assert!(all["next_cursor"].is_null(), "{all}");
    let (status, body, _) = api.get("/api/v1/conversations?cursor=not-a-cursor!!", Some(&pat));
    assert_eq!(status, 400, "bad cursor: {body}");
    assert!(body["error"]["code"].is_string(), "{body}");

    // Read, rename, messages, delete.
    let id = &ids[0];
    let path = format!("/api/v1/conversations/{id}");
    assert_eq!(expect(api.get(&path, Some(&pat)), 200, "get"), first);
    let renamed = expect(
        api.patch(&path, Some(&pat), Some(json!({"title": "Renamed"}))),
        200,
        "rename",
    );
    assert_eq!(renamed["title"], "Renamed");
    assert_eq!(renamed["created_at"], first["created_at"]);
    assert!(timestamp(&renamed["updated_at"]) >= timestamp(&first["updated_at"]));
    for bad in [json!({"title": ""}), json!({"title": "x".repeat(201)})] {
        let (status, body, _) = api.patch(&path, Some(&pat), Some(bad));
        assert_invalid_field(status, &body, "title");
    }
    assert_eq!(
        expect(api.get(&path, Some(&pat)), 200, "get")["title"],
        "Renamed"
    );
    let messages = expect(
        api.get(&format!("{path}/messages"), Some(&pat)),
        200,
        "messages",
    );
    assert_eq!(messages["items"], json!([]), "{messages}");
    assert!(messages["next_cursor"].is_null(), "{messages}");

    let (status, body, _) = api.delete(&path, Some(&pat));
    assert_eq!(status, 204, "{body}");
    assert_eq!(api.get(&path, Some(&pat)).0, 404);
    assert_eq!(api.get(&format!("{path}/messages"), Some(&pat)).0, 404);
    assert_eq!(
        api.patch(&path, Some(&pat), Some(json!({"title": "x"}))).0,
        404
    );
    assert_eq!(api.delete(&path, Some(&pat)).0, 404);
    let all = expect(
        api.get("/api/v1/conversations", Some(&pat)),
        200,
        "after delete",
    );
    assert_eq!(all["items"].as_array().unwrap().len(), 4, "{all}");
}
