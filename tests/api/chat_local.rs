//! Black-box tests of the local GGUF backend (`chat.backend = "local"`): the
//! real server generating with SmolLM2 through llama.cpp, over the WebSocket
//! and the OpenAI-compatible endpoint.
//!
//! They need the model from `scripts/setup-models.sh --with-llm`. Without it
//! they say so and pass, unless `RAGCHAT_TEST_REQUIRE_LLM=1` (set by
//! scripts/test.sh, which installs the model) makes a missing model a failure.

use std::collections::BTreeSet;

use crate::helpers;
use crate::helpers::client::expect;
use crate::helpers::fixtures;
use crate::helpers::ws::{answer_frames, connect, make_public, messages, send};
use crate::helpers::TestApp;
use serde_json::{json, Value};

const QUESTION: &str = "What happens to the pressure across a normal shock wave?";
const MODEL: &str = "SmolLM2-135M-Instruct.Q4_1";

fn installed() -> bool {
    let path = helpers::models_dir().join(format!("llm/{MODEL}.gguf"));
    if path.is_file() {
        return true;
    }
    let required = std::env::var("RAGCHAT_TEST_REQUIRE_LLM").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{} missing: run scripts/setup-models.sh --with-llm",
        path.display()
    );
    eprintln!("skipped: {} not installed", path.display());
    false
}

/// One generating server at a time: two would split the same cores and make
/// each answer (and the test's request timeout) a matter of machine load.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn stack() -> TestApp {
    let kb = fixtures().join("kb");
    let s = TestApp::start(
        &[("admin", true), ("ann", false)],
        &[("kb", kb.as_path())],
        &[
            ("RAGCHAT_CHAT_BACKEND", "local"),
            // Short answers over two sources keep the test quick; the
            // budget is still enforced.
            ("RAGCHAT_CHAT_ANSWER_RESERVE_TOKENS", "64"),
            ("RAGCHAT_CHAT_DEFAULT_TOP_K", "2"),
        ],
    );
    make_public(&s, "kb");
    s
}

fn text_of(frames: &[Value]) -> String {
    frames
        .iter()
        .filter(|f| f["type"] == "delta")
        .filter_map(|f| f["text"].as_str())
        .collect()
}

#[test]
fn local_model_streams_a_grounded_answer_and_is_persisted() {
    if !installed() {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = stack();
    let (ann, _) = s.login("ann");
    let mut ws = connect(&s, &ann);
    send(
        &mut ws,
        json!({"type": "ask", "conversation_id": null, "message": QUESTION}),
    );
    let frames = answer_frames(&mut ws);
    let types: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
    assert_eq!(types[..2], ["conversation", "sources"], "{frames:?}");
    assert_eq!(*types.last().unwrap(), "done", "{frames:?}");
    let deltas = types.iter().filter(|t| **t == "delta").count();
    assert!(deltas >= 2, "the answer streams token by token: {frames:?}");

    let done = frames.last().unwrap();
    assert_eq!(done["model"], MODEL, "{done}");
    assert_eq!(done["refused"], false);
    let usage = &done["usage"];
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!(completion >= 2, "{usage}");
    // The answer reserve bounds the answer (the counter re-tokenizes the
    // text, which can differ by a token or two from what was generated).
    assert!(completion <= 64 + 2, "{usage}");
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 100, "{usage}");

    // Whatever the small model cites must be a source it was shown.
    let shown: BTreeSet<u64> = frames[1]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["n"].as_u64().unwrap())
        .collect();
    let cited: BTreeSet<u64> = done["citations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert!(cited.is_subset(&shown), "{cited:?} ⊄ {shown:?}");

    let text = text_of(&frames);
    assert!(!text.trim().is_empty());
    assert!(
        !text.contains("<|im_end|>"),
        "stop tokens are not shown: {text}"
    );
    let conv = frames[0]["id"].as_str().unwrap();
    let msgs = messages(&s, &ann, conv);
    let answer = &msgs["items"][1];
    assert_eq!(answer["content"], text.as_str());
    assert_eq!(answer["metadata"]["model"], MODEL, "{answer}");

    // Greedy decoding: the same question over the same sources gives the
    // same answer.
    send(
        &mut ws,
        json!({"type": "ask", "conversation_id": null, "message": QUESTION}),
    );
    assert_eq!(text_of(&answer_frames(&mut ws)), text);
}

#[test]
fn local_model_answers_the_openai_compatible_endpoint_and_cancels() {
    if !installed() {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = stack();
    let (ann, _) = s.login("ann");
    let body = expect(
        s.api.post(
            "/v1/chat/completions",
            Some(&ann),
            Some(json!({"model": "ragchat", "messages": [{"role": "user", "content": QUESTION}]})),
        ),
        200,
        "completion",
    );
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!content.trim().is_empty(), "{body}");
    assert!(!body["sources"].as_array().unwrap().is_empty(), "{body}");

    // Cancel mid-answer; the one generation slot is freed, so the next
    // question is answered on the same connection.
    let mut ws = connect(&s, &ann);
    send(
        &mut ws,
        json!({"type": "ask", "conversation_id": null, "message": QUESTION}),
    );
    send(&mut ws, json!({"type": "cancel"}));
    let frames = answer_frames(&mut ws);
    assert_eq!(frames.last().unwrap()["cancelled"], true, "{frames:?}");
    send(
        &mut ws,
        json!({"type": "ask", "conversation_id": null, "message": QUESTION}),
    );
    let done = answer_frames(&mut ws).last().unwrap().clone();
    assert_eq!(done["type"], "done", "{done}");
    assert_eq!(done["cancelled"], false, "{done}");
}
