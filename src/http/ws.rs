//! What every WebSocket (chat, job events) goes through: who is calling (a
//! single-use ticket, the `Authorization` header, or `?token=`), the upgrade
//! rate limit and the open-connection caps before the handshake; re-checking
//! the caller while the socket lives; closing it with a reason.

use std::time::Duration;

use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, HttpRequest};
use actix_ws::{CloseCode, CloseReason};
use serde::Deserialize;

use super::extract::{authenticate, client_ip, rate_limit};
use crate::app::App;
use crate::auth::Caller;
use crate::db::now;
use crate::error::{Error, ErrorCode, Result};
use crate::ratelimit::{Bucket, ConnectionSlot, TooMany};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WsParams {
    /// An access token or API key (discouraged: URLs end up in logs).
    token: Option<String>,
    /// A single-use ticket from `POST /api/v1/ws-tickets`: the way for browsers.
    ticket: Option<String>,
}

/// A caller allowed to open a socket, and the place it holds until it closes.
pub struct Admitted {
    pub caller: Caller,
    pub ip: String,
    pub slot: ConnectionSlot,
}

/// Authenticate the upgrade, check what the endpoint requires (`allowed`),
/// take a token from the upgrade bucket and a connection place. Everything
/// here is refused with an HTTP error before the handshake.
pub async fn admit(
    req: &HttpRequest,
    app: &web::Data<App>,
    params: WsParams,
    allowed: impl FnOnce(&Caller) -> Result<()>,
) -> Result<Admitted> {
    let caller = caller(req, app, params).await?;
    allowed(&caller)?;
    let ip = client_ip(req, app);
    rate_limit(app, Bucket::Connect, &ip, Some(&caller.user.id)).await?;
    let slot = app
        .connections
        .acquire(&caller.user.id, &ip)
        .map_err(|which| {
            let (whose, key) = match which {
                TooMany::User => ("this user", "server.max_ws_per_user"),
                TooMany::Ip => ("this address", "server.max_ws_per_ip"),
            };
            Error::new(
                ErrorCode::TooManyConnections,
                format!("too many open WebSockets for {whose} ({key}); close one first"),
            )
        })?;
    Ok(Admitted { caller, ip, slot })
}

/// A ticket (`?ticket=`, the way for browsers), else the `Authorization`
/// header, else `?token=` (kept for compatibility: the URL may be logged).
async fn caller(req: &HttpRequest, app: &web::Data<App>, params: WsParams) -> Result<Caller> {
    let app = app.clone().into_inner();
    if let Some(ticket) = params.ticket {
        // In a task of its own, like `authenticate`: the redemption writes,
        // and an SQLite query dropped in flight panics.
        return actix_web::rt::spawn(async move { app.auth.redeem_ticket(&app.db, &ticket).await })
            .await
            .map_err(|e| Error::Internal(format!("ticket task: {e}")))?;
    }
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| params.token.map(|t| format!("Bearer {t}")));
    authenticate(app, header).await
}

/// The caller as of now, or the close frame that ends the socket because its
/// credential no longer works. Errors that say nothing about the credential
/// (the database unavailable) are returned as they are.
pub async fn recheck(app: &App, caller: &Caller) -> std::result::Result<Caller, Ended> {
    app.auth
        .recheck(&app.db, caller)
        .await
        .map_err(|e| match ended(&e) {
            Some(reason) => Ended::Close(reason),
            None => Ended::Error(e),
        })
}

/// Why a re-check failed.
pub enum Ended {
    /// The credential is gone: close the socket with this reason.
    Close(CloseReason),
    /// Something else failed; the credential may be fine.
    Error(Error),
}

/// The close frame for an error that means the caller's credential stopped
/// working (a 401); `None` for any other error.
pub fn ended(e: &Error) -> Option<CloseReason> {
    if e.status() != 401 {
        return None;
    }
    let expired = matches!(e.code(), ErrorCode::TokenExpired | ErrorCode::ApiKeyExpired);
    Some(policy_close(if expired {
        "token expired"
    } else {
        "session ended"
    }))
}

/// A policy-violation (1008) close frame with `reason`.
pub fn policy_close(reason: &str) -> CloseReason {
    CloseReason {
        code: CloseCode::Policy,
        description: Some(reason.to_string()),
    }
}

/// Time until the caller's credential expires by itself; `None` if it never
/// does (an API key without expiry).
pub fn time_left(caller: &Caller) -> Option<Duration> {
    caller
        .expires_at()
        .map(|at| (at - now()).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_credential_errors_close_the_socket() {
        let reason = |e: Error| ended(&e).and_then(|r| r.description);
        assert_eq!(
            reason(Error::new(ErrorCode::TokenExpired, "x")).as_deref(),
            Some("token expired")
        );
        assert_eq!(
            reason(Error::new(ErrorCode::ApiKeyExpired, "x")).as_deref(),
            Some("token expired")
        );
        assert_eq!(
            reason(Error::new(ErrorCode::Unauthorized, "x")).as_deref(),
            Some("session ended")
        );
        assert!(ended(&Error::Unavailable("db down".into())).is_none());
        assert!(ended(&Error::new(ErrorCode::CollectionNotFound, "x")).is_none());
        assert_eq!(
            ended(&Error::new(ErrorCode::Unauthorized, "x")).map(|r| r.code),
            Some(CloseCode::Policy)
        );
    }
}
