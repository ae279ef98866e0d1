//! Prompt assembly under the model's token budget.
//!
//! Priority when space is short: the rules and the question are required; then
//! the sources (the answer must come from them); then history, most recent
//! first. So sources are trimmed only once no history is left, and from the
//! lowest-ranked source first.
//!
//! Every message is counted on its own with the model's counter, plus
//! [`MESSAGE_OVERHEAD`] for the chat template's framing; that mirrors how a
//! chat template tokenizes messages (special tokens between them), so the sum
//! is what the model sees.

use crate::llm::{ChatMessage, ChatModel, ChatRequest, Role, Source};

/// The default system rules. The sources are appended after them.
pub const DEFAULT_SYSTEM_RULES: &str = "\
You answer questions from a knowledge base, using only the numbered sources below.
- Use only what the sources state. Do not invent facts, numbers, names or sources, and do not add outside knowledge.
- Cite every claim with the number of the source it comes from in square brackets, like [1] or [2, 3].
- If the sources do not contain the answer, say plainly that the knowledge base does not cover it.
- Earlier messages of the conversation are context for the question; facts still come only from the sources.";

/// Tokens a chat template adds around each message (role header, start and
/// end markers). ChatML spends about 5, OpenAI's format 3 to 4; rounding up
/// keeps the estimate on the safe side.
pub const MESSAGE_OVERHEAD: usize = 6;

/// Tokens of the assistant header that primes the reply.
pub const REPLY_OVERHEAD: usize = 3;

/// A source trimmed to fewer words than this is dropped instead: a stub
/// invites citations it cannot support.
pub const MIN_SOURCE_WORDS: usize = 8;

/// Appended to a trimmed source so the model knows the text goes on.
const TRIM_MARK: &str = " …";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    #[error("an answer reserve of {answer_reserve} tokens leaves no room for a prompt in a {context_window}-token context window")]
    ReserveTooLarge {
        context_window: usize,
        answer_reserve: usize,
    },
    #[error("the question is too long: it needs {required} tokens with the system rules, the model has room for {budget}")]
    QuestionTooLong { required: usize, budget: usize },
}

impl PromptError {
    /// Stable machine-readable name for error frames.
    pub fn code(&self) -> &'static str {
        match self {
            PromptError::ReserveTooLarge { .. } => "prompt_budget",
            PromptError::QuestionTooLong { .. } => "question_too_long",
        }
    }
}

/// The messages to send and how they were fitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// System (rules and sources), the history that fitted, the question.
    pub messages: Vec<ChatMessage>,
    /// The sources as sent, ascending `n`: texts possibly trimmed, the
    /// lowest-ranked possibly left out. Only these numbers are valid citations.
    pub sources: Vec<Source>,
    pub question: String,
    /// Tokens of `messages` including template overheads.
    pub prompt_tokens: usize,
    /// Context window minus the answer reserve; `prompt_tokens <= budget`.
    pub budget: usize,
    pub answer_reserve: usize,
    /// History messages included / left out (oldest are left out first).
    pub history_kept: usize,
    pub history_dropped: usize,
    /// Sources whose text was shortened / left out entirely.
    pub sources_trimmed: usize,
    pub sources_dropped: usize,
}

impl Prompt {
    /// The numbers the answer may cite (for `CitationFilter::new`).
    pub fn source_numbers(&self) -> Vec<usize> {
        self.sources.iter().map(|s| s.n).collect()
    }

    /// The request for the model; the answer may use the reserved tokens.
    pub fn into_request(self) -> ChatRequest {
        ChatRequest {
            messages: self.messages,
            sources: self.sources,
            question: self.question,
            max_tokens: self.answer_reserve,
        }
    }
}

/// [`build_prompt`] with the model's own counter and context window.
pub fn build_prompt_for(
    model: &dyn ChatModel,
    rules: &str,
    sources: &[Source],
    history: &[ChatMessage],
    question: &str,
    answer_reserve: usize,
) -> Result<Prompt, PromptError> {
    build_prompt(
        rules,
        sources,
        history,
        question,
        &|text: &str| model.count_tokens(text),
        model.context_window(),
        answer_reserve,
    )
}

/// Fit rules, sources, history (oldest first, without the current question)
/// and the question into `context_window - answer_reserve` tokens as counted
/// by `count`.
pub fn build_prompt(
    rules: &str,
    sources: &[Source],
    history: &[ChatMessage],
    question: &str,
    count: &dyn Fn(&str) -> usize,
    context_window: usize,
    answer_reserve: usize,
) -> Result<Prompt, PromptError> {
    let budget = context_window
        .checked_sub(answer_reserve)
        .filter(|&b| b > 0)
        .ok_or(PromptError::ReserveTooLarge {
            context_window,
            answer_reserve,
        })?;
    let question_tokens = count(question) + MESSAGE_OVERHEAD;
    let fixed = question_tokens + REPLY_OVERHEAD;
    let system_tokens =
        |sources: &[Source]| count(&system_content(rules, sources)) + MESSAGE_OVERHEAD;

    let required = system_tokens(&[]) + fixed;
    if required > budget {
        return Err(PromptError::QuestionTooLong { required, budget });
    }

    let mut sent: Vec<Source> = sources.to_vec();
    sent.sort_by_key(|s| s.n);
    let mut sources_trimmed = 0;
    let mut sources_dropped = 0;
    let mut system = system_tokens(&sent);
    while system + fixed > budget {
        // Cannot be empty here: with no sources the prompt fitted above.
        let Some(last) = sent.pop() else { break };
        if let Some(trimmed) = trim_to_fit(&last, &sent, budget - fixed, &system_tokens) {
            sent.push(trimmed);
            sources_trimmed += 1;
        } else {
            sources_dropped += 1;
        }
        system = system_tokens(&sent);
    }

    let room = budget - system - fixed;
    let kept_from = fit_history(history, room, count);
    let kept = &history[kept_from..];
    let history_tokens: usize = kept
        .iter()
        .map(|m| count(&m.content) + MESSAGE_OVERHEAD)
        .sum();

    let mut messages = Vec::with_capacity(kept.len() + 2);
    messages.push(ChatMessage::system(system_content(rules, &sent)));
    messages.extend(kept.iter().cloned());
    messages.push(ChatMessage::user(question));
    Ok(Prompt {
        messages,
        sources: sent,
        question: question.to_string(),
        prompt_tokens: system + history_tokens + fixed,
        budget,
        answer_reserve,
        history_kept: kept.len(),
        history_dropped: kept_from,
        sources_trimmed,
        sources_dropped,
    })
}

fn system_content(rules: &str, sources: &[Source]) -> String {
    let mut s = rules.trim_end().to_string();
    if sources.is_empty() {
        s.push_str("\n\nSources: none were found for this question.");
        return s;
    }
    s.push_str("\n\nSources:");
    for src in sources {
        s.push_str(&format!("\n\n[{}]", src.n));
        let title = src.title.trim();
        if !title.is_empty() {
            s.push(' ');
            s.push_str(title);
        }
        s.push('\n');
        s.push_str(src.text.trim());
    }
    s
}

/// The longest word-prefix of `source` that, appended to `before`, keeps the
/// system message within `limit`; `None` if fewer than `MIN_SOURCE_WORDS`
/// words (or all of a shorter text) would fit.
fn trim_to_fit(
    source: &Source,
    before: &[Source],
    limit: usize,
    system_tokens: &dyn Fn(&[Source]) -> usize,
) -> Option<Source> {
    let text = source.text.trim();
    let ends = word_ends(text);
    let minimum = MIN_SOURCE_WORDS.min(ends.len()).max(1);
    let mut candidate = before.to_vec();
    candidate.push(source.clone());
    let mut fits = |words: usize| -> bool {
        let mut t = text[..ends[words - 1]].to_string();
        t.push_str(TRIM_MARK);
        if let Some(last) = candidate.last_mut() {
            last.text = t;
        }
        system_tokens(&candidate) <= limit
    };
    // Whole text never fits here (the caller tried it), so search below it.
    let (mut lo, mut hi) = (minimum, ends.len().saturating_sub(1));
    if hi < lo || !fits(lo) {
        return None;
    }
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let mut trimmed = source.clone();
    trimmed.text = format!("{}{TRIM_MARK}", &text[..ends[lo - 1]]);
    Some(trimmed)
}

/// Byte offsets just past each whitespace-separated word.
fn word_ends(text: &str) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_word {
                ends.push(i);
            }
            in_word = false;
        } else {
            in_word = true;
        }
    }
    if in_word {
        ends.push(text.len());
    }
    ends
}

/// Index of the oldest history message to keep. History is taken in whole
/// turns (a user message with the replies after it) from the newest back, and
/// stops at the first turn that does not fit, so what is kept is one unbroken
/// recent stretch that starts with the user's side.
fn fit_history(history: &[ChatMessage], room: usize, count: &dyn Fn(&str) -> usize) -> usize {
    let mut used = 0;
    let mut kept_from = history.len();
    let mut end = history.len();
    while end > 0 {
        // A turn starts at a user message; leading non-user messages (a
        // greeting, a stored summary) form a turn of their own.
        let start = history[..end]
            .iter()
            .rposition(|m| m.role == Role::User)
            .unwrap_or(0);
        let cost: usize = history[start..end]
            .iter()
            .map(|m| count(&m.content) + MESSAGE_OVERHEAD)
            .sum();
        if used + cost > room {
            break;
        }
        used += cost;
        kept_from = start;
        end = start;
    }
    kept_from
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> usize {
        text.split_whitespace().count()
    }

    /// A counter that is not additive over words, as real tokenizers are not.
    fn chars_over_four(text: &str) -> usize {
        text.chars().count().div_ceil(4)
    }

    fn source(n: usize, words: usize) -> Source {
        let text: Vec<String> = (0..words).map(|i| format!("s{n}w{i}")).collect();
        Source {
            n,
            chunk_id: format!("c{n}"),
            document_id: format!("d{n}"),
            title: format!("Title {n}"),
            text: text.join(" "),
            score: 1.0 / n as f32,
        }
    }

    /// Deterministic pseudo-random lengths so turns differ in size.
    fn conversation(turns: usize, seed: u64) -> Vec<ChatMessage> {
        let mut state = seed;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        let mut out = Vec::new();
        for t in 0..turns {
            let u = 5 + next() % 150;
            let a = 20 + next() % 600;
            out.push(ChatMessage::user(format!(
                "turn{t}user {}",
                "ask ".repeat(u)
            )));
            out.push(ChatMessage::assistant(format!(
                "turn{t}assistant {}",
                "reply [1] ".repeat(a / 2)
            )));
        }
        out
    }

    fn recount(p: &Prompt, count: &dyn Fn(&str) -> usize) -> usize {
        p.messages
            .iter()
            .map(|m| count(&m.content) + MESSAGE_OVERHEAD)
            .sum::<usize>()
            + REPLY_OVERHEAD
    }

    fn check_shape(p: &Prompt, history: &[ChatMessage], question: &str) {
        assert_eq!(p.messages[0].role, Role::System);
        assert_eq!(p.messages.last(), Some(&ChatMessage::user(question)));
        let kept = &p.messages[1..p.messages.len() - 1];
        assert_eq!(kept.len(), p.history_kept);
        assert_eq!(p.history_kept + p.history_dropped, history.len());
        // An unbroken recent stretch that begins with a user message.
        assert_eq!(kept, &history[p.history_dropped..]);
        if let Some(first) = kept.first() {
            assert_eq!(first.role, Role::User);
        }
    }

    #[test]
    fn long_conversation_never_exceeds_the_budget() {
        let question = "What did the second source say about the thing we discussed?";
        type Counter<'a> = &'a dyn Fn(&str) -> usize;
        let counters: [(&str, Counter); 2] = [("words", &words), ("chars/4", &chars_over_four)];
        for seed in [1, 7, 42] {
            let history = conversation(200, seed);
            let sources: Vec<Source> = (1..=5).map(|n| source(n, 150 + 40 * n)).collect();
            for (name, count) in counters {
                for window in [300, 512, 777, 1024, 2048, 4096, 8192, 32768, 200_000] {
                    for reserve in [32, 128, 256] {
                        if reserve >= window {
                            continue;
                        }
                        let ctx = format!("{name} seed {seed} window {window} reserve {reserve}");
                        let result = build_prompt(
                            DEFAULT_SYSTEM_RULES,
                            &sources,
                            &history,
                            question,
                            count,
                            window,
                            reserve,
                        );
                        let p = match result {
                            Ok(p) => p,
                            Err(PromptError::QuestionTooLong { required, budget }) => {
                                assert!(required > budget, "{ctx}");
                                assert!(window <= 300, "{ctx}: only the tiny window may refuse");
                                continue;
                            }
                            Err(e) => panic!("{ctx}: {e}"),
                        };
                        assert_eq!(p.budget, window - reserve, "{ctx}");
                        assert_eq!(recount(&p, count), p.prompt_tokens, "{ctx}");
                        assert!(p.prompt_tokens <= p.budget, "{ctx}: {}", p.prompt_tokens);
                        check_shape(&p, &history, question);
                        // Sources give way only when history is gone.
                        if p.sources_trimmed + p.sources_dropped > 0 {
                            assert_eq!(p.history_kept, 0, "{ctx}");
                        }
                        assert_eq!(p.sources.len() + p.sources_dropped, sources.len(), "{ctx}");
                    }
                }
            }
            // The largest window holds everything.
            let p = build_prompt(
                DEFAULT_SYSTEM_RULES,
                &sources,
                &history,
                question,
                &words,
                1_000_000,
                1000,
            )
            .unwrap();
            assert_eq!(p.history_dropped, 0);
            assert_eq!(p.sources, sources);
        }
    }

    #[test]
    fn budget_holds_with_the_real_tokenizer() {
        let tokenizer = crate::ingest::chunk::tests::test_tokenizer();
        let count = |t: &str| {
            tokenizer
                .encode(t, false)
                .map(|e| e.get_ids().len())
                .unwrap_or(usize::MAX / 4)
        };
        let history = conversation(200, 3);
        let sources: Vec<Source> = (1..=5).map(|n| source(n, 300)).collect();
        for window in [512, 2048, 8192] {
            let p = build_prompt(
                DEFAULT_SYSTEM_RULES,
                &sources,
                &history,
                "Which sources mention s3w7?",
                &count,
                window,
                256,
            )
            .unwrap();
            assert_eq!(recount(&p, &count), p.prompt_tokens);
            assert!(p.prompt_tokens <= p.budget, "window {window}");
        }
    }

    #[test]
    fn recent_turns_are_preferred() {
        let history: Vec<ChatMessage> = (0..10)
            .flat_map(|t| {
                [
                    ChatMessage::user(format!("question {t} a b c d")),
                    ChatMessage::assistant(format!("answer {t} e f g h")),
                ]
            })
            .collect();
        let sources = vec![source(1, 10)];
        let base = build_prompt("rules", &sources, &[], "q", &words, 10_000, 100).unwrap();
        // Room for exactly three turns of (6 + 6 overhead) tokens each side.
        let turn = 2 * (6 + MESSAGE_OVERHEAD);
        let window = base.prompt_tokens + 3 * turn + 100;
        let p = build_prompt("rules", &sources, &history, "q", &words, window, 100).unwrap();
        assert_eq!(p.history_kept, 6);
        assert_eq!(p.history_dropped, 14);
        assert_eq!(p.messages[1].content, "question 7 a b c d");
        assert_eq!(p.messages[6].content, "answer 9 e f g h");
        assert_eq!(p.prompt_tokens, p.budget);

        // One token less and the oldest of the three turns goes, as a whole.
        let p = build_prompt("rules", &sources, &history, "q", &words, window - 1, 100).unwrap();
        assert_eq!(p.history_kept, 4);
        assert_eq!(p.messages[1].content, "question 8 a b c d");
    }

    #[test]
    fn user_and_reply_stay_together() {
        let history = vec![
            ChatMessage::user("old question"),
            ChatMessage::assistant("old answer"),
            ChatMessage::user("a very long question ".repeat(50)),
            ChatMessage::assistant("short"),
        ];
        let base = build_prompt("rules", &[], &[], "q", &words, 10_000, 10).unwrap();
        // Room for the last assistant message alone, not for its question.
        let window = base.prompt_tokens + 1 + MESSAGE_OVERHEAD + 10;
        let p = build_prompt("rules", &[], &history, "q", &words, window, 10).unwrap();
        assert_eq!(
            p.history_kept, 0,
            "a reply must not appear without its question"
        );
        assert_eq!(p.history_dropped, 4);
        // Nor may an older turn jump the gap.
        let window = base.prompt_tokens + 4 + 2 * MESSAGE_OVERHEAD + 10;
        let p = build_prompt("rules", &[], &history, "q", &words, window, 10).unwrap();
        assert_eq!(p.history_kept, 0);
    }

    #[test]
    fn leading_non_user_messages_form_their_own_turn() {
        let history = vec![
            ChatMessage::assistant("Hello, ask me anything."),
            ChatMessage::user("first"),
            ChatMessage::assistant("reply"),
            ChatMessage::user("unanswered"),
        ];
        let p = build_prompt("rules", &[], &history, "q", &words, 10_000, 10).unwrap();
        assert_eq!(p.history_kept, 4);
        let base = build_prompt("rules", &[], &[], "q", &words, 10_000, 10).unwrap();
        let window = base.prompt_tokens + 3 + 3 * MESSAGE_OVERHEAD + 10;
        let p = build_prompt("rules", &[], &history, "q", &words, window, 10).unwrap();
        assert_eq!(p.history_kept, 3);
        assert_eq!(p.messages[1].content, "first");
    }

    #[test]
    fn sources_are_trimmed_lowest_ranked_first_and_the_question_survives() {
        let sources: Vec<Source> = (1..=3).map(|n| source(n, 200)).collect();
        let history = conversation(5, 9);
        let question = "the question itself must always be sent intact";
        let full = build_prompt("rules", &sources, &[], question, &words, 100_000, 10).unwrap();

        // 100 words short: only source 3 is cut, and history is gone first.
        let window = full.prompt_tokens - 100 + 10;
        let p = build_prompt("rules", &sources, &history, question, &words, window, 10).unwrap();
        assert_eq!(p.history_kept, 0);
        assert_eq!(p.sources_trimmed, 1);
        assert_eq!(p.sources_dropped, 0);
        assert_eq!(p.sources[0], sources[0]);
        assert_eq!(p.sources[1], sources[1]);
        assert!(p.sources[2].text.ends_with(TRIM_MARK));
        assert!(sources[2]
            .text
            .starts_with(p.sources[2].text.trim_end_matches(TRIM_MARK)));
        assert_eq!(p.prompt_tokens, p.budget, "trimming takes as much as fits");
        assert_eq!(p.messages.last(), Some(&ChatMessage::user(question)));

        // 300 words short: source 3 goes entirely, source 2 is cut.
        let window = full.prompt_tokens - 300 + 10;
        let p = build_prompt("rules", &sources, &history, question, &words, window, 10).unwrap();
        assert_eq!(p.sources_dropped, 1);
        assert_eq!(p.sources_trimmed, 1);
        assert_eq!(p.source_numbers(), vec![1, 2]);
        assert_eq!(p.sources[0], sources[0]);
        assert!(p.sources[1].text.ends_with(TRIM_MARK));
        assert!(p.prompt_tokens <= p.budget);
        assert!(!p.messages[0].content.contains("[3]"));

        // Barely more than rules and question: every source goes, and the
        // model is told there are none.
        let bare = build_prompt("rules", &[], &[], question, &words, 100_000, 10).unwrap();
        let p = build_prompt(
            "rules",
            &sources,
            &history,
            question,
            &words,
            bare.prompt_tokens + 10 + 3,
            10,
        )
        .unwrap();
        assert!(p.sources.is_empty());
        assert_eq!(p.sources_dropped, 3);
        assert!(p.messages[0].content.contains("none were found"));
        assert_eq!(p.messages.last(), Some(&ChatMessage::user(question)));
    }

    #[test]
    fn a_trimmed_stub_is_dropped_instead() {
        let sources = vec![source(1, 200)];
        let bare = build_prompt("rules", &[], &[], "q", &words, 100_000, 10).unwrap();
        // Room for the header and a few words only.
        let window = bare.prompt_tokens + 5 + 10;
        let p = build_prompt("rules", &sources, &[], "q", &words, window, 10).unwrap();
        assert!(p.sources.is_empty());
        assert_eq!(p.sources_dropped, 1);
    }

    #[test]
    fn a_question_that_cannot_fit_is_an_error() {
        let question = "word ".repeat(500);
        let err =
            build_prompt("rules", &[source(1, 10)], &[], &question, &words, 400, 50).unwrap_err();
        assert!(matches!(
            err,
            PromptError::QuestionTooLong { budget: 350, .. }
        ));
        assert_eq!(err.code(), "question_too_long");

        let err = build_prompt("rules", &[], &[], "q", &words, 100, 100).unwrap_err();
        assert!(matches!(err, PromptError::ReserveTooLarge { .. }));
        let err = build_prompt("rules", &[], &[], "q", &words, 100, 500).unwrap_err();
        assert!(matches!(err, PromptError::ReserveTooLarge { .. }));
    }

    #[test]
    fn system_message_numbers_the_sources_in_order() {
        let mut sources = vec![source(2, 3), source(1, 3)];
        sources[1].title = String::new();
        let p = build_prompt(DEFAULT_SYSTEM_RULES, &sources, &[], "q", &words, 10_000, 10).unwrap();
        let system = &p.messages[0].content;
        assert!(system.starts_with(DEFAULT_SYSTEM_RULES));
        assert!(system.ends_with("Sources:\n\n[1]\ns1w0 s1w1 s1w2\n\n[2] Title 2\ns2w0 s2w1 s2w2"));
        assert_eq!(p.source_numbers(), vec![1, 2]);
        let req = p.into_request();
        assert_eq!(req.max_tokens, 10);
        assert_eq!(req.question, "q");
        assert_eq!(req.messages.len(), 2);
    }

    #[test]
    fn default_rules_say_what_the_issue_asks() {
        let r = DEFAULT_SYSTEM_RULES.to_lowercase();
        for needle in [
            "only",
            "numbered sources",
            "[1]",
            "do not contain",
            "does not cover",
            "do not invent",
        ] {
            assert!(r.contains(needle), "{needle}");
        }
    }
}
