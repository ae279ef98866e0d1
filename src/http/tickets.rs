//! WebSocket tickets. A browser cannot set headers on a WebSocket, and a
//! long-lived token in the URL ends up in proxy logs and browser history; a
//! ticket works once, within seconds, so a copy found later is worthless.

use actix_web::{web, HttpResponse};

use super::views::{ErrorBody, TicketView, Time};
use crate::app::App;
use crate::auth::{Caller, Scope};
use crate::error::Error;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws-tickets", web::post().to(create));
}

/// `POST /api/v1/ws-tickets`: a ticket for `?ticket=` on the chat or the
/// job-events WebSocket, standing for the credential that asked for it.
#[utoipa::path(
    post,
    path = "/api/v1/ws-tickets",
    tag = "chat",
    operation_id = "create_ws_ticket",
    responses(
        (status = 201, description = "A single-use ticket, valid `auth.ws_ticket_ttl_secs`", body = TicketView),
        (status = 403, description = "`insufficient_scope`: a key without `chat`, `ingest` or `admin`", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["chat", "ingest", "admin"])),
)]
pub async fn create(caller: Caller, app: web::Data<App>) -> Result<HttpResponse, Error> {
    // Only keys that may open one of the sockets; the socket checks its own
    // requirement again when the ticket is used.
    caller.require_any_scope(&[Scope::Chat, Scope::Ingest, Scope::Admin])?;
    let (ticket, expires_at) = app.auth.issue_ticket(&app.db, &caller).await?;
    Ok(HttpResponse::Created().json(TicketView {
        ticket: &ticket,
        expires_in: app.settings.auth.ws_ticket_ttl_secs,
        expires_at: Time(expires_at),
    }))
}
