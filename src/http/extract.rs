//! Request plumbing shared by the handlers: the authenticated caller, JSON and
//! query-string configuration, client IPs, rate limits and page cursors.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::error::JsonPayloadError;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpRequest};
use base64::Engine;
use chrono::NaiveDateTime;
use serde::Deserialize;

use crate::app::App;
use crate::auth::Caller;
use crate::db::Cursor;
use crate::error::{Error, ErrorCode, Result};
use crate::ratelimit::{Bucket, Subject};

/// Largest JSON body accepted.
pub const MAX_JSON_BYTES: usize = 64 * 1024;

impl FromRequest for Caller {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let app = req.app_data::<web::Data<App>>().cloned();
        let header = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Box::pin(async move {
            let app = app.ok_or_else(|| Error::Internal("application state missing".into()))?;
            authenticate(app.into_inner(), header).await
        })
    }
}

/// Resolve an `Authorization` value in a task of its own: actix drops the
/// extractors of a request whose other extractor failed (say, a bad body),
/// and dropping an in-flight SQLite query panics (diesel-async's blocking
/// wrapper). A task runs the lookup to completion whatever happens to the
/// request.
pub async fn authenticate(app: Arc<App>, header: Option<String>) -> Result<Caller> {
    actix_web::rt::spawn(async move { app.auth.authenticate(&app.db, header.as_deref()).await })
        .await
        .map_err(|e| Error::Internal(format!("authentication task: {e}")))?
}

/// Malformed JSON is a 400 and an oversized body a 413, both with our error
/// body; serde names unknown or missing fields in the message.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(MAX_JSON_BYTES)
        .error_handler(|err, _req| match err {
            JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
                Error::PayloadTooLarge(format!(
                    "request body exceeds the limit of {MAX_JSON_BYTES} bytes"
                ))
                .into()
            }
            other => Error::new(ErrorCode::InvalidBody, format!("request body: {other}")).into(),
        })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        Error::new(ErrorCode::InvalidQueryString, err.to_string()).into()
    })
}

/// The client address used for per-IP limits. `X-Forwarded-For` is believed
/// only when configured, since any client can send it.
pub fn client_ip(req: &HttpRequest, app: &App) -> String {
    if app.settings.rate_limit.trust_forwarded_for {
        if let Some(ip) = req.connection_info().realip_remote_addr() {
            return ip.to_string();
        }
    }
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Take a token from the IP's bucket and, when known, the user's.
pub async fn rate_limit(app: &App, bucket: Bucket, ip: &str, user: Option<&str>) -> Result<()> {
    let subjects = [Some(Subject::Ip(ip)), user.map(Subject::User)];
    for subject in subjects.into_iter().flatten() {
        if let Err(limited) = app.limiter.check(bucket, subject).await {
            let secs = limited.retry_after.as_secs_f64().ceil().max(1.0) as u64;
            return Err(Error::RateLimited {
                retry_after_secs: secs,
            });
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

impl PageParams {
    /// The validated limit and decoded cursor.
    pub fn parse(&self) -> Result<(i64, Option<Cursor>)> {
        let limit = self.limit.unwrap_or(20);
        if !(1..=100).contains(&limit) {
            return Err(Error::field("limit", "must be between 1 and 100"));
        }
        let cursor = self.cursor.as_deref().map(decode_cursor).transpose()?;
        Ok((limit, cursor))
    }
}

pub fn encode_cursor(created_at: NaiveDateTime, id: &str) -> String {
    let raw = format!("{}|{id}", created_at.and_utc().timestamp_micros());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(s: &str) -> Result<Cursor> {
    let bad = || {
        Error::new(
            ErrorCode::InvalidCursor,
            "`cursor` is not one this API returned",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (micros, id) = raw.split_once('|').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let ts = chrono::DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    Ok((ts.naive_utc(), id.to_string()))
}

/// The next cursor when the page is full.
pub fn next_cursor<T>(
    items: &[T],
    limit: i64,
    key: impl Fn(&T) -> (NaiveDateTime, &str),
) -> Option<String> {
    if (items.len() as i64) < limit {
        return None;
    }
    items.last().map(|last| {
        let (ts, id) = key(last);
        encode_cursor(ts, id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let t = crate::db::now();
        let c = encode_cursor(t, "abc-1");
        assert_eq!(decode_cursor(&c).unwrap(), (t, "abc-1".to_string()));
        for bad in ["", "!!", "bm9waXBl", "MTIz"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
        let p = PageParams {
            limit: Some(0),
            cursor: None,
        };
        assert!(p.parse().is_err());
    }
}
