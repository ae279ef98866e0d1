//! Request plumbing shared by the handlers: the authenticated caller, JSON and
//! query-string configuration, client IPs, rate limits and page cursors.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
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
use crate::config::{canonical, limiter_key, RateLimitSettings};
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

/// The client's key for per-IP limits (see [`forwarded_client`]; IPv6
/// clients are grouped by /64).
pub fn client_ip(req: &HttpRequest, app: &App) -> String {
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok());
    let peer = req.peer_addr().map(|a| a.ip());
    forwarded_client(peer, forwarded, &app.settings.rate_limit)
        .map_or_else(|| "unknown".into(), limiter_key)
}

/// Who a request comes from. `X-Forwarded-For` is believed only when
/// configured, since any client can send it, and only on a connection from a
/// trusted proxy when those are named. Each proxy appends the address it saw,
/// so the entries a client wrote itself are on the left: the client is the
/// right-most entry that is not a trusted proxy. An entry that is not an
/// address means the header cannot be read, and the peer is used instead.
fn forwarded_client<'a>(
    peer: Option<IpAddr>,
    forwarded: impl Iterator<Item = &'a str>,
    settings: &RateLimitSettings,
) -> Option<IpAddr> {
    let peer = peer.map(canonical);
    if !settings.trust_forwarded_for {
        return peer;
    }
    let proxies = &settings.trusted_proxies;
    let trusted = |ip: IpAddr| proxies.iter().any(|net| net.contains(ip));
    if !proxies.is_empty() && !peer.is_some_and(trusted) {
        return peer;
    }
    let entries: Vec<&str> = forwarded.flat_map(|h| h.split(',')).collect();
    for entry in entries.into_iter().rev() {
        match forwarded_entry(entry) {
            Some(ip) if trusted(ip) => continue,
            Some(ip) => return Some(ip),
            None => return peer,
        }
    }
    peer
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (some
/// proxies add one), IPv6 possibly in brackets.
fn forwarded_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| e.parse::<IpAddr>().ok())
        })?;
    Some(canonical(ip))
}

/// Take a token from the IP's bucket and, when known, the user's.
pub async fn rate_limit(app: &App, bucket: Bucket, ip: &str, user: Option<&str>) -> Result<()> {
    let subjects = [Some(Subject::Ip(ip)), user.map(Subject::User)];
    for subject in subjects.into_iter().flatten() {
        if let Err(limited) = app.limiter.check(bucket, subject).await {
            app.metrics
                .rate_limited
                .get_or_create(&crate::metrics::BucketLabels {
                    bucket: bucket.name(),
                })
                .inc();
            let secs = limited.retry_after.as_secs_f64().ceil().max(1.0) as u64;
            return Err(Error::RateLimited {
                retry_after_secs: secs,
            });
        }
    }
    Ok(())
}

/// [`rate_limit`] for an authenticated request: its address and its user.
pub async fn rate_limit_caller(
    req: &HttpRequest,
    app: &App,
    bucket: Bucket,
    caller: &Caller,
) -> Result<()> {
    rate_limit(app, bucket, &client_ip(req, app), Some(&caller.user.id)).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page, 1 to 100 (20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// `next_cursor` of the page before.
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

    fn settings(trust: bool, proxies: &[&str]) -> RateLimitSettings {
        RateLimitSettings {
            trust_forwarded_for: trust,
            trusted_proxies: proxies.iter().map(|p| p.parse().unwrap()).collect(),
            ..RateLimitSettings::default()
        }
    }

    fn client(peer: &str, headers: &[&str], s: &RateLimitSettings) -> Option<String> {
        forwarded_client(peer.parse().ok(), headers.iter().copied(), s).map(limiter_key)
    }

    #[test]
    fn forwarded_for_is_ignored_unless_trusted() {
        let s = settings(false, &[]);
        assert_eq!(
            client("192.0.2.1", &["203.0.113.5"], &s).as_deref(),
            Some("192.0.2.1")
        );
        // Named proxies: a header from anyone else is the client's own claim.
        let s = settings(true, &["10.0.0.0/8"]);
        assert_eq!(
            client("192.0.2.1", &["203.0.113.5"], &s).as_deref(),
            Some("192.0.2.1")
        );
        assert_eq!(
            client("10.1.1.1", &["203.0.113.5"], &s).as_deref(),
            Some("203.0.113.5")
        );
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_entry() {
        let s = settings(true, &["10.0.0.0/8", "192.168.0.1"]);
        // Whatever the client wrote on the left is passed along by the proxies.
        for spoofed in ["1.1.1.1", "1.1.1.1, 8.8.8.8", "127.0.0.1"] {
            let header = format!("{spoofed}, 203.0.113.5, 10.0.0.2");
            assert_eq!(
                client("192.168.0.1", &[&header], &s).as_deref(),
                Some("203.0.113.5"),
                "{header}"
            );
        }
        // Entries split across several headers read as one list, in order.
        assert_eq!(
            client("10.0.0.3", &["6.6.6.6, 203.0.113.7", "10.0.0.2"], &s).as_deref(),
            Some("203.0.113.7")
        );
        // Ports and brackets, as some proxies write them.
        assert_eq!(
            client("10.0.0.3", &["203.0.113.8:4711"], &s).as_deref(),
            Some("203.0.113.8")
        );
        assert_eq!(
            client("10.0.0.3", &["[2001:db8::1]:443"], &s).as_deref(),
            Some("2001:db8::/64")
        );
        assert_eq!(
            client("10.0.0.3", &["[2001:db8::1]"], &s).as_deref(),
            Some("2001:db8::/64")
        );
        // Only proxies in the list: the request came from inside; the peer it is.
        assert_eq!(
            client("10.0.0.3", &["10.0.0.9, 10.0.0.2"], &s).as_deref(),
            Some("10.0.0.3")
        );
        // No proxies named: the right-most entry.
        let s = settings(true, &[]);
        assert_eq!(
            client("127.0.0.1", &["1.1.1.1, 203.0.113.9"], &s).as_deref(),
            Some("203.0.113.9")
        );
    }

    #[test]
    fn garbage_falls_back_to_the_peer() {
        let s = settings(true, &["10.0.0.0/8"]);
        for header in [
            "not-an-ip",
            "203.0.113.5, unknown",
            "203.0.113.5, ",
            "203.0.113.5, 10.0.0.2, <script>",
            "",
            "999.1.1.1",
        ] {
            assert_eq!(
                client("10.0.0.3", &[header], &s).as_deref(),
                Some("10.0.0.3"),
                "{header:?}"
            );
        }
        // No header at all: the peer.
        assert_eq!(client("10.0.0.3", &[], &s).as_deref(), Some("10.0.0.3"));
        assert_eq!(client("", &["203.0.113.5"], &settings(false, &[])), None);
    }

    #[test]
    fn ipv6_clients_are_grouped_by_64() {
        let s = settings(true, &[]);
        let a = client("127.0.0.1", &["2001:db8:7:8::1"], &s);
        let b = client("127.0.0.1", &["2001:db8:7:8:ffff::2"], &s);
        let c = client("127.0.0.1", &["2001:db8:7:9::1"], &s);
        assert_eq!(a, b);
        assert_ne!(a, c);
        // The peer address too.
        let s = settings(false, &[]);
        assert_eq!(
            client("2001:db8:7:8::5", &[], &s).as_deref(),
            Some("2001:db8:7:8::/64")
        );
    }

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
