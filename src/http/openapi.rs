//! The OpenAPI document, generated from the handlers' `#[utoipa::path]`
//! attributes and the views' `ToSchema` derives, served at
//! `GET /api/openapi.json`, with Swagger UI (vendored, nothing fetched) at
//! `GET /api/docs/`.
//!
//! What keeps the document and the router in step is a test in each
//! direction, each comparing two sources that are written independently:
//!
//! - Routed but not documented: the unit test below asks actix itself for
//!   every route the real [`super::routes`] registers (actix-web's
//!   `experimental-introspection` report, so a route counts however it was
//!   registered, by `.route`, `.service` or a scope) and requires the
//!   document to have the same path and method. A handler left out of
//!   [`ApiDoc`]'s `paths(...)`, or documented under another path or method
//!   than it is mounted at, fails it. A recorder that modules register
//!   through (utoipa-actix-web's `UtoipaApp`, or a macro per module) would
//!   only see the routes registered through it; the introspection report
//!   also sees the ones that were not.
//! - Documented but not routed: the same unit test, the other way round; and
//!   `tests/api/openapi.rs` reads the document from the running server and
//!   sends every documented operation (ids filled in) to it, requiring an
//!   answer other than the router's own "no such route" 404 or a 405.
//!
//! The web app's pages (`/`, `/assets/...`) are routes but not API; they are
//! the one exception, named in the test.

use std::sync::{Arc, OnceLock};

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{
    ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};
use utoipa_swagger_ui::Config;

use super::views::ErrorBody;
use crate::error::{Error, ErrorCode};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/openapi.json", web::get().to(document))
        .route("/api/docs", web::get().to(docs_root))
        .route("/api/docs/{file:.*}", web::get().to(docs_file));
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ragchat",
        description = "Search and chat with a knowledge base. The reference with the rules behind each \
endpoint is docs/API.md. Every error is an `ErrorBody`; every response carries `X-Request-Id`.",
    ),
    paths(
        super::health::health,
        super::health::ready,
        super::health::metrics,
        super::completions::completions,
        document,
        docs_root,
        docs_file,
        super::query::post_query,
        super::query::get_query,
        super::accounts::register,
        super::accounts::login,
        super::accounts::refresh,
        super::accounts::logout,
        super::accounts::me,
        super::accounts::change_password,
        super::keys::create,
        super::keys::list,
        super::keys::revoke,
        super::tickets::create,
        super::admin::list_users,
        super::admin::create_user,
        super::admin::get_user,
        super::admin::update_user,
        super::collections::list,
        super::collections::create,
        super::collections::get,
        super::collections::update,
        super::collections::delete,
        super::collections::list_grants,
        super::collections::put_grant,
        super::collections::delete_grant,
        super::conversations::create,
        super::conversations::list,
        super::conversations::get,
        super::conversations::rename,
        super::conversations::delete,
        super::conversations::messages,
        super::chat::post_message,
        super::chat::ws,
        super::documents::upload,
        super::documents::list,
        super::documents::get,
        super::documents::delete,
        super::documents::crawl,
        super::jobs::list,
        super::jobs::get,
        super::jobs::cancel,
        super::jobs::events,
    ),
    components(schemas(ErrorBody, ErrorCode)),
    modifiers(&SecuritySchemes, &CommonResponses),
    tags(
        (name = "health", description = "Liveness, readiness and metrics; no credentials needed"),
        (name = "auth", description = "Accounts, sign-in and tokens"),
        (name = "api keys", description = "Keys for scripts, managed from a signed-in session"),
        (name = "admin", description = "Users, for admins"),
        (name = "collections", description = "Collections and who may read them"),
        (name = "documents", description = "Uploads, crawls and documents, for admins; ingestion runs as jobs"),
        (name = "jobs", description = "Ingestion jobs, for admins"),
        (name = "query", description = "Hybrid search"),
        (name = "conversations", description = "A user's conversations"),
        (name = "chat", description = "Grounded answers: one body, server-sent events or a WebSocket"),
        (name = "openai", description = "OpenAI's chat completions format"),
        (name = "docs", description = "This document and its UI"),
    ),
)]
pub struct ApiDoc;

/// How callers prove who they are: an access JWT or an API key, both as
/// `Authorization: Bearer`; a WebSocket ticket; the metrics token.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        let bearer = |format: &str, description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format(format)
                    .description(Some(description))
                    .build(),
            )
        };
        components.add_security_scheme(
            "jwt",
            bearer(
                "JWT",
                "An access token from `POST /api/v1/auth/login` or `/auth/refresh`.",
            ),
        );
        components.add_security_scheme(
            "api_key",
            bearer(
                "rck_…",
                "An API key (`rck_…`) from `POST /api/v1/api-keys`; the scopes listed are the ones \
                 that let a key in (any one of them).",
            ),
        );
        components.add_security_scheme(
            "metrics_token",
            bearer("opaque", "`server.metrics_token`, when it is set."),
        );
        components.add_security_scheme(
            "ticket",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "ticket",
                "A single-use WebSocket ticket from `POST /api/v1/ws-tickets`.",
            ))),
        );
    }
}

/// The refusals any operation of a kind can give, added where the handler's
/// own list does not already name the status: a body or query string that
/// does not parse (400) or is too large (413), a missing or bad credential
/// (401), a failure on the server's side (500, 503).
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        for (path, item) in api.paths.paths.iter_mut() {
            let ops = [
                item.get.as_mut(),
                item.put.as_mut(),
                item.post.as_mut(),
                item.delete.as_mut(),
                item.patch.as_mut(),
            ];
            for op in ops.into_iter().flatten() {
                add_common(path, op);
            }
        }
    }
}

fn add_common(path: &str, op: &mut Operation) {
    let has_body = op.request_body.is_some();
    let has_query = op.parameters.iter().flatten().any(|p| match p {
        RefOr::T(p) => matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query),
        RefOr::Ref(_) => false,
    });
    let needs_credentials = op
        .security
        .as_ref()
        .is_some_and(|reqs| !reqs.iter().any(is_anonymous));
    let static_content =
        path == "/health" || path.starts_with("/api/docs") || path == "/api/openapi.json";
    let mut add = |status: &str, description: &str| {
        if !op.responses.responses.contains_key(status) {
            op.responses
                .responses
                .insert(status.to_string(), RefOr::T(error_response(description)));
        }
    };
    if has_body || has_query {
        add(
            "400",
            "`invalid_body` or `invalid_query_string`: malformed JSON, unknown or missing fields, a bad query string",
        );
    }
    if has_body {
        add("413", "`payload_too_large`: a JSON body over 64 KiB");
    }
    if needs_credentials {
        add(
            "401",
            "`unauthorized`, `token_expired` or `api_key_expired`: no valid credential (with `WWW-Authenticate: Bearer`)",
        );
    }
    if !static_content {
        add(
            "500",
            "`internal`: a failure on the server's side; the detail is logged under the request id",
        );
        if path != "/metrics" {
            add("503", "`unavailable` or `models_missing`: a backend is down or the models are not installed");
        }
    }
}

/// An empty requirement: the operation may be called without credentials.
fn is_anonymous(req: &utoipa::openapi::security::SecurityRequirement) -> bool {
    serde_json::to_value(req).is_ok_and(|v| v.as_object().is_some_and(|m| m.is_empty()))
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                ErrorBody::name(),
            )))),
        )
        .build()
}

/// The document, built once.
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

/// `GET /api/openapi.json`
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "docs",
    operation_id = "openapi",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = serde_json::Value, content_type = "application/json")),
    security(()),
)]
pub async fn document() -> Result<HttpResponse, Error> {
    static JSON: OnceLock<String> = OnceLock::new();
    let json = match JSON.get() {
        Some(json) => json,
        None => {
            let json = serde_json::to_string(openapi())
                .map_err(|e| Error::Internal(format!("OpenAPI document: {e}")))?;
            JSON.get_or_init(|| json)
        }
    };
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(json.clone()))
}

/// `GET /api/docs`: the UI's files are named relative to its directory.
#[utoipa::path(
    get,
    path = "/api/docs",
    tag = "docs",
    operation_id = "docs",
    responses((status = 308, description = "To `/api/docs/`, the Swagger UI",
        headers(("Location" = String, description = "`/api/docs/`")))),
    security(()),
)]
pub async fn docs_root() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/api/docs/"))
        .finish()
}

/// `GET /api/docs/{file}`: Swagger UI, compiled into the binary.
#[utoipa::path(
    get,
    path = "/api/docs/{file}",
    tag = "docs",
    operation_id = "docs_file",
    params(("file" = String, Path, description = "A file of the UI; empty for its page", example = "index.html")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/html"),
            (String = "text/css"),
            (String = "text/javascript"),
            (String = "application/javascript"),
            (String = "image/png"),
            (String = "application/json"),
        )),
        (status = 404, description = "`not_found`: no such file", body = ErrorBody),
    ),
    security(()),
)]
pub async fn docs_file(path: web::Path<String>) -> Result<HttpResponse, Error> {
    static CONFIG: OnceLock<Arc<Config<'static>>> = OnceLock::new();
    let config = CONFIG
        .get_or_init(|| Arc::new(Config::new(["/api/openapi.json"])))
        .clone();
    let file = utoipa_swagger_ui::serve(&path, config)
        .map_err(|e| Error::Internal(format!("swagger ui: {e}")))?
        .ok_or_else(|| Error::new(ErrorCode::NotFound, "no such file"))?;
    let mut response = HttpResponse::Ok();
    if file.gzpipped {
        response.insert_header((header::CONTENT_ENCODING, "gzip"));
    }
    Ok(response
        .content_type(file.content_type)
        .body(file.bytes.into_owned()))
}

/// The schema of [`AnswerView`], whose parts are the chat module's event
/// types (`chat::answer`); written out here so the OpenAPI document stays an
/// HTTP concern. The fields of `done` are absent when the answer ended
/// without it.
#[derive(ToSchema)]
#[schema(as = Answer)]
#[allow(dead_code)] // Only its schema is used.
pub struct AnswerSchema {
    /// The answer text, `[n]` citing `sources[n - 1]`.
    answer: String,
    conversation_id: Option<String>,
    sources: Option<Vec<SourceSchema>>,
    message_id: Option<String>,
    citations: Option<Vec<usize>>,
    dropped_citations: Option<usize>,
    refused: Option<bool>,
    cancelled: Option<bool>,
    model: Option<String>,
    usage: Option<TokenUsageSchema>,
    timings: Option<TimingsSchema>,
}

/// A passage an answer may cite (`chat::answer::SourceItem`).
#[derive(ToSchema)]
#[schema(as = Source)]
#[allow(dead_code)] // Only its schema is used.
pub struct SourceSchema {
    /// The number the answer cites it by, from 1.
    n: usize,
    document_id: String,
    chunk_id: String,
    collection: String,
    title: String,
    source: String,
    snippet: String,
    /// The whole passage as the model was given it.
    text: String,
    score: f32,
}

/// Tokens an answer took (`llm::Usage`).
#[derive(ToSchema)]
#[schema(as = TokenUsage)]
#[allow(dead_code)] // Only its schema is used.
pub struct TokenUsageSchema {
    prompt_tokens: usize,
    completion_tokens: usize,
}

/// Where an answer's time went (`chat::answer::Timings`).
#[derive(ToSchema)]
#[schema(as = Timings)]
#[allow(dead_code)] // Only its schema is used.
pub struct TimingsSchema {
    retrieval_ms: f64,
    /// Null when the model produced nothing (refusal, error, cancel).
    first_token_ms: Option<f64>,
    total_ms: f64,
}

/// The body of `POST /v1/chat/completions`, written out by hand: the
/// handler reads and writes OpenAI's wire types (`async-openai`), which do
/// not describe themselves to utoipa. Only what ragchat reads is required;
/// the rest of OpenAI's request is accepted and ignored.
pub struct CompletionRequestSchema;

impl PartialSchema for CompletionRequestSchema {
    fn schema() -> RefOr<Schema> {
        let text_part = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("type", ObjectBuilder::new().schema_type(Type::String))
            .property("text", ObjectBuilder::new().schema_type(Type::String));
        let content = OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::String))
            .item(ArrayBuilder::new().items(text_part))
            .description(Some(
                "A string, or an array of parts of which the `text` ones are read",
            ));
        let message = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "role",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["system", "developer", "user", "assistant"])),
            )
            .required("role")
            .property("content", content)
            .required("content");
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "OpenAI's chat completion request. The last message, the user's, is the question; \
                 earlier user and assistant messages are the history; system messages are ignored. \
                 Other members of OpenAI's request (temperature, …) are accepted and ignored.",
            ))
            .property(
                "model",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some(
                        "Echoed back; may be left out: the deployment's model answers",
                    )),
            )
            .property(
                "messages",
                ArrayBuilder::new().items(message).min_items(Some(1)),
            )
            .required("messages")
            .property("stream", ObjectBuilder::new().schema_type(Type::Boolean))
            .property(
                "collections",
                ArrayBuilder::new()
                    .items(ObjectBuilder::new().schema_type(Type::String))
                    .description(Some("ragchat: the collections to search (names)")),
            )
            .property(
                "top_k",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .description(Some("ragchat: passages to retrieve")),
            )
            .into()
    }
}

impl ToSchema for CompletionRequestSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "ChatCompletionRequest".into()
    }
}

/// A `chat.completion` as ragchat sends it: OpenAI's fields plus `sources`,
/// `citations` and `refused`. See [`CompletionRequestSchema`] for why it is
/// written by hand.
pub struct CompletionSchema;

impl PartialSchema for CompletionSchema {
    fn schema() -> RefOr<Schema> {
        let string = || ObjectBuilder::new().schema_type(Type::String);
        let integer = || ObjectBuilder::new().schema_type(Type::Integer);
        let message = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("role", string())
            .property(
                "content",
                ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null])),
            );
        let choice = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("index", integer())
            .property("message", message)
            .property(
                "finish_reason",
                ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null])),
            );
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("id", string())
            .required("id")
            .property("object", string().enum_values(Some(["chat.completion"])))
            .required("object")
            .property("created", integer())
            .required("created")
            .property("model", string())
            .required("model")
            .property("choices", ArrayBuilder::new().items(choice))
            .required("choices")
            .property(
                "usage",
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .property("prompt_tokens", integer())
                    .property("completion_tokens", integer())
                    .property("total_tokens", integer()),
            )
            .property(
                "sources",
                ArrayBuilder::new()
                    .items(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("Source"))),
            )
            .property("citations", ArrayBuilder::new().items(integer()))
            .property("refused", ObjectBuilder::new().schema_type(Type::Boolean))
            .into()
    }
}

impl ToSchema for CompletionSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "ChatCompletion".into()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use actix_web::introspection::{IntrospectionNode, IntrospectionTree, ResourceType};
    use actix_web::test::{call_and_read_body_json, init_service, TestRequest};
    use actix_web::App;

    use super::*;

    /// Routes that are not API: the web app's page and files.
    const NOT_API: &[&str] = &["/", "/assets/{path}"];

    /// Where the test reads the route report from; not part of the app.
    const REPORT: &str = "/__routes";

    /// actix's `{name:regex}` as OpenAPI's `{name}`.
    fn template(actix_path: &str) -> String {
        let mut out = String::new();
        let (mut in_var, mut in_regex) = (false, false);
        for c in actix_path.chars() {
            match c {
                '{' if !in_regex => {
                    in_var = true;
                    out.push(c);
                }
                ':' if in_var => in_regex = true,
                '}' if in_var => {
                    in_var = false;
                    in_regex = false;
                    out.push(c);
                }
                _ if in_regex => {}
                _ => out.push(c),
            }
        }
        out
    }

    fn collect(
        node: &IntrospectionNode,
        out: &mut BTreeSet<(String, String)>,
        unreachable: &mut Vec<String>,
    ) {
        if matches!(node.kind, ResourceType::Resource) {
            let path = template(&node.full_path);
            if node.methods.is_empty() {
                // No method guard: every method reaches it, which the
                // document cannot say of an operation.
                out.insert(("ANY".to_string(), path.clone()));
            }
            for m in &node.methods {
                out.insert((m.to_string(), path.clone()));
            }
            if node.potentially_unreachable {
                unreachable.push(format!("{path}: {:?}", node.reachability_notes));
            }
        }
        for child in &node.children {
            collect(child, out, unreachable);
        }
    }

    async fn report(tree: web::Data<IntrospectionTree>) -> HttpResponse {
        let mut routes = BTreeSet::new();
        let mut unreachable = Vec::new();
        collect(&tree.root, &mut routes, &mut unreachable);
        HttpResponse::Ok().json((routes, unreachable))
    }

    /// Every (method, path) the real router serves, as actix reports it.
    async fn routed() -> (BTreeSet<(String, String)>, Vec<String>) {
        let app = init_service(
            App::new()
                .configure(crate::http::routes)
                .route(REPORT, web::get().to(report)),
        )
        .await;
        let req = TestRequest::get().uri(REPORT).to_request();
        let (mut routes, unreachable): (BTreeSet<(String, String)>, Vec<String>) =
            call_and_read_body_json(&app, req).await;
        routes.retain(|(_, path)| path != REPORT && !NOT_API.contains(&path.as_str()));
        (routes, unreachable)
    }

    fn documented() -> BTreeSet<(String, String)> {
        let mut ops = BTreeSet::new();
        for (path, item) in &openapi().paths.paths {
            for (method, op) in [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("PATCH", &item.patch),
                ("DELETE", &item.delete),
                ("HEAD", &item.head),
                ("OPTIONS", &item.options),
                ("TRACE", &item.trace),
            ] {
                if op.is_some() {
                    ops.insert((method.to_string(), path.clone()));
                }
            }
        }
        ops
    }

    #[actix_web::test]
    async fn every_route_is_documented_and_every_documented_operation_is_routed() {
        let (routes, unreachable) = routed().await;
        let docs = documented();
        assert!(
            routes.len() > 40,
            "the route report looks empty: {routes:?}"
        );
        let undocumented: Vec<_> = routes.difference(&docs).collect();
        let unrouted: Vec<_> = docs.difference(&routes).collect();
        assert!(
            undocumented.is_empty() && unrouted.is_empty(),
            "routed but not in the OpenAPI document: {undocumented:?}\n\
             in the document but not routed: {unrouted:?}"
        );
        assert!(unreachable.is_empty(), "shadowed routes: {unreachable:?}");
    }

    #[test]
    fn actix_patterns_become_openapi_templates() {
        assert_eq!(template("/api/docs/{file:.*}"), "/api/docs/{file}");
        assert_eq!(template("/a/{id}/b/{x:[0-9]+}"), "/a/{id}/b/{x}");
        assert_eq!(template("/api/v1/query"), "/api/v1/query");
    }

    #[test]
    fn operations_have_unique_ids_a_tag_and_error_bodies() {
        let doc = serde_json::to_value(openapi()).unwrap();
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap_or_default().to_string();
                assert!(
                    ids.insert(id.clone()),
                    "{method} {path}: duplicate operationId {id:?}"
                );
                assert!(
                    op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                    "{method} {path}: no tag"
                );
                for (status, resp) in op["responses"].as_object().unwrap() {
                    if status.starts_with('4') || status.starts_with('5') {
                        if path == "/ready" {
                            continue;
                        }
                        assert_eq!(
                            resp["content"]["application/json"]["schema"]["$ref"],
                            "#/components/schemas/ErrorBody",
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
        // Every schema a reference names is in the document.
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in text.split("#/components/schemas/").skip(1) {
            let name = name.split('"').next().unwrap_or_default();
            assert!(schemas.contains_key(name), "missing schema {name}");
        }
    }
}
