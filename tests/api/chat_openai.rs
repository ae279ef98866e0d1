//! Black-box test of the OpenAI-compatible backend: the real server, started
//! with `chat.backend = "openai"`, against a mock OpenAI-compatible server that
//! speaks the real wire format (see `helpers::openai_mock`). Checks what the
//! model is sent (numbered sources, the question) and what the client gets
//! (deltas, citations checked against the sources, errors mid-stream).

use std::time::Duration;

use crate::helpers::client::expect;
use crate::helpers::fixtures;
use crate::helpers::openai_mock::{self, End, MockLlm, Reply};
use crate::helpers::ws::{answer_frames, connect, make_public, send, Ws};
use crate::helpers::TestApp;
use serde_json::{json, Value};

const QUESTION: &str = "What happens to the pressure across a normal shock wave?";

fn stack(mock: &MockLlm) -> TestApp {
    let kb = fixtures().join("kb");
    let s = TestApp::start(
        &[("admin", true), ("ann", false)],
        &[("kb", kb.as_path())],
        &[
            ("RAGCHAT_CHAT_BACKEND", "openai"),
            ("RAGCHAT_LLM_BASE_URL", &mock.base_url),
            ("RAGCHAT_LLM_MODEL", "mock"),
            ("RAGCHAT_LLM_API_KEY", "sk-test"),
            ("RAGCHAT_LLM_FIRST_TOKEN_TIMEOUT_SECS", "10"),
        ],
    );
    make_public(&s, "kb");
    s
}

/// Frames of one answer, up to and including `done` or `error`.
fn ask(ws: &mut Ws, message: &str) -> Vec<Value> {
    send(
        ws,
        json!({"type": "ask", "conversation_id": null, "message": message}),
    );
    answer_frames(ws)
}

fn types(frames: &[Value]) -> Vec<&str> {
    frames.iter().filter_map(|f| f["type"].as_str()).collect()
}

fn text_of(frames: &[Value]) -> String {
    frames
        .iter()
        .filter(|f| f["type"] == "delta")
        .filter_map(|f| f["text"].as_str())
        .collect()
}

fn stored_answer(s: &TestApp, token: &str, conv: &str) -> Value {
    let msgs = expect(
        s.api.get(
            &format!("/api/v1/conversations/{conv}/messages"),
            Some(token),
        ),
        200,
        "messages",
    );
    let items = msgs["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{msgs}");
    items[1].clone()
}

#[test]
fn openai_backend_streams_checked_citations_and_reports_upstream_errors() {
    let mock = MockLlm::start(vec![
        // Cites a source that exists and one that does not, the bad marker
        // split across deltas.
        openai_mock::answer(&[
            "Pressure rises across a normal shock",
            " wave [1]",
            ", and entropy grows [9",
            "9].",
        ]),
        // Fails after the first words.
        Reply::Stream {
            events: vec![
                openai_mock::role_chunk(),
                openai_mock::chunk("The shock"),
                openai_mock::error_event("the model server ran out of memory"),
            ],
            gap: Duration::from_millis(5),
            end: End::Close,
        },
    ]);
    let s = stack(&mock);
    let (ann, _) = s.login("ann");
    let mut ws = connect(&s, &ann);

    let frames = ask(&mut ws, QUESTION);
    let t = types(&frames);
    assert_eq!(t[..2], ["conversation", "sources"], "{frames:?}");
    assert_eq!(*t.last().unwrap(), "done", "{frames:?}");
    assert!(t.len() >= 4, "at least one delta: {t:?}");
    assert!(t[2..t.len() - 1].iter().all(|x| *x == "delta"), "{t:?}");
    let text = text_of(&frames);
    assert!(
        text.starts_with("Pressure rises across a normal shock wave [1]"),
        "{text}"
    );
    assert!(text.contains("entropy grows"), "{text}");
    assert!(!text.contains("[9") && !text.contains("99"), "{text}");
    let done = frames.last().unwrap();
    assert_eq!(done["citations"], json!([1]), "{done}");
    assert_eq!(done["dropped_citations"], 1, "{done}");
    assert_eq!(done["model"], "mock", "{done}");
    assert_eq!(done["refused"], false, "{done}");
    assert!(
        done["usage"]["prompt_tokens"].as_u64().unwrap() > 0,
        "{done}"
    );
    assert!(
        done["usage"]["completion_tokens"].as_u64().unwrap() > 0,
        "{done}"
    );

    // What the model was sent: the numbered sources the client saw, and the question.
    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(r.body["model"], "mock");
    assert_eq!(r.body["stream"], true);
    assert!(r.body["max_tokens"].as_u64().unwrap() > 0, "{}", r.body);
    // The sources are data in the user's turn, not in the system message.
    let messages = r.body["messages"].as_array().expect("messages");
    assert_eq!(messages[0]["role"], "system");
    let system = messages[0]["content"].as_str().unwrap();
    let last = messages.last().unwrap();
    assert_eq!(last["role"], "user");
    let turn = last["content"].as_str().unwrap();
    assert!(turn.starts_with("<sources>\n"), "{turn}");
    assert!(
        turn.ends_with(&format!("</sources>\n\nQuestion: {QUESTION}")),
        "{turn}"
    );
    let sources = frames[1]["items"].as_array().unwrap();
    assert!(!sources.is_empty());
    for src in sources {
        let n = src["n"].as_u64().unwrap();
        let title = src["title"].as_str().unwrap();
        assert!(
            turn.contains(&format!("[{n}] {title}")),
            "[{n}] not in {turn}"
        );
        assert!(!system.contains(title), "title of [{n}] in {system}");
    }
    let stored = stored_answer(&s, &ann, frames[0]["id"].as_str().unwrap());
    assert_eq!(stored["content"], text.as_str());
    assert_eq!(stored["metadata"]["model"], "mock");

    // An error after the first token: the words so far, then an error frame;
    // not retried (the client already has the start of the answer).
    let frames = ask(&mut ws, QUESTION);
    let t = types(&frames);
    assert_eq!(t[..3], ["conversation", "sources", "delta"], "{frames:?}");
    let err = frames.last().unwrap();
    assert_eq!(err["type"], "error", "{frames:?}");
    assert_eq!(err["code"], "llm_upstream", "{err}");
    // The model server's own words stay in the server's log.
    assert!(
        !err["message"]
            .as_str()
            .unwrap()
            .contains("ran out of memory"),
        "{err}"
    );
    assert!(err["request_id"].is_string(), "{err}");
    assert_eq!(text_of(&frames), "The shock");
    assert_eq!(mock.request_count(), 2, "no retry after the first token");
    let stored = stored_answer(&s, &ann, frames[0]["id"].as_str().unwrap());
    assert_eq!(stored["content"], "The shock");
    assert_eq!(
        stored["metadata"]["error"]["code"], "llm_upstream",
        "{stored}"
    );
    assert!(
        !stored.to_string().contains("ran out of memory"),
        "{stored}"
    );
}
