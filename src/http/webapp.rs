//! The web app (`web/` in the repository): `GET /` and `GET /assets/{path}`.
//!
//! The files are compiled into the binary, so a deployment is one file and
//! nothing is fetched from anywhere else at run time; the Content-Security-
//! Policy below holds the page to that. `server.web_dir` serves them from a
//! directory instead, for working on the app without rebuilding.

use std::borrow::Cow;
use std::path::{Component, Path, PathBuf};

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use rust_embed::RustEmbed;

use crate::app::App;
use crate::error::{Error, ErrorCode};

#[derive(RustEmbed)]
#[folder = "web/"]
struct Assets;

/// Only our own origin: no inline script or style, no other hosts, no
/// framing. `connect-src 'self'` covers the WebSockets of the same host.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    // HEAD too: uptime checks and link checkers ask the page that way.
    cfg.route("/", web::get().to(index))
        .route("/", web::head().to(index))
        .route("/assets/{path:.*}", web::get().to(asset))
        .route("/assets/{path:.*}", web::head().to(asset));
}

async fn index(req: HttpRequest, app: web::Data<App>) -> Result<HttpResponse, Error> {
    serve(&req, &app, "index.html").await
}

async fn asset(
    req: HttpRequest,
    app: web::Data<App>,
    path: web::Path<String>,
) -> Result<HttpResponse, Error> {
    serve(&req, &app, &path).await
}

fn no_such_file() -> Error {
    Error::new(ErrorCode::NotFound, "no such file")
}

async fn serve(req: &HttpRequest, app: &App, path: &str) -> Result<HttpResponse, Error> {
    let relative = safe_relative(path).ok_or_else(no_such_file)?;
    let (body, etag): (Cow<'static, [u8]>, Option<String>) =
        if app.settings.server.web_dir.is_empty() {
            let file = Assets::get(path).ok_or_else(no_such_file)?;
            let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
            (file.data, Some(etag))
        } else {
            let full = Path::new(&app.settings.server.web_dir).join(relative);
            match tokio::fs::read(&full).await {
                Ok(bytes) => (Cow::Owned(bytes), None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_such_file()),
                Err(e) => return Err(Error::Internal(format!("{}: {e}", full.display()))),
            }
        };
    let not_modified = etag
        .as_deref()
        .is_some_and(|tag| if_none_match(req).is_some_and(|sent| sent.contains(tag)));
    let mut res = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::CONTENT_TYPE, content_type(path)))
        // Revalidate every time: the ETag makes that a 304, and a new binary
        // is never mixed with an old cached script.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    if let Some(tag) = etag {
        res.insert_header((header::ETAG, tag));
    }
    if not_modified {
        return Ok(res.finish());
    }
    Ok(res.body(body.into_owned()))
}

fn if_none_match(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v: &HeaderValue| v.to_str().ok())
}

/// The path as plain names under the web root, or None for anything that
/// could leave it (`..`, an absolute path, a drive prefix) or name a
/// directory.
fn safe_relative(path: &str) -> Option<PathBuf> {
    if path.is_empty() || path.ends_with('/') || path.contains('\\') {
        return None;
    }
    let mut out = PathBuf::new();
    for part in Path::new(path).components() {
        match part {
            Component::Normal(name) => out.push(name),
            _ => return None,
        }
    }
    Some(out)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json" | "webmanifest") => "application/json",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_served() {
        assert_eq!(safe_relative("app.js"), Some(PathBuf::from("app.js")));
        assert_eq!(
            safe_relative("js/chat.js"),
            Some(PathBuf::from("js/chat.js"))
        );
        for bad in [
            "",
            "../Cargo.toml",
            "js/../../x",
            "/etc/passwd",
            "js/",
            "a\\b",
            "./x",
        ] {
            assert_eq!(safe_relative(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_app_is_compiled_in() {
        assert!(Assets::get("index.html").is_some());
        assert!(Assets::get("app.js").is_some());
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
    }
}
