//! Chat: prompt assembly under a token budget, citation checking, and the
//! answer pipeline the WebSocket and SSE endpoints share.

pub mod answer;
pub mod collect;
pub mod prompt;
