//! The web app in a real browser: headless Chromium driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`; `scripts/test.sh` installs
//! them and sets `RAGCHAT_TEST_REQUIRE_BROWSER=1`, so CI fails rather than
//! skips without them). Each test signs in through the page and does what a
//! person would; the API is checked behind it where the page could lie.
//!
//! With `RAGCHAT_SCREENSHOTS=DIR` the tests also save a screenshot of each
//! screen there (`scripts/screenshots.sh` makes the ones in docs/images/).

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::client::{collection_id, expect, PASSWORD};
use crate::helpers::openai_mock::{self, End, MockLlm, Reply};
use crate::helpers::webdriver::{browser_required, find_browser, Browser, Element};
use crate::helpers::ws::make_public;
use crate::helpers::{repo_root, TestApp, TestDir};

/// Whether this machine can run the browser tests; without a browser they
/// are skipped with a note unless CI asked for them.
fn browser_available() -> bool {
    match find_browser() {
        Ok(_) => true,
        Err(why) if !browser_required() => {
            eprintln!("skipping a browser test: {why}");
            false
        }
        Err(why) => panic!("RAGCHAT_TEST_REQUIRE_BROWSER=1 but {why}"),
    }
}

fn guide() -> TestApp {
    let corpus = repo_root().join("corpus");
    let s = TestApp::start(
        &[("admin", true), ("ann", false)],
        &[("docs", corpus.as_path())],
        &[],
    );
    make_public(&s, "docs");
    s
}

fn sign_in(b: &Browser, s: &TestApp, user: &str) {
    b.goto(&s.server.url("/"));
    let name = b.testid("signin-username");
    b.clear(&name);
    b.type_text(&name, user);
    b.type_text(&b.testid("signin-password"), PASSWORD);
    b.click(&b.testid("signin-submit"));
    b.testid("signout");
}

/// The newest answer element and its state.
fn last_answer(b: &Browser) -> Option<(Element, String)> {
    let answer = b.all("[data-testid=\"answer\"]").pop()?;
    let state = b.attr(&answer, "data-state")?;
    Some((answer, state))
}

fn ask(b: &Browser, question: &str) {
    let input = b.testid("chat-input");
    b.clear(&input);
    b.type_text(&input, question);
    b.click(&b.testid("chat-send"));
}

fn wait_answer_state(b: &Browser, states: &[&str]) -> (Element, String) {
    b.wait_for(&format!("an answer in state {states:?}"), || {
        last_answer(b).filter(|(_, st)| states.contains(&st.as_str()))
    })
}

/// Content-Security-Policy violations and script errors the page logged.
fn page_errors(b: &Browser) -> Vec<String> {
    b.console()
        .into_iter()
        .filter(|l| {
            l.starts_with("SEVERE")
                && !l.contains("favicon")
                // A failed fetch is logged by the browser for every non-2xx
                // answer; the page shows those in words, which is the point.
                && !l.contains("the server responded with a status of")
        })
        .collect()
}

#[test]
fn sign_in_chat_with_citations_search_upload_and_administer() {
    if !browser_available() {
        return;
    }
    let s = guide();
    let b = Browser::start(1280, 900);

    b.goto(&s.server.url("/"));
    b.testid("signin-username");
    b.screenshot("web-signin");
    sign_in(&b, &s, "admin");

    // Chat: an answer from the guide, each claim citing a passage.
    b.click(&b.testid("nav-chat"));
    ask(
        &b,
        "How does reciprocal rank fusion combine the dense and lexical results?",
    );
    let (answer, _) = wait_answer_state(&b, &["done"]);
    let text = b.text(&answer);
    assert!(
        text.split_whitespace().count() >= 8,
        "a short answer: {text:?}"
    );
    let citations = b.all("[data-testid=\"citation\"]");
    assert!(!citations.is_empty(), "no clickable citation in {text:?}");
    b.screenshot("web-chat");

    // A citation opens its passage, with the question's words marked.
    b.click(&citations[0]);
    let panel = b.testid("source-panel");
    let marks = b.script(
        "return arguments[0].querySelectorAll('mark').length",
        vec![Browser::element_arg(&panel)],
    );
    assert!(
        marks.as_u64().unwrap_or(0) > 0,
        "no highlighted words in the passage"
    );
    assert!(!b.text(&panel).trim().is_empty());
    b.screenshot("web-source");

    // The conversation is stored, and the list shows it.
    let (admin, _) = s.login("admin");
    let convs = expect(
        s.api.get("/api/v1/conversations", Some(&admin)),
        200,
        "list",
    );
    assert_eq!(convs["items"].as_array().map(Vec::len), Some(1), "{convs}");
    assert!(!b.all("[data-testid=\"conversation-item\"]").is_empty());

    // Upload a file into a new collection and watch its job finish.
    let dir = TestDir::new();
    let file = dir.path().join("zanzibar-ferries.md");
    std::fs::write(
        &file,
        "# Zanzibar ferries\n\nThe quellwort ferry leaves Stone Town at seven every morning \
         and reaches Dar es Salaam two hours later. Tickets for the quellwort ferry are sold \
         at the harbour office.\n",
    )
    .expect("write the upload");
    let docs_id = collection_id(&s.api, &admin, "docs");
    b.goto(&s.server.url(&format!("/#/admin/documents/{docs_id}")));
    b.testid("upload-drop");
    let input = b.wait_for("the upload input", || {
        b.all("[data-testid=\"upload-input\"]").into_iter().next()
    });
    b.choose_file(&input, &file);
    let progress = b.wait_for("the upload job to succeed", || {
        b.all("[data-testid=\"job-progress\"]")
            .into_iter()
            .find(|p| b.attr(p, "data-state").as_deref() == Some("succeeded"))
    });
    assert!(b.displayed(&progress));
    b.script(
        "arguments[0].scrollIntoView({block: 'center'})",
        vec![Browser::element_arg(&progress)],
    );
    b.screenshot("web-upload");

    // The API agrees: one more document, and searching finds it.
    let docs = expect(
        s.api.get(
            &format!("/api/v1/collections/{docs_id}/documents?limit=100"),
            Some(&admin),
        ),
        200,
        "documents",
    );
    assert!(
        docs["items"].as_array().is_some_and(|d| d
            .iter()
            .any(|d| d["title"].as_str().unwrap_or("").contains("Zanzibar"))),
        "{docs}"
    );
    b.click(&b.testid("nav-search"));
    let q = b.testid("search-input");
    b.clear(&q);
    b.type_text(&q, "quellwort ferry");
    b.click(&b.testid("search-submit"));
    let hit = b.wait_for("a search result for the upload", || {
        b.all("[data-testid=\"search-result\"]")
            .into_iter()
            .next()
            .filter(|r| b.text(r).to_lowercase().contains("quellwort"))
    });
    assert!(b.text(&hit).contains("Zanzibar"), "{}", b.text(&hit));
    b.screenshot("web-search");
    // Convex fusion from the options: the summary names it and each signal
    // shows its normalised score.
    b.click(&b.find("[data-testid=\"search-fusion\"] option[value=\"convex\"]"));
    b.click(&b.testid("search-submit"));
    b.wait_for("results fused by convex combination", || {
        let summary = b.text(&b.testid("search-summary"));
        let first = b
            .all("[data-testid=\"search-result\"]")
            .into_iter()
            .next()?;
        (summary.contains("convex, alpha 0.5") && b.text(&first).contains("normalised"))
            .then_some(())
    });

    // The other admin screens render with their data.
    b.goto(&s.server.url("/#/admin/collections"));
    b.testid("collection-item");
    b.screenshot("web-admin-collections");
    b.goto(&s.server.url("/#/admin/users"));
    b.wait_for("the users list", || {
        b.text(&b.find("main")).contains("ann").then_some(())
    });
    b.screenshot("web-admin-users");
    b.goto(&s.server.url("/#/keys"));
    b.find("main");
    b.screenshot("web-keys");

    // At phone width the chat is still usable.
    b.resize(390, 844);
    b.goto(&s.server.url("/#/chat"));
    b.testid("chat-input");
    b.screenshot("web-chat-phone");

    let errors = page_errors(&b);
    assert!(errors.is_empty(), "the page logged errors: {errors:?}");

    // Signing out ends the session on the server too.
    b.resize(1280, 900);
    b.goto(&s.server.url("/#/chat"));
    b.click(&b.testid("signout"));
    b.testid("signin-username");
}

#[test]
fn a_user_does_not_see_the_admin_screens_and_the_api_refuses_them() {
    if !browser_available() {
        return;
    }
    let s = guide();
    let b = Browser::start(1280, 900);
    sign_in(&b, &s, "ann");
    b.testid("nav-chat");
    b.testid("nav-search");
    assert!(
        b.all("[data-testid=\"nav-admin\"]")
            .iter()
            .all(|e| !b.displayed(e)),
        "a user sees the admin navigation"
    );
    // Opening an admin screen by hand says why instead of showing nothing.
    b.goto(&s.server.url("/#/admin/users"));
    b.wait_for("a refusal in words", || {
        let text = b.text(&b.find("main")).to_lowercase();
        text.contains("admin").then_some(())
    });
    assert!(b.all("[data-testid=\"collection-item\"]").is_empty());
    // And the API refuses whatever the page shows.
    let (ann, _) = s.login("ann");
    for path in ["/api/v1/admin/users", "/api/v1/jobs"] {
        let r = s.api.get(path, Some(&ann));
        assert_eq!(r.0, 403, "{path}: {}", r.1);
    }
    let errors = page_errors(&b);
    assert!(errors.is_empty(), "the page logged errors: {errors:?}");
}

#[test]
fn answers_stream_in_and_stop_cancels_them() {
    if !browser_available() {
        return;
    }
    let words = [
        "Reciprocal ",
        "rank ",
        "fusion ",
        "adds ",
        "one ",
        "over ",
        "k ",
        "plus ",
        "the ",
        "rank ",
        "from ",
        "each ",
        "list [1]. ",
    ];
    let slow = |end| Reply::Stream {
        events: words.iter().map(|w| openai_mock::chunk(w)).collect(),
        gap: Duration::from_millis(150),
        end,
    };
    let mock = MockLlm::start(vec![slow(End::Done), slow(End::Endless)]);
    let corpus = repo_root().join("corpus");
    let s = TestApp::start(
        &[("admin", true)],
        &[("docs", corpus.as_path())],
        &[
            ("RAGCHAT_CHAT_BACKEND", "openai"),
            ("RAGCHAT_LLM_BASE_URL", &mock.base_url),
            ("RAGCHAT_LLM_MODEL", "mock"),
        ],
    );
    let b = Browser::start(1280, 900);
    sign_in(&b, &s, "admin");
    b.click(&b.testid("nav-chat"));

    // The text grows on the page while the answer is still streaming.
    ask(&b, "How does reciprocal rank fusion work?");
    let mut seen: Vec<String> = Vec::new();
    let (answer, _) = b.wait_for("the answer to finish", || {
        let (el, state) = last_answer(&b)?;
        let text = b.text(&el);
        if state == "streaming" && !text.trim().is_empty() && seen.last() != Some(&text) {
            seen.push(text);
        }
        (state == "done").then_some((el, state))
    });
    assert!(
        seen.len() >= 2,
        "the answer did not appear piece by piece: {seen:?}"
    );
    let text = b.text(&answer);
    assert!(text.contains("Reciprocal rank fusion adds one"), "{text}");
    assert!(!b.all("[data-testid=\"citation\"]").is_empty(), "{text}");

    // Stop: the answer ends as cancelled, and the model server sees the
    // connection close (it stops generating).
    ask(&b, "And what does k do?");
    b.wait_for("the second answer to start", || {
        last_answer(&b).filter(|(el, st)| st == "streaming" && !b.text(el).trim().is_empty())
    });
    b.click(&b.testid("chat-stop"));
    let (_, state) = wait_answer_state(&b, &["cancelled"]);
    assert_eq!(state, "cancelled");
    b.wait_for("the model server to see the client go", || {
        (mock.client_gone() >= 1).then_some(())
    });
    // Stored as cancelled, with the partial text.
    let (admin, _) = s.login("admin");
    let convs = expect(
        s.api.get("/api/v1/conversations", Some(&admin)),
        200,
        "list",
    );
    let conv = convs["items"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let msgs: Value = expect(
        s.api.get(
            &format!("/api/v1/conversations/{conv}/messages"),
            Some(&admin),
        ),
        200,
        "messages",
    );
    let last = msgs["items"]
        .as_array()
        .and_then(|m| m.last())
        .cloned()
        .unwrap_or(json!({}));
    assert_eq!(last["metadata"]["cancelled"], true, "{last}");
    let errors = page_errors(&b);
    assert!(errors.is_empty(), "the page logged errors: {errors:?}");
}
