//! The black-box suite, one test binary: the real `ragchat` binary, a real
//! data directory, the real server over HTTP. One module per feature; shared
//! helpers (the server, the client, [`helpers::TestApp`]) under `helpers/`.

mod access;
mod auth;
mod browser;
mod chat;
mod chat_local;
mod chat_openai;
mod cli;
mod cluster;
mod eval;
mod helpers;
mod http_hardening;
mod ingest;
mod lexical_log;
mod openapi;
mod query;
mod result_cache;
mod telemetry;
mod websocket;
