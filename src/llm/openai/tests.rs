use super::mock::{self, End, MockLlm, Reply};
use super::sse::{SseEvent, SseReader, MAX_LINE_BYTES};
use super::wire::{decode, Decoded};
use super::*;

fn settings(mock: &MockLlm) -> LlmSettings {
    LlmSettings {
        base_url: mock.base_url.clone(),
        model: "mock".into(),
        api_key: "sk-test".into(),
        request_timeout_secs: 30,
        first_token_timeout_secs: 1,
        max_retries: 2,
        context_window: 4096,
    }
}

fn request() -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage::system(
                "Answer from the sources.\n\nSources:\n\n[1] Shocks\nPressure rises.",
            ),
            ChatMessage::user("earlier question"),
            ChatMessage::assistant("earlier answer [1]"),
            ChatMessage::user("What happens to pressure?"),
        ],
        sources: Vec::new(),
        question: "What happens to pressure?".into(),
        max_tokens: 64,
    }
}

/// Every item of the stream, errors included.
async fn collect(model: &OpenAiModel) -> Vec<Result<String, LlmError>> {
    match model.stream(request()).await {
        Ok(stream) => stream.collect().await,
        Err(e) => vec![Err(e)],
    }
}

fn texts(items: &[Result<String, LlmError>]) -> String {
    items
        .iter()
        .filter_map(|i| i.as_ref().ok())
        .cloned()
        .collect()
}

fn stream_of(events: Vec<String>, end: End) -> Reply {
    Reply::Stream {
        events,
        gap: Duration::from_millis(5),
        end,
    }
}

#[tokio::test]
async fn streams_the_deltas_and_sends_the_prompt() {
    let mock = MockLlm::start(vec![mock::answer(&["Pressure", " rises", " [1]."])]);
    let model = OpenAiModel::new(&settings(&mock)).unwrap();
    assert_eq!(model.name(), "mock");
    assert_eq!(model.context_window(), 4096);
    let items = collect(&model).await;
    // The role-only and finish chunks carry no text and yield nothing.
    assert_eq!(
        items,
        vec![
            Ok("Pressure".into()),
            Ok(" rises".into()),
            Ok(" [1].".into())
        ]
    );

    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(r.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(r.header("accept"), Some("text/event-stream"));
    let expected: Vec<serde_json::Value> = request()
        .messages
        .iter()
        .map(|m| serde_json::json!({"role": m.role.as_str(), "content": m.content}))
        .collect();
    assert_eq!(
        r.body,
        serde_json::json!({"model": "mock", "messages": expected, "max_tokens": 64, "stream": true})
    );
}

#[tokio::test]
async fn an_error_mid_stream_ends_the_answer_without_a_retry() {
    // The server drops the connection after two deltas.
    let mock = MockLlm::start(vec![stream_of(
        vec![mock::role_chunk(), mock::chunk("Pres"), mock::chunk("sure")],
        End::Close,
    )]);
    let model = OpenAiModel::new(&settings(&mock)).unwrap();
    let items = collect(&model).await;
    assert_eq!(texts(&items), "Pressure");
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(matches!(items[2], Err(LlmError::Upstream(_))), "{items:?}");
    assert_eq!(mock.request_count(), 1, "no retry after the first token");

    // The server reports an error event after a delta.
    let mock = MockLlm::start(vec![stream_of(
        vec![
            mock::chunk("Pres"),
            mock::error_event("the GPU fell over"),
            mock::chunk("never seen"),
        ],
        End::Done,
    )]);
    let model = OpenAiModel::new(&settings(&mock)).unwrap();
    let items = collect(&model).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0], Ok("Pres".into()));
    match &items[1] {
        Err(LlmError::Upstream(m)) => assert!(m.contains("the GPU fell over"), "{m}"),
        other => panic!("expected an upstream error, got {other:?}"),
    }
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test]
async fn a_stalled_first_token_times_out_after_the_retries() {
    // Headers and a role-only chunk, then nothing: no token ever comes.
    let mock = MockLlm::start(vec![stream_of(vec![mock::role_chunk()], End::Hang)]);
    let model = OpenAiModel::new(&settings(&mock)).unwrap();
    let items = collect(&model).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(matches!(items[0], Err(LlmError::Timeout(_))), "{items:?}");
    assert_eq!(
        mock.request_count(),
        3,
        "one request and max_retries = 2 retries"
    );
    // Each timed-out request's connection was closed, not left open.
    assert!(mock.client_gone_within(3, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn server_errors_before_the_first_token_are_retried_once_each() {
    let mock = MockLlm::start(vec![
        Reply::Status {
            code: 500,
            body: r#"{"error": {"message": "overloaded"}}"#.into(),
        },
        Reply::Status {
            code: 429,
            body: r#"{"error": {"message": "slow down"}}"#.into(),
        },
        mock::answer(&["Hello", " world"]),
    ]);
    let model = OpenAiModel::new(&settings(&mock)).unwrap();
    let items = collect(&model).await;
    assert!(items.iter().all(Result::is_ok), "{items:?}");
    assert_eq!(texts(&items), "Hello world", "complete, nothing twice");
    assert_eq!(mock.request_count(), 3);

    // Past max_retries the last error is the answer.
    let mock = MockLlm::start(vec![Reply::Status {
        code: 503,
        body: "upstream unavailable".into(),
    }]);
    let mut s = settings(&mock);
    s.max_retries = 1;
    let items = collect(&OpenAiModel::new(&s).unwrap()).await;
    match &items[..] {
        [Err(LlmError::Upstream(m))] => {
            assert!(
                m.contains("503") && m.contains("upstream unavailable"),
                "{m}"
            )
        }
        other => panic!("expected one upstream error, got {other:?}"),
    }
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let mock = MockLlm::start(vec![Reply::Status {
        code: 404,
        body:
            r#"{"error": {"message": "model `mock` not found", "type": "invalid_request_error"}}"#
                .into(),
    }]);
    let items = collect(&OpenAiModel::new(&settings(&mock)).unwrap()).await;
    match &items[..] {
        [Err(LlmError::Upstream(m))] => assert!(m.contains("model `mock` not found"), "{m}"),
        other => panic!("expected one upstream error, got {other:?}"),
    }
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test]
async fn a_malformed_chunk_is_an_error() {
    let mock = MockLlm::start(vec![stream_of(
        vec![
            mock::chunk("Hi"),
            "{\"choices\": [{\"delta\": {\"content\": ".into(),
        ],
        End::Done,
    )]);
    let items = collect(&OpenAiModel::new(&settings(&mock)).unwrap()).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0], Ok("Hi".into()));
    assert!(matches!(items[1], Err(LlmError::Malformed(_))), "{items:?}");

    // Before any token too, and it is not retried: the server means it.
    let mock = MockLlm::start(vec![stream_of(
        vec![r#"{"choices": [{"index": 0, "delta": {"content": 42}}]}"#.into()],
        End::Done,
    )]);
    let items = collect(&OpenAiModel::new(&settings(&mock)).unwrap()).await;
    assert!(
        matches!(items[..], [Err(LlmError::Malformed(_))]),
        "{items:?}"
    );
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test]
async fn dropping_the_stream_closes_the_connection() {
    let mock = MockLlm::start(vec![Reply::Stream {
        events: vec![mock::chunk("a"), mock::chunk("b")],
        gap: Duration::from_millis(20),
        end: End::Endless,
    }]);
    let model = OpenAiModel::new(&settings(&mock)).unwrap();
    let mut stream = model.stream(request()).await.unwrap();
    assert_eq!(stream.next().await, Some(Ok("a".into())));
    assert_eq!(stream.next().await, Some(Ok("b".into())));
    assert_eq!(mock.client_gone(), 0);
    drop(stream);
    assert!(
        mock.client_gone_within(1, Duration::from_secs(5)).await,
        "the server kept streaming to nobody"
    );
}

#[tokio::test]
async fn a_server_that_does_not_stream_still_answers() {
    // Some servers ignore `stream: true` and send one chat.completion.
    let body = serde_json::json!({
        "id": "x", "object": "chat.completion", "model": "mock",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Whole [1]."}, "finish_reason": "stop"}]
    })
    .to_string();
    let mock = MockLlm::start(vec![Reply::Status { code: 200, body }]);
    let items = collect(&OpenAiModel::new(&settings(&mock)).unwrap()).await;
    assert_eq!(items, vec![Ok("Whole [1].".into())]);
}

#[tokio::test]
async fn nothing_listening_is_retried_then_reported() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let s = LlmSettings {
        base_url: format!("http://127.0.0.1:{port}/v1/"),
        model: "mock".into(),
        api_key: String::new(),
        request_timeout_secs: 30,
        first_token_timeout_secs: 1,
        max_retries: 1,
        context_window: 4096,
    };
    let model = OpenAiModel::new(&s).unwrap();
    assert_eq!(
        model.url(),
        format!("http://127.0.0.1:{port}/v1/chat/completions")
    );
    let items = collect(&model).await;
    match &items[..] {
        [Err(LlmError::Upstream(m))] => assert!(m.contains("cannot reach"), "{m}"),
        other => panic!("expected one upstream error, got {other:?}"),
    }
}

#[test]
fn settings_are_checked() {
    let good = LlmSettings {
        base_url: "http://127.0.0.1:11434/v1".into(),
        model: "llama3".into(),
        ..LlmSettings::default()
    };
    assert!(OpenAiModel::new(&good).is_ok());
    for bad in [
        LlmSettings {
            base_url: "127.0.0.1:11434".into(),
            ..good.clone()
        },
        LlmSettings {
            base_url: "ftp://host/v1".into(),
            ..good.clone()
        },
        LlmSettings {
            model: " ".into(),
            ..good.clone()
        },
        LlmSettings {
            api_key: "line\nbreak".into(),
            ..good.clone()
        },
    ] {
        assert!(
            matches!(OpenAiModel::new(&bad), Err(LlmError::Unavailable(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn token_estimate_does_not_undercount_english() {
    assert_eq!(estimate_tokens(""), 0);
    // Short words: the word rule wins (4 words → 6).
    assert_eq!(estimate_tokens("a b c d"), 6);
    // Typical prose, ~4.7 characters per word plus spaces: chars / 3.
    let prose = "The pressure, density and temperature rise abruptly across a normal shock wave, while the Mach number falls below one.";
    let chars = prose.chars().count();
    let words = prose.split_whitespace().count();
    let n = estimate_tokens(prose);
    // GPT-style tokenizers spend ~chars/4 and ~words/0.75 on such text.
    assert!(
        n >= chars.div_ceil(4) && n >= (words * 4).div_ceil(3),
        "{n}"
    );
    assert_eq!(n, chars.div_ceil(3));
    // Non-ASCII characters count one each.
    assert_eq!(estimate_tokens("日本語"), 3);
}

fn read_all(pieces: &[&[u8]]) -> Vec<SseEvent> {
    let mut r = SseReader::default();
    let mut out = Vec::new();
    for p in pieces {
        out.extend(r.feed(p).unwrap());
    }
    out.extend(r.finish().unwrap());
    out
}

fn data(events: &[SseEvent]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
}

#[test]
fn sse_events_survive_any_split() {
    let text = ": keep-alive\r\n\r\ndata: {\"a\": \"é\"}\r\n\r\nevent: error\ndata: line 1\ndata:line 2\n\ndata: [DONE]\n\n";
    let whole = read_all(&[text.as_bytes()]);
    assert_eq!(data(&whole), ["{\"a\": \"é\"}", "line 1\nline 2", "[DONE]"]);
    assert_eq!(whole[1].event, "error");
    assert_eq!(whole[0].event, "");
    // Byte by byte, splitting the two-byte `é` and every CRLF.
    let bytes: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
    assert_eq!(read_all(&bytes), whole);
    // A last event without its blank line still counts.
    assert_eq!(data(&read_all(&[b"data: x\n\ndata: y"])), ["x", "y"]);
}

#[test]
fn sse_lines_are_bounded() {
    let mut r = SseReader::default();
    let big = vec![b'x'; MAX_LINE_BYTES + 1];
    assert!(matches!(r.feed(&big), Err(LlmError::Malformed(_))));
}

#[test]
fn chunks_are_read_leniently_but_not_blindly() {
    let ev = |data: &str| SseEvent {
        event: String::new(),
        data: data.into(),
    };
    // Servers omit or add members around the choices (here: no id, model or
    // created); a usage-only chunk has no choices.
    match decode(&ev(
        r#"{"choices":[{"index":0,"delta":{"content":"hi"},"x":1}]}"#,
    )) {
        Decoded::Delta { text, finished } => {
            assert_eq!((text.as_str(), finished), ("hi", false))
        }
        _ => panic!("delta expected"),
    }
    match decode(&ev(r#"{"choices":[],"usage":{"prompt_tokens":3}}"#)) {
        Decoded::Delta { text, .. } => assert_eq!(text, ""),
        _ => panic!("empty delta expected"),
    }
    match decode(&ev(
        r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
    )) {
        Decoded::Delta { finished, .. } => assert!(finished),
        _ => panic!("finish expected"),
    }
    for (data, want) in [
        (r#"{"error":"model not loaded"}"#, "model not loaded"),
        (
            r#"{"object":"error","message":"too long","code":400}"#,
            "too long",
        ),
    ] {
        match decode(&ev(data)) {
            Decoded::Error(LlmError::Upstream(m)) => assert_eq!(m, want),
            _ => panic!("upstream error expected for {data}"),
        }
    }
    // The choices themselves are OpenAI's types: an index and a delta.
    for data in [
        "not json",
        r#"{"choices":"x"}"#,
        "[1, 2]",
        r#"{"choices":[{"delta":{"content":"hi"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":7}}]}"#,
    ] {
        assert!(
            matches!(decode(&ev(data)), Decoded::Error(LlmError::Malformed(_))),
            "{data}"
        );
    }
}
