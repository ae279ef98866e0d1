//! Chat transports over the same answer events (`chat::answer`): the
//! WebSocket protocol of docs/API.md, and `POST /conversations/{id}/messages`
//! as server-sent events or one JSON body.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::ACCEPT;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseReason};
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use utoipa::ToSchema;

use super::extract::{client_ip, rate_limit};
use super::middleware::{client_closed, ClientGone};
use super::openapi::AnswerSchema;
use super::views::{AnswerView, ErrorBody};
use super::ws::{self, Admitted, Ended, WsParams};
use crate::app::App;
use crate::auth::{Caller, Scope};
use crate::chat::answer::{self, Ask, Event, Thread};
use crate::chat::collect::collect_unless;
use crate::error::{Error, ErrorCode};
use crate::ratelimit::Bucket;
use crate::telemetry::request_id;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/conversations/{id}/messages", web::post().to(post_message))
        .route("/chat/ws", web::get().to(ws));
}

/// Largest client frame accepted (an `ask` is a few kilobytes at most).
const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Client frames.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientFrame {
    Ask {
        conversation_id: Option<String>,
        message: String,
        collections: Option<Vec<String>>,
        top_k: Option<i64>,
    },
    Cancel,
}

/// `GET /api/v1/chat/ws`
#[utoipa::path(
    get,
    path = "/api/v1/chat/ws",
    tag = "chat",
    operation_id = "chat_socket",
    summary = "The chat WebSocket",
    description = "A WebSocket upgrade (`Connection: Upgrade`, `Upgrade: websocket`). \
Authenticate with the `Authorization` header, or from a browser with `?ticket=` (see `POST /api/v1/ws-tickets`). \
JSON text frames, client to server: `{\"type\": \"ask\", \"conversation_id\": null | \"…\", \"message\": \"…\", \"collections\"?: [\"…\"], \"top_k\"?: 5}` \
and `{\"type\": \"cancel\"}`. Server to client, per answer in this order: \
`{\"type\": \"conversation\", \"id\", \"title\"}`, `{\"type\": \"sources\", \"items\": [Source]}`, \
`{\"type\": \"delta\", \"text\"}` (any number), then `{\"type\": \"done\", \"message_id\", \"citations\", \"dropped_citations\", \
\"refused\", \"cancelled\", \"model\", \"usage\", \"timings\"}`, or `{\"type\": \"error\", \"code\", \"message\", \"request_id\"}` instead of the rest. \
One answer at a time (`busy` otherwise); malformed frames get an `invalid_frame` error and the socket stays open. \
The server closes the socket with 1008 `session ended` or `token expired` when the credential stops working, \
and drops a client silent for three pings. See docs/API.md, \"Chat\".",
    params(WsParams),
    responses(
        (status = 101, description = "Switching protocols: the socket is open"),
        (status = 400, description = "`not_a_websocket` (a plain GET), or `invalid_query_string`", body = ErrorBody),
        (status = 401, description = "No valid credential, or `invalid_ticket`", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`: a key without `chat`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (upgrades) or `too_many_connections`", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["chat"]), ("ticket" = [])),
)]
pub async fn ws(
    req: HttpRequest,
    body: web::Payload,
    app: web::Data<App>,
    params: web::Query<WsParams>,
) -> Result<HttpResponse, Error> {
    let admitted = ws::admit(&req, &app, params.into_inner(), |c| {
        c.require_scope(Scope::Chat)
    })
    .await?;
    let (response, session, stream) = actix_ws::handle(&req, body)
        .map_err(|e| Error::new(ErrorCode::NotAWebsocket, e.to_string()))?;
    let stream = stream
        .max_frame_size(MAX_FRAME_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME_BYTES);
    // The session's error frames and log lines carry the upgrade request's id.
    actix_web::rt::spawn(request_id::in_request(session_loop(
        app.into_inner(),
        admitted,
        session,
        stream,
    )));
    Ok(response)
}

async fn send_event(session: &mut actix_ws::Session, e: &Event) -> bool {
    match serde_json::to_string(e) {
        Ok(text) => session.text(text).await.is_ok(),
        Err(_) => true,
    }
}

async fn send_error(session: &mut actix_ws::Session, code: ErrorCode, message: &str) -> bool {
    send_event(session, &Event::failure(code.as_str(), message)).await
}

/// One connection: at most one answer in flight; its events are forwarded as
/// they come; cancel, disconnect or a dead client stop it. The connection
/// lives no longer than its credential: it is closed (1008) when the access
/// token or key expires, and when a re-check (before each ask, and at each
/// ping) finds the session ended or the user disabled.
async fn session_loop(
    app: Arc<App>,
    admitted: Admitted,
    mut session: actix_ws::Session,
    mut stream: actix_ws::AggregatedMessageStream,
) {
    // The connection's place is given back when the loop ends.
    let Admitted {
        caller,
        ip,
        slot: _slot,
    } = admitted;
    let interval = Duration::from_secs(app.settings.chat.ping_interval_secs);
    let mut ping = tokio::time::interval(interval);
    ping.tick().await;
    let expiry = async {
        match ws::time_left(&caller) {
            Some(left) => tokio::time::sleep(left).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expiry);
    let mut last_heard = Instant::now();
    let mut close: Option<CloseReason> = None;
    // The answer in flight: its events and its cancel switch.
    let mut flight: Option<(mpsc::Receiver<Event>, watch::Sender<bool>)> = None;
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(Ok(msg)) = msg else { break };
                last_heard = Instant::now();
                match msg {
                    AggregatedMessage::Text(text) => {
                        if !handle_frame(&app, &caller, &ip, &mut session, &mut flight, &mut close, &text).await {
                            break;
                        }
                    }
                    AggregatedMessage::Binary(_) => {
                        if !send_error(&mut session, ErrorCode::InvalidFrame, "frames are JSON text").await {
                            break;
                        }
                    }
                    AggregatedMessage::Ping(bytes) => {
                        if session.pong(&bytes).await.is_err() {
                            break;
                        }
                    }
                    AggregatedMessage::Pong(_) => {}
                    AggregatedMessage::Close(_) => break,
                }
            }
            event = async {
                match flight.as_mut() {
                    Some((rx, _)) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => match event {
                Some(e) => {
                    if !send_event(&mut session, &e).await {
                        break;
                    }
                }
                // The answer finished and dropped its sender.
                None => flight = None,
            },
            _ = &mut expiry => {
                close = Some(ws::policy_close("token expired"));
                break;
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > interval * 3 {
                    tracing::info!("chat client silent for three pings; closing");
                    break;
                }
                // An idle socket learns of a logout here; a failure that
                // says nothing about the credential waits for the next ping.
                if let Err(Ended::Close(reason)) = ws::recheck(&app, &caller).await {
                    close = Some(reason);
                    break;
                }
                if session.ping(b"").await.is_err() {
                    break;
                }
            }
        }
    }
    // Stop generation at once; the answer task saves what it has.
    if let Some((_, cancel)) = flight {
        let _ = cancel.send(true);
    }
    let _ = session.close(close).await;
}

/// Handle one text frame; false when the connection is gone or must close
/// (then `close` holds the reason).
async fn handle_frame(
    app: &Arc<App>,
    caller: &Caller,
    ip: &str,
    session: &mut actix_ws::Session,
    flight: &mut Option<(mpsc::Receiver<Event>, watch::Sender<bool>)>,
    close: &mut Option<CloseReason>,
    text: &str,
) -> bool {
    let frame: ClientFrame = match serde_json::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            return send_error(session, ErrorCode::InvalidFrame, &format!("bad frame: {e}")).await
        }
    };
    match frame {
        ClientFrame::Cancel => match flight {
            Some((_, cancel)) => {
                let _ = cancel.send(true);
                true
            }
            None => {
                send_error(
                    session,
                    ErrorCode::NothingToCancel,
                    "no answer is in flight",
                )
                .await
            }
        },
        ClientFrame::Ask {
            conversation_id,
            message,
            collections,
            top_k,
        } => {
            if flight.is_some() {
                return send_error(
                    session,
                    ErrorCode::Busy,
                    "an answer is already in flight on this connection; wait for `done` or cancel it",
                )
                .await;
            }
            // The socket may have outlived a logout, a disabling, a password
            // change or a demotion: answer as the caller is now, or not at all.
            let caller = match ws::recheck(app, caller).await {
                Ok(c) => c,
                Err(Ended::Close(reason)) => {
                    *close = Some(reason);
                    return false;
                }
                Err(Ended::Error(e)) => return send_event(session, &Event::error(&e)).await,
            };
            let ask = Ask {
                conversation_id,
                message,
                collections,
                top_k,
            };
            match start(app, &caller, ip, ask).await {
                Ok(f) => {
                    *flight = Some(f);
                    true
                }
                Err(e) => send_event(session, &Event::error(&e)).await,
            }
        }
    }
}

/// Check, rate-limit and spawn an answer; its events arrive on the receiver.
async fn start(
    app: &Arc<App>,
    caller: &Caller,
    ip: &str,
    ask: Ask,
) -> Result<(mpsc::Receiver<Event>, watch::Sender<bool>), Error> {
    rate_limit(app, Bucket::Chat, ip, Some(&caller.user.id)).await?;
    let (conv, _) = answer::prepare(app, caller, &ask).await?;
    let (tx, rx) = mpsc::channel(64);
    let (cancel_tx, cancel_rx) = watch::channel(false);
    actix_web::rt::spawn(request_id::in_request(answer::run(
        app.clone(),
        caller.clone(),
        Thread::Stored(conv),
        ask,
        tx,
        cancel_rx,
    )));
    Ok((rx, cancel_tx))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageBody {
    /// 1 to `chat.max_question_chars` (4000) characters after trimming.
    #[schema(min_length = 1, max_length = 4000, pattern = "\\S")]
    message: String,
    collections: Option<Vec<String>>,
    top_k: Option<i64>,
}

/// `POST /api/v1/conversations/{id}/messages`: the answer as server-sent
/// events when the client accepts `text/event-stream`, else as one JSON body.
#[utoipa::path(
    post,
    path = "/api/v1/conversations/{id}/messages",
    tag = "chat",
    operation_id = "ask",
    summary = "Ask a question in a conversation",
    description = "The answer as one JSON body, or with `Accept: text/event-stream` as server-sent events \
(`event: <type>`, `data: <frame JSON>`) carrying the chat socket's frames: `conversation`, `sources`, `delta`…, `done` or `error`.",
    params(("id" = String, Path, description = "The conversation's id")),
    request_body = MessageBody,
    responses(
        (status = 200, description = "The answer", content(
            (AnswerSchema = "application/json"),
            (String = "text/event-stream"),
        )),
        (status = 400, description = "`empty_query`, `query_too_long`, `invalid_top_k`", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`: a key without `chat`", body = ErrorBody),
        (status = 404, description = "`conversation_not_found` or `collection_not_found`", body = ErrorBody),
        (status = 422, description = "`invalid_field`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
        (status = 503, description = "`unavailable`: the answer failed", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["chat"])),
)]
pub async fn post_message(
    caller: Caller,
    gone: ClientGone,
    req: HttpRequest,
    app: web::Data<App>,
    path: web::Path<String>,
    body: web::Json<MessageBody>,
) -> Result<HttpResponse, Error> {
    caller.require_scope(Scope::Chat)?;
    let b = body.into_inner();
    let ask = Ask {
        conversation_id: Some(path.into_inner()),
        message: b.message,
        collections: b.collections,
        top_k: b.top_k,
    };
    let app = app.into_inner();
    let ip = client_ip(&req, &app);
    let (rx, cancel) = start(&app, &caller, &ip, ask).await?;
    let wants_sse = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if wants_sse {
        // The cancel switch lives as long as the response body: a client that
        // goes away drops the body, the receiver with it, and the answer stops.
        let events = futures::stream::unfold((rx, cancel), |(mut rx, cancel)| async move {
            let e = rx.recv().await?;
            let data = serde_json::to_string(&e).unwrap_or_default();
            let chunk = web::Bytes::from(format!("event: {}\ndata: {data}\n\n", e.name()));
            Some((Ok::<_, actix_web::Error>(chunk), (rx, cancel)))
        });
        return Ok(HttpResponse::Ok()
            .content_type("text/event-stream")
            .insert_header(("Cache-Control", "no-cache"))
            .streaming(events));
    }
    let mut rx = rx;
    let Some(answer) = collect_unless(&mut rx, cancel, gone.wait()).await else {
        return Ok(client_closed());
    };
    Ok(HttpResponse::Ok().json(AnswerView::from(&answer?)))
}
