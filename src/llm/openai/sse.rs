//! Server-sent events, read incrementally.

use crate::llm::LlmError;

/// One SSE line longer than this is refused: a chunk is a few hundred bytes,
/// and a server that never sends a newline must not fill our memory.
pub(super) const MAX_LINE_BYTES: usize = 1 << 20;

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct SseEvent {
    /// The `event:` field; empty for the default `message`.
    pub(super) event: String,
    /// The `data:` lines joined by `\n`.
    pub(super) data: String,
}

/// Incremental server-sent events parser (the WHATWG format, minus `id`
/// and `retry`, which a one-shot request has no use for). Bytes arrive in
/// arbitrary pieces: a line, even a UTF-8 character, may be split.
#[derive(Default)]
pub(super) struct SseReader {
    buf: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
}

impl SseReader {
    pub(super) fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, LlmError> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(i) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + i;
            let line = &self.buf[start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = std::str::from_utf8(line)
                .map_err(|_| LlmError::Malformed("the event stream is not UTF-8".into()))?
                .to_string();
            self.line(&line, &mut out);
            start = end + 1;
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_LINE_BYTES {
            return Err(LlmError::Malformed(format!(
                "an event stream line longer than {MAX_LINE_BYTES} bytes"
            )));
        }
        Ok(out)
    }

    /// End of the body: an unterminated last line or event still counts.
    pub(super) fn finish(&mut self) -> Result<Vec<SseEvent>, LlmError> {
        let mut out = if self.buf.is_empty() {
            Vec::new()
        } else {
            self.feed(b"\n")?
        };
        self.line("", &mut out);
        Ok(out)
    }

    fn line(&mut self, line: &str, out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if self.has_data {
                out.push(SseEvent {
                    event: std::mem::take(&mut self.event),
                    data: std::mem::take(&mut self.data),
                });
            }
            self.event.clear();
            self.has_data = false;
            return;
        }
        if line.starts_with(':') {
            // A comment: keep-alive.
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = value.to_string(),
            _ => {}
        }
    }
}
