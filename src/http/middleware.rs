//! What every request goes through between the request log and the
//! handlers: its own task, its request id, a signal for when its client goes
//! away, and the headers every response carries.

use std::future::{ready, Ready};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{
    HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, X_CONTENT_TYPE_OPTIONS,
};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use tokio::sync::watch;
use tracing::Instrument;

use super::views::ErrorBody;
use crate::app::App;
use crate::error::{generic_message, Error, ErrorCode};
use crate::metrics::{HttpLabels, RouteLabels};
use crate::telemetry::request_id;

/// The response header that names the request (and its log lines).
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Run each request in a task of its own, as part of its request id.
///
/// The task: actix drops a request's future when the client goes away, and
/// dropping a SQLite query in flight panics the worker (diesel-async's
/// blocking wrapper); in a task the work finishes and only the response is
/// thrown away. Handlers that should stop instead (an answer nobody will
/// read) take [`ClientGone`].
///
/// The id is the one `TracingLogger` gave the request's log span, so the
/// `X-Request-Id` header, the `request_id` of error bodies and frames, and
/// the log lines all agree. A client's own `X-Request-Id` is not taken over:
/// ids in the log are the server's, so no client can make its requests pass
/// for someone else's.
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> actix_web::Result<ServiceResponse<impl MessageBody>> {
    let id = req
        .extensions()
        .get::<tracing_actix_web::RequestId>()
        .map(|id| id.to_string())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let started = std::time::Instant::now();
    let (method, route) = (method_of(&req), route_of(&req));
    let app = req.app_data::<actix_web::web::Data<App>>().cloned();
    // Dropped with this future: when the request completes, or when actix
    // drops it because the client went away.
    let (client_here, gone) = watch::channel(());
    req.extensions_mut().insert(ClientGone(gone));
    // (No clone of the request may be kept here: routing needs it unshared.)
    let handler = request_id::scope(&id, next.call(req)).instrument(tracing::Span::current());
    let mut res = match actix_web::rt::spawn(handler).await {
        Ok(res) => res?,
        Err(panicked) => {
            tracing::error!(error = %panicked, "request handler panicked");
            return Err(HandlerPanicked { request_id: id }.into());
        }
    };
    drop(client_here);
    if let Some(app) = app {
        let status = res.status().as_u16();
        let m = &app.metrics;
        m.http_duration
            .get_or_create(&RouteLabels {
                method: method.clone(),
                route: route.clone(),
            })
            .observe(started.elapsed().as_secs_f64());
        m.http_requests
            .get_or_create(&HttpLabels {
                method,
                route,
                status,
            })
            .inc();
    }
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert(X_REQUEST_ID, v);
    }
    secure(headers);
    Ok(res)
}

/// The method as metrics label it: a client may send any token as a
/// method, and labels must stay a closed set.
fn method_of(req: &ServiceRequest) -> String {
    let m = req.method().as_str();
    match m {
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" => m.to_string(),
        _ => "other".to_string(),
    }
}

/// The route template a request matched, as metrics label it: never the
/// path itself, which holds ids and anything a client makes up.
fn route_of(req: &ServiceRequest) -> String {
    req.match_pattern()
        .unwrap_or_else(|| "unmatched".to_string())
}

/// The headers of every response: an API answers JSON (or event streams)
/// for one caller, so no content sniffing into HTML, and nothing kept by a
/// shared cache or the browser.
fn secure(headers: &mut HeaderMap) {
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A handler that panicked: a JSON 500 like any other, built outside the
/// request's task (which is gone), so it carries its id explicitly.
#[derive(Debug, thiserror::Error)]
#[error("request handler panicked")]
struct HandlerPanicked {
    request_id: String,
}

impl ResponseError for HandlerPanicked {
    fn status_code(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    fn error_response(&self) -> HttpResponse {
        let code = ErrorCode::Internal;
        let mut body = ErrorBody::new(code, generic_message(code));
        body.error.request_id = Some(self.request_id.clone());
        let mut res = HttpResponse::InternalServerError().json(body);
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            res.headers_mut().insert(X_REQUEST_ID, v);
        }
        secure(res.headers_mut());
        res
    }
}

/// Resolves once the client of this request has gone away, for handlers
/// that should stop working then (an answer collected into one response).
/// Needs `HttpServer::h1_allow_half_closed(false)`: otherwise a client that
/// closed its socket looks half-closed and the request runs on.
#[derive(Debug, Clone)]
pub struct ClientGone(watch::Receiver<()>);

impl ClientGone {
    pub async fn wait(mut self) {
        // Nothing is ever sent: `changed` fails when the sender is dropped.
        while self.0.changed().await.is_ok() {}
    }
}

/// The response of a request whose client left: nobody reads it, but the
/// request log shows it (499, as nginx calls it).
pub fn client_closed() -> HttpResponse {
    HttpResponse::new(StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST))
}

impl FromRequest for ClientGone {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<ClientGone>()
                .cloned()
                .ok_or_else(|| Error::Internal("request_context middleware missing".into())),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use actix_web::middleware::from_fn;
    use actix_web::{test, web, App};
    use tracing_actix_web::TracingLogger;

    use super::*;

    /// Log lines, as the server's log would have them.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            String::from_utf8_lossy(&self.0.lock().unwrap())
                .lines()
                .map(str::to_string)
                .collect()
        }
    }

    async fn answers() -> HttpResponse {
        tracing::warn!("in the handler");
        let spawned = actix_web::rt::spawn(request_id::in_request(async {
            tracing::warn!("in a task of the request");
            request_id::current()
        }));
        let id = spawned.await.unwrap_or_default().unwrap_or_default();
        HttpResponse::Ok().body(id)
    }

    async fn fails() -> Result<HttpResponse, Error> {
        Err(Error::Unavailable(
            "database at 10.9.8.7:5432: connection refused".into(),
        ))
    }

    async fn panics() -> HttpResponse {
        panic!("secret panic text")
    }

    fn header<B>(res: &ServiceResponse<B>, name: &HeaderName) -> String {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_string()
    }

    #[actix_web::test]
    async fn one_id_in_the_header_the_error_body_and_every_log_line() {
        let log = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(log.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let app = test::init_service(
            App::new()
                .wrap(from_fn(request_context))
                .wrap(TracingLogger::default())
                .route("/ok", web::get().to(answers))
                .route("/fail", web::get().to(fails))
                .route("/panic", web::get().to(panics)),
        )
        .await;

        let res = test::call_service(&app, test::TestRequest::get().uri("/ok").to_request()).await;
        let id = header(&res, &X_REQUEST_ID);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        assert_eq!(header(&res, &X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(header(&res, &CACHE_CONTROL), "no-store");
        let body = test::read_body(res).await;
        assert_eq!(body, id.as_bytes(), "a spawned task knows the request id");
        let lines = log.lines();
        for what in ["in the handler", "in a task of the request"] {
            let line = lines.iter().find(|l| l.contains(what)).expect(what);
            assert!(line.contains(&id), "{line}");
        }

        let res =
            test::call_service(&app, test::TestRequest::get().uri("/fail").to_request()).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        let id = header(&res, &X_REQUEST_ID);
        let body: serde_json::Value = test::read_body_json(res).await;
        assert_eq!(body["error"]["code"], "unavailable");
        assert_eq!(body["error"]["request_id"], id.as_str());
        assert!(!body.to_string().contains("10.9.8.7"), "{body}");
        let lines = log.lines();
        let line = lines
            .iter()
            .find(|l| l.contains("10.9.8.7"))
            .expect("the detail is logged");
        assert!(line.contains(&id), "{line}");

        // A panic surfaces as an error, which actix answers with its response.
        let Err(panicked) =
            test::try_call_service(&app, test::TestRequest::get().uri("/panic").to_request()).await
        else {
            panic!("a panicking handler answered normally");
        };
        let res = panicked.error_response();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let id = res
            .headers()
            .get(X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .expect("X-Request-Id")
            .to_string();
        let body = actix_web::body::to_bytes(res.into_body()).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "internal");
        assert_eq!(body["error"]["request_id"], id.as_str());
        assert!(!body.to_string().contains("secret"), "{body}");
    }
}
