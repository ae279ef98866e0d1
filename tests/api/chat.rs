//! Black-box tests of chat: the WebSocket protocol (frame order, citations,
//! cancel, disconnect, one answer in flight, malformed frames, auth, other
//! users' conversations), refusal, persistence, and the SSE / JSON fallback.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::helpers::client::{create_api_key, expect};
use crate::helpers::fixtures;
use crate::helpers::ws::{answer_frames, connect, make_public, messages, next, send, ws_url};
use crate::helpers::TestApp;
use serde_json::{json, Value};
use tungstenite::Message;

const QUESTION: &str = "What happens to the pressure across a normal shock wave?";

fn stack() -> TestApp {
    let kb = fixtures().join("kb");
    let s = TestApp::start(
        &[("admin", true), ("ann", false), ("bob", false)],
        &[("kb", kb.as_path()), ("private", kb.as_path())],
        &[],
    );
    make_public(&s, "kb");
    s
}

fn ask(conversation: Option<&str>, message: &str) -> Value {
    json!({"type": "ask", "conversation_id": conversation, "message": message})
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

/// Every `[n]` marker in `text`.
fn markers(text: &str) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find('[') {
        rest = &rest[i + 1..];
        if let Some(j) = rest.find(']') {
            for part in rest[..j].split(',') {
                if let Ok(n) = part.trim().parse::<u64>() {
                    out.insert(n);
                }
            }
        }
    }
    out
}

#[test]
fn answer_streams_in_order_with_checked_citations_and_is_persisted() {
    let s = stack();
    let (ann, _) = s.login("ann");
    let mut ws = connect(&s, &ann);
    send(&mut ws, ask(None, QUESTION));
    let frames = answer_frames(&mut ws);
    let t = types(&frames);
    assert_eq!(t[0], "conversation", "{frames:?}");
    assert_eq!(t[1], "sources", "{frames:?}");
    assert!(t[2..t.len() - 1].iter().all(|x| *x == "delta"), "{t:?}");
    assert!(t.len() >= 4, "at least one delta: {t:?}");
    assert_eq!(*t.last().unwrap(), "done", "{frames:?}");

    let conv = frames[0]["id"].as_str().unwrap().to_string();
    assert!(frames[0]["title"]
        .as_str()
        .unwrap()
        .starts_with("What happens"));
    let sources = frames[1]["items"].as_array().unwrap();
    assert!(!sources.is_empty());
    let numbers: BTreeSet<u64> = sources.iter().map(|s| s["n"].as_u64().unwrap()).collect();
    for src in sources {
        assert_eq!(src["collection"], "kb", "only readable collections: {src}");
        for key in [
            "document_id",
            "chunk_id",
            "title",
            "snippet",
            "text",
            "score",
        ] {
            assert!(!src[key].is_null(), "{key} in {src}");
        }
    }
    let text = text_of(&frames);
    assert!(text.to_lowercase().contains("pressure"), "{text}");
    let cited = markers(&text);
    assert!(!cited.is_empty(), "the extractive answer cites: {text}");
    assert!(cited.is_subset(&numbers), "{cited:?} ⊄ {numbers:?}");
    let done = frames.last().unwrap();
    let done_citations: BTreeSet<u64> = done["citations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert_eq!(done_citations, cited, "done lists what the text cites");
    assert_eq!(done["refused"], false);
    assert_eq!(done["cancelled"], false);
    assert_eq!(done["dropped_citations"], 0);
    assert!(
        done["usage"]["prompt_tokens"].as_u64().unwrap() > 0,
        "{done}"
    );
    let timings = &done["timings"];
    let (r, f, total) = (
        timings["retrieval_ms"].as_f64().unwrap(),
        timings["first_token_ms"].as_f64().unwrap(),
        timings["total_ms"].as_f64().unwrap(),
    );
    assert!(r <= f && f <= total, "{timings}");

    // Both messages are stored, the answer with its sources and citations.
    let msgs = messages(&s, &ann, &conv);
    let items = msgs["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{msgs}");
    assert_eq!(items[0]["role"], "user");
    assert_eq!(items[0]["content"], QUESTION);
    assert_eq!(items[1]["role"], "assistant");
    assert_eq!(items[1]["content"], text.as_str());
    assert_eq!(items[1]["metadata"]["citations"], done["citations"]);
    assert_eq!(items[1]["id"], done["message_id"]);

    // A follow-up in the same conversation.
    send(
        &mut ws,
        ask(Some(&conv), "Are oblique shocks weaker than normal shocks?"),
    );
    let frames = answer_frames(&mut ws);
    assert_eq!(frames[0]["id"], conv.as_str());
    assert_eq!(*types(&frames).last().unwrap(), "done", "{frames:?}");
    let msgs = messages(&s, &ann, &conv);
    assert_eq!(msgs["items"].as_array().unwrap().len(), 4);
}

#[test]
fn unrelated_questions_are_refused_without_the_model() {
    let s = stack();
    let (ann, _) = s.login("ann");
    let mut ws = connect(&s, &ann);
    send(
        &mut ws,
        ask(None, "What is a good recipe for banana bread with walnuts?"),
    );
    let frames = answer_frames(&mut ws);
    assert_eq!(types(&frames)[..2], ["conversation", "sources"]);
    assert_eq!(frames[1]["items"], json!([]));
    let done = frames.last().unwrap();
    assert_eq!(done["type"], "done", "{frames:?}");
    assert_eq!(done["refused"], true);
    assert_eq!(done["model"], "none");
    assert!(text_of(&frames).contains("does not cover"), "{frames:?}");
    assert!(done["timings"]["first_token_ms"].is_null());

    // The answer and the refusal are counted.
    send(&mut ws, ask(None, QUESTION));
    assert_eq!(answer_frames(&mut ws).last().unwrap()["refused"], false);
    let metrics = reqwest::blocking::get(s.server.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    for line in [
        "ragchat_chat_answers_total 2",
        "ragchat_chat_refusals_total 1",
        "ragchat_chat_retrieval_seconds_count 2",
        "ragchat_chat_first_token_seconds_count 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}

#[test]
fn one_answer_in_flight_cancel_and_malformed_frames() {
    let s = stack();
    let (ann, _) = s.login("ann");
    let mut ws = connect(&s, &ann);

    // Malformed frames get an error frame; the connection stays usable.
    for bad in [
        "not json".to_string(),
        json!({"type": "shout"}).to_string(),
        json!({"type": "ask"}).to_string(),
        json!({"type": "ask", "message": "x", "extra": 1}).to_string(),
    ] {
        ws.send(Message::text(bad.clone())).unwrap();
        let f = next(&mut ws);
        assert_eq!(f["type"], "error", "{bad}: {f}");
        assert_eq!(f["code"], "invalid_frame", "{bad}: {f}");
    }
    ws.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    assert_eq!(next(&mut ws)["code"], "invalid_frame");
    send(&mut ws, json!({"type": "cancel"}));
    assert_eq!(next(&mut ws)["code"], "nothing_to_cancel");
    send(&mut ws, ask(None, ""));
    let f = next(&mut ws);
    assert_eq!(
        (f["type"].as_str(), f["code"].as_str()),
        (Some("error"), Some("invalid_field"))
    );

    // A second ask while one is in flight is refused; the first completes.
    send(&mut ws, ask(None, QUESTION));
    send(&mut ws, ask(None, QUESTION));
    let mut frames = Vec::new();
    let mut busy = 0;
    loop {
        let f = next(&mut ws);
        if f["type"] == "error" && f["code"] == "busy" {
            busy += 1;
            continue;
        }
        let end = f["type"] == "done";
        frames.push(f);
        if end {
            break;
        }
    }
    assert_eq!(busy, 1, "{frames:?}");
    assert_eq!(types(&frames)[..2], ["conversation", "sources"]);

    // Cancel right after asking: the answer ends, marked cancelled, and the
    // connection takes the next question.
    send(&mut ws, ask(None, QUESTION));
    send(&mut ws, json!({"type": "cancel"}));
    let frames = answer_frames(&mut ws);
    let done = frames.last().unwrap();
    assert_eq!(done["type"], "done", "{frames:?}");
    assert_eq!(done["cancelled"], true, "{done}");
    let conv = frames[0]["id"].as_str().unwrap();
    let msgs = messages(&s, &ann, conv);
    assert_eq!(msgs["items"][1]["metadata"]["cancelled"], true, "{msgs}");
    send(&mut ws, ask(None, QUESTION));
    assert_eq!(answer_frames(&mut ws).last().unwrap()["type"], "done");
}

#[test]
fn auth_access_and_other_users_conversations() {
    let s = stack();
    let (ann, _) = s.login("ann");
    let (bob, _) = s.login("bob");

    // No token, a bad token, a key without the chat scope: refused at upgrade.
    let url = ws_url(&s);
    for (what, u) in [
        ("no token", url.clone()),
        ("bad token", format!("{url}?token=garbage")),
    ] {
        match tungstenite::connect(u) {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401, "{what}"),
            other => panic!("{what}: expected 401, got {:?}", other.map(|_| ())),
        }
    }
    let (_, key) = create_api_key(&s.api, &ann, "q", &["query"]);
    match tungstenite::connect(format!("{url}?token={key}")) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    // `?token=` works for browsers, with a JWT or a chat key.
    let (_, chat_key) = create_api_key(&s.api, &ann, "c", &["chat"]);
    for token in [ann.as_str(), chat_key.as_str()] {
        let (mut ws, _) = tungstenite::connect(format!("{url}?token={token}")).expect("connect");
        send(&mut ws, ask(None, QUESTION));
        assert_eq!(answer_frames(&mut ws).last().unwrap()["type"], "done");
    }

    // Ann's conversation does not exist for Bob.
    let mut ws = connect(&s, &ann);
    send(&mut ws, ask(None, QUESTION));
    let conv = answer_frames(&mut ws)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut bws = connect(&s, &bob);
    send(&mut bws, ask(Some(&conv), "Tell me what Ann asked"));
    let f = next(&mut bws);
    assert_eq!(
        (f["type"].as_str(), f["code"].as_str()),
        (Some("error"), Some("conversation_not_found"))
    );
    let msgs = messages(&s, &ann, &conv);
    assert_eq!(
        msgs["items"].as_array().unwrap().len(),
        2,
        "nothing added: {msgs}"
    );

    // A collection Ann may not read is as missing as one that does not exist.
    send(
        &mut ws,
        json!({"type": "ask", "message": QUESTION, "collections": ["private"]}),
    );
    let frames = answer_frames(&mut ws);
    let last = frames.last().unwrap();
    assert_eq!(
        (last["type"].as_str(), last["code"].as_str()),
        (Some("error"), Some("collection_not_found")),
        "{frames:?}"
    );
}

#[test]
fn a_client_that_disconnects_does_not_hurt_the_server() {
    let s = stack();
    let (ann, _) = s.login("ann");
    let mut ws = connect(&s, &ann);
    send(&mut ws, ask(None, QUESTION));
    let conv = next(&mut ws)["id"].as_str().unwrap().to_string();
    drop(ws);
    // The answer stops (or had finished); both messages are kept either way.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let msgs = messages(&s, &ann, &conv);
        if msgs["items"].as_array().unwrap().len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "assistant message never saved: {msgs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut ws = connect(&s, &ann);
    send(&mut ws, ask(None, QUESTION));
    assert_eq!(answer_frames(&mut ws).last().unwrap()["type"], "done");
}

#[test]
fn messages_endpoint_streams_sse_or_answers_json() {
    let s = stack();
    let (ann, _) = s.login("ann");
    let (bob, _) = s.login("bob");
    let conv = expect(
        s.api
            .post("/api/v1/conversations", Some(&ann), Some(json!({}))),
        201,
        "create conversation",
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let url = s
        .server
        .url(&format!("/api/v1/conversations/{conv}/messages"));
    let client = reqwest::blocking::Client::new();

    let resp = client
        .post(&url)
        .bearer_auth(&ann)
        .header("accept", "text/event-stream")
        .json(&json!({"message": QUESTION}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let body = resp.text().unwrap();
    let events: Vec<(String, Value)> = body
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).expect("JSON data");
                }
            }
            assert_eq!(data["type"], name.as_str(), "{block}");
            (name, data)
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..2], ["conversation", "sources"], "{names:?}");
    assert_eq!(*names.last().unwrap(), "done", "{names:?}");
    assert_eq!(events[0].1["id"], conv.as_str());

    let resp = client
        .post(&url)
        .bearer_auth(&ann)
        .json(&json!({"message": QUESTION}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().unwrap();
    assert_eq!(v["conversation_id"], conv.as_str());
    let cited = markers(v["answer"].as_str().unwrap());
    let numbers: BTreeSet<u64> = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["n"].as_u64().unwrap())
        .collect();
    assert!(!cited.is_empty() && cited.is_subset(&numbers), "{v}");
    assert_eq!(v["refused"], false);

    // Someone else's conversation: 404, and nothing is added to it.
    let resp = client
        .post(&url)
        .bearer_auth(&bob)
        .json(&json!({"message": QUESTION}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404);
    let msgs = messages(&s, &ann, &conv);
    assert_eq!(msgs["items"].as_array().unwrap().len(), 4);
}

#[test]
fn openai_compatible_endpoint_answers_with_sources() {
    let s = stack();
    let (ann, _) = s.login("ann");
    let url = s.server.url("/v1/chat/completions");
    let client = reqwest::blocking::Client::new();
    let body = json!({
        "model": "ragchat",
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "Tell me about flows."},
            {"role": "assistant", "content": "Which flows?"},
            {"role": "user", "content": QUESTION},
        ],
    });

    let resp = client.post(&url).json(&body).send().unwrap();
    assert_eq!(resp.status(), 401, "a token is needed");

    let v: Value = client
        .post(&url)
        .bearer_auth(&ann)
        .json(&body)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    let numbers: BTreeSet<u64> = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["n"].as_u64().unwrap())
        .collect();
    let cited = markers(content);
    assert!(!cited.is_empty() && cited.is_subset(&numbers), "{v}");
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0, "{v}");
    // Stateless: nothing was stored as a conversation.
    let convs = expect(s.api.get("/api/v1/conversations", Some(&ann)), 200, "list");
    assert_eq!(convs["items"], json!([]));

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let text = client
        .post(&url)
        .bearer_auth(&ann)
        .json(&streamed)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let datas: Vec<&str> = text
        .split("\n\n")
        .filter_map(|b| b.trim().strip_prefix("data: "))
        .collect();
    assert_eq!(*datas.last().unwrap(), "[DONE]", "{text}");
    let chunks: Vec<Value> = datas[..datas.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("chunk JSON"))
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks[0]["sources"]
        .as_array()
        .is_some_and(|s| !s.is_empty()));
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(joined, content, "streamed and whole answers agree");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    for bad in [
        json!({"messages": []}),
        json!({"messages": [{"role": "assistant", "content": "hi"}]}),
        json!({"messages": [{"role": "user", "content": ""}]}),
    ] {
        let resp = client
            .post(&url)
            .bearer_auth(&ann)
            .json(&bad)
            .send()
            .unwrap();
        assert_eq!(resp.status(), 422, "{bad}");
    }
}

#[test]
fn a_follow_up_is_understood_through_the_previous_question() {
    let s = stack();
    let (ann, _) = s.login("ann");
    let mut ws = connect(&s, &ann);
    let follow_up = "How does it change further along?";

    // Alone, the follow-up means nothing: refused.
    send(&mut ws, ask(None, follow_up));
    let alone = answer_frames(&mut ws);
    assert_eq!(alone.last().unwrap()["refused"], true, "{alone:?}");

    // After the question it follows, it is answered from the right passage.
    send(&mut ws, ask(None, "What is a boundary layer?"));
    let first = answer_frames(&mut ws);
    let conv = first[0]["id"].as_str().unwrap().to_string();
    assert_eq!(first.last().unwrap()["refused"], false, "{first:?}");
    send(&mut ws, ask(Some(&conv), follow_up));
    let frames = answer_frames(&mut ws);
    let done = frames.last().unwrap();
    assert_eq!(done["type"], "done", "{frames:?}");
    assert_eq!(done["refused"], false, "{frames:?}");
    let text = text_of(&frames).to_lowercase();
    assert!(
        text.contains("thickness") || text.contains("boundary layer"),
        "{text}"
    );
    let sources = frames[1]["items"].as_array().unwrap();
    let cited: Vec<&Value> = sources
        .iter()
        .filter(|s| markers(&text).contains(&s["n"].as_u64().unwrap()))
        .collect();
    assert!(
        !cited.is_empty() && cited.iter().all(|s| s["source"] == "boundary-layers.md"),
        "{cited:?}"
    );
}
