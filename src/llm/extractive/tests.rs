use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use super::*;
use crate::llm::ChatMessage;
use crate::text::citations::CitationFilter;

const DIM: usize = 4096;
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "is", "are", "was", "were", "of", "in", "on", "to", "and", "or", "it", "its",
    "what", "which", "who", "how", "does", "do", "did", "for", "with", "by", "as", "at", "be",
    "that", "this", "from",
];

/// Bag-of-words hashing vectors: sentences sharing content words are
/// similar, others are orthogonal up to hash collisions. Deterministic.
struct FakeEmbedder {
    calls: AtomicUsize,
}

impl FakeEmbedder {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
        })
    }

    fn vector(text: &str) -> Vec<f32> {
        let mut v = vec![0.0f32; DIM];
        let lower = text.to_lowercase();
        for word in lower.split(|c: char| !c.is_alphanumeric()) {
            if word.is_empty() || STOPWORDS.contains(&word) {
                continue;
            }
            let mut h: u64 = 0xcbf29ce484222325;
            for b in word.bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
            }
            v[(h % DIM as u64) as usize] += 1.0;
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

#[async_trait]
impl SentenceEmbedder for FakeEmbedder {
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, LlmError> {
        self.calls.fetch_add(1, AtomicOrdering::SeqCst);
        Ok(texts.iter().map(|t| Self::vector(t)).collect())
    }
}

struct BrokenEmbedder {
    extra: bool,
}

#[async_trait]
impl SentenceEmbedder for BrokenEmbedder {
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, LlmError> {
        if self.extra {
            Ok(vec![vec![1.0; 4]; texts.len() + 1])
        } else {
            Err(LlmError::Embedding("boom".into()))
        }
    }
}

fn src(n: usize, title: &str, text: &str) -> Source {
    Source {
        n,
        chunk_id: format!("c{n}"),
        document_id: format!("d{n}"),
        title: title.into(),
        text: text.into(),
        score: 1.0,
    }
}

fn library() -> Vec<Source> {
    vec![
        src(
            1,
            "",
            "Paris is the capital of France. The Seine river flows through Paris. \
             France is famous for its cheese and wine.",
        ),
        src(
            2,
            "",
            "Photosynthesis converts sunlight into chemical energy. Chlorophyll absorbs \
             red and blue light. Plants release oxygen during photosynthesis.",
        ),
        src(
            3,
            "",
            "The Rust compiler checks borrowing rules at compile time. Cargo builds Rust \
             crates and fetches dependencies. Rust has no garbage collector.",
        ),
    ]
}

fn request(question: &str, sources: Vec<Source>) -> ChatRequest {
    ChatRequest {
        messages: vec![ChatMessage::user(question)],
        sources,
        question: question.into(),
        max_tokens: 0,
    }
}

fn fake_config() -> ExtractiveConfig {
    // Bag-of-words cosines run lower than a sentence model's.
    ExtractiveConfig {
        min_similarity: 0.2,
        ..ExtractiveConfig::default()
    }
}

async fn collect(model: &dyn ChatModel, req: ChatRequest) -> (String, usize) {
    let mut stream = model.stream(req).await.unwrap();
    let mut out = String::new();
    let mut n = 0;
    while let Some(delta) = stream.next().await {
        out.push_str(&delta.unwrap());
        n += 1;
    }
    (out, n)
}

/// Split an extractive answer into (sentence, cited n) pairs.
fn claims(answer: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut rest = answer;
    while let Some(open) = rest.find(" [") {
        let close = rest[open..].find(']').map(|c| open + c).unwrap();
        let n: usize = rest[open + 2..close].parse().unwrap();
        out.push((rest[..open].trim().to_string(), n));
        rest = &rest[close + 1..];
    }
    assert!(
        rest.trim().is_empty(),
        "text after the last marker: {rest:?}"
    );
    out
}

fn assert_citations_correct(answer: &str, sources: &[Source]) -> Vec<(String, usize)> {
    let claims = claims(answer);
    assert!(!claims.is_empty(), "{answer}");
    for (sentence, n) in &claims {
        let source = sources.iter().find(|s| s.n == *n).unwrap();
        let normalised = source.text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            normalised.contains(sentence.as_str()),
            "{sentence:?} is cited as [{n}] but is not in it"
        );
    }
    let valid: Vec<usize> = sources.iter().map(|s| s.n).collect();
    let (filtered, report) = CitationFilter::apply(answer, &valid);
    assert_eq!(filtered, answer);
    assert_eq!(report.dropped, 0);
    claims
}

#[tokio::test]
async fn answers_cite_the_source_each_sentence_came_from() {
    let model = ExtractiveModel::with_config(FakeEmbedder::new(), fake_config());
    let cases = [
        (
            "What is the capital of France?",
            1,
            "Paris is the capital of France.",
        ),
        (
            "How does photosynthesis use sunlight?",
            2,
            "Photosynthesis converts sunlight into chemical energy.",
        ),
        (
            "Does Rust have a garbage collector?",
            3,
            "Rust has no garbage collector.",
        ),
    ];
    for (question, n, first) in cases {
        let (answer, _) = collect(&model, request(question, library())).await;
        let claims = assert_citations_correct(&answer, &library());
        assert_eq!(claims[0], (first.to_string(), n), "{answer}");
        assert!(claims.len() <= 3);
    }
}

#[tokio::test]
async fn mixed_question_draws_on_several_sources_most_relevant_first() {
    let model = ExtractiveModel::with_config(FakeEmbedder::new(), fake_config());
    let question = "Rust compiler borrowing rules and the capital Paris";
    let (answer, _) = collect(&model, request(question, library())).await;
    let claims = assert_citations_correct(&answer, &library());
    let cited: Vec<usize> = claims.iter().map(|c| c.1).collect();
    assert!(cited.contains(&1) && cited.contains(&3), "{answer}");
    assert!(!cited.contains(&2), "{answer}");
    let q = FakeEmbedder::vector(question);
    let sims: Vec<f32> = claims
        .iter()
        .map(|(s, _)| cosine(&q, &FakeEmbedder::vector(s)))
        .collect();
    assert!(sims.windows(2).all(|w| w[0] >= w[1]), "{sims:?}");
}

#[tokio::test]
async fn tangents_far_below_the_best_sentence_are_left_out() {
    let question = "Rust compiler borrowing rules and the capital Paris";
    let narrow = ExtractiveConfig {
        max_gap_from_best: 0.1,
        ..fake_config()
    };
    let model = ExtractiveModel::with_config(FakeEmbedder::new(), narrow);
    let (answer, _) = collect(&model, request(question, library())).await;
    let claims = assert_citations_correct(&answer, &library());
    assert_eq!(claims.len(), 1, "{answer}");
    assert_eq!(claims[0].1, 3);
}

/// The default thresholds are calibrated for the real sentence model, so
/// check them with it (the same model files the chunker tests need).
#[tokio::test]
async fn real_model_cites_the_right_source_and_declines_off_topic() {
    let dir = std::env::var("RAGCHAT_MODELS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
    let settings = crate::config::EmbeddingSettings {
        pool_size: 1,
        ..Default::default()
    };
    let embedder = crate::embed::Embedder::load(&dir, &settings)
        .expect("model files missing: run scripts/setup-models.sh before the tests");
    let model = ExtractiveModel::new(Arc::new(embedder));
    let sources = vec![
        src(
            1,
            "Configuration",
            "Settings are read from defaults, then ragchat.toml, then environment variables. \
             The server listens on 127.0.0.1:8080 unless RAGCHAT_BIND names another address. \
             Data is stored under ./data by default.",
        ),
        src(
            2,
            "Hybrid retrieval",
            "Dense retrieval compares embedding vectors by cosine similarity. \
             Lexical retrieval scores chunks with BM25 in a Tantivy index. \
             Reciprocal rank fusion adds weight / (k + rank) for each list a chunk appears in.",
        ),
        src(
            3,
            "Chunking",
            "Documents are split into chunks of at most 256 tokens. \
             Neighbouring chunks overlap so that a sentence cut at a boundary is not lost.",
        ),
    ];
    let cases = [
        ("Which port does the server listen on?", 1),
        (
            "How does reciprocal rank fusion combine the result lists?",
            2,
        ),
        ("How large are the chunks documents are split into?", 3),
    ];
    for (question, n) in cases {
        let answer = model
            .answer(&request(question, sources.clone()))
            .await
            .unwrap();
        let claims = assert_citations_correct(&answer, &sources);
        assert_eq!(claims[0].1, n, "{question}: {answer}");
    }
    for question in [
        "What is the boiling point of water?",
        "How do I bake sourdough bread?",
    ] {
        let answer = model
            .answer(&request(question, sources.clone()))
            .await
            .unwrap();
        assert_eq!(answer, NO_ANSWER, "{question}");
    }
}

#[tokio::test]
async fn unrelated_question_says_so_without_markers() {
    let model = ExtractiveModel::with_config(FakeEmbedder::new(), fake_config());
    let (answer, _) = collect(&model, request("Who won the 1966 World Cup?", library())).await;
    assert_eq!(answer, NO_ANSWER);
    assert!(!answer.contains('['));
}

#[tokio::test]
async fn no_sources_or_no_question_need_no_embedding() {
    let embedder = FakeEmbedder::new();
    let model = ExtractiveModel::with_config(embedder.clone(), fake_config());
    let (answer, _) = collect(&model, request("anything?", Vec::new())).await;
    assert_eq!(answer, NO_ANSWER);
    let (answer, _) = collect(&model, request("   ", library())).await;
    assert_eq!(answer, NO_ANSWER);
    assert_eq!(embedder.calls.load(AtomicOrdering::SeqCst), 0);
}

#[tokio::test]
async fn repeated_sentences_are_used_once_from_the_best_ranked_source() {
    let sources = vec![
        src(1, "", "Unrelated words about gardening tools here."),
        src(2, "", "The Eiffel tower is in Paris. Tickets cost money."),
        src(
            3,
            "",
            "The Eiffel tower is in Paris. The tower is made of iron.",
        ),
    ];
    let model = ExtractiveModel::with_config(FakeEmbedder::new(), fake_config());
    let (answer, _) = collect(
        &model,
        request("Where is the Eiffel tower?", sources.clone()),
    )
    .await;
    let claims = assert_citations_correct(&answer, &sources);
    let repeats = claims
        .iter()
        .filter(|c| c.0 == "The Eiffel tower is in Paris.")
        .count();
    assert_eq!(repeats, 1, "{answer}");
    assert_eq!(claims[0], ("The Eiffel tower is in Paris.".into(), 2));
}

#[tokio::test]
async fn deterministic_whatever_the_source_order() {
    let model = ExtractiveModel::with_config(FakeEmbedder::new(), fake_config());
    let question = "What does Cargo do for Rust crates and France cheese?";
    let (a, _) = collect(&model, request(question, library())).await;
    let mut reversed = library();
    reversed.reverse();
    let (b, _) = collect(&model, request(question, reversed)).await;
    let (c, _) = collect(&model, request(question, library())).await;
    assert_eq!(a, b);
    assert_eq!(a, c);
}

#[tokio::test]
async fn sentence_and_token_limits_hold() {
    let text: String = (0..10)
        .map(|i| format!("Solar panels convert sunlight variant{i} into power. "))
        .collect();
    let sources = vec![src(1, "", &text)];
    let question = "How do solar panels convert sunlight into power?";
    let config = ExtractiveConfig {
        max_redundancy: 1.1,
        ..fake_config()
    };
    let model = ExtractiveModel::with_config(FakeEmbedder::new(), config.clone());
    let (answer, _) = collect(&model, request(question, sources.clone())).await;
    assert_eq!(claims(&answer).len(), 3);

    for max_tokens in [8, 15, 17, 30] {
        let mut req = request(question, sources.clone());
        req.max_tokens = max_tokens;
        let (answer, _) = collect(&model, req).await;
        assert!(
            model.count_tokens(&answer) <= max_tokens,
            "{max_tokens}: {answer}"
        );
        assert_eq!(claims(&answer).len(), (max_tokens / 8).min(3), "{answer}");
    }

    // Not even one sentence fits: a truncated one, still cited.
    let mut req = request(question, sources.clone());
    req.max_tokens = 4;
    let (answer, _) = collect(&model, req).await;
    assert_eq!(answer, "Solar panels convert… [1]");
    assert_eq!(model.count_tokens(&answer), 4);
}

#[tokio::test]
async fn streams_word_sized_deltas() {
    let model = ExtractiveModel::with_config(FakeEmbedder::new(), fake_config());
    let req = request("What is the capital of France?", library());
    let whole = model.answer(&req).await.unwrap();
    let (streamed, deltas) = collect(&model, req).await;
    assert_eq!(streamed, whole);
    assert_eq!(deltas, whole.split_whitespace().count());
    // Dropping the stream early is fine: nothing runs behind it.
    let mut stream = model
        .stream(request("What is the capital of France?", library()))
        .await
        .unwrap();
    assert!(stream.next().await.is_some());
    drop(stream);
}

#[tokio::test]
async fn reference_marks_in_sources_do_not_leak() {
    let sources = vec![src(
        2,
        "",
        "Mount Everest is the highest mountain on Earth.[7] It lies in the Himalayas [8, 9].",
    )];
    let model = ExtractiveModel::with_config(FakeEmbedder::new(), fake_config());
    let (answer, _) = collect(
        &model,
        request("Which mountain is the highest on Earth?", sources.clone()),
    )
    .await;
    assert_eq!(
        answer.split(" [2]").next(),
        Some("Mount Everest is the highest mountain on Earth.")
    );
    let (_, report) = CitationFilter::apply(&answer, &[2]);
    assert_eq!(report.dropped, 0);
    assert_eq!(report.cited, vec![2]);
}

#[tokio::test]
async fn embedder_failures_are_errors() {
    let model =
        ExtractiveModel::with_config(Arc::new(BrokenEmbedder { extra: false }), fake_config());
    let err = model.stream(request("q?", library())).await.err();
    assert_eq!(err, Some(LlmError::Embedding("boom".into())));

    let model =
        ExtractiveModel::with_config(Arc::new(BrokenEmbedder { extra: true }), fake_config());
    let err = model.stream(request("q?", library())).await.err();
    assert!(matches!(err, Some(LlmError::Embedding(_))), "{err:?}");
}

#[test]
fn usable_as_a_trait_object() {
    let embedder: Arc<dyn SentenceEmbedder> = FakeEmbedder::new();
    let model: Arc<dyn ChatModel> = Arc::new(ExtractiveModel::new(embedder));
    assert_eq!(model.name(), "extractive");
    assert_eq!(model.count_tokens(" two  words\n"), 2);
    assert!(model.context_window() >= 100_000);
}

#[test]
fn title_context_is_embedded_not_shown() {
    let sources = vec![src(1, "Rust", "It has no garbage collector at all.")];
    let with = candidates(&sources, &ExtractiveConfig::default());
    assert_eq!(
        with[0].embed_text,
        "Rust. It has no garbage collector at all."
    );
    assert_eq!(with[0].text, "It has no garbage collector at all.");
    let config = ExtractiveConfig {
        title_context: false,
        ..ExtractiveConfig::default()
    };
    assert_eq!(candidates(&sources, &config)[0].embed_text, with[0].text);
}

#[test]
fn sentences_split_on_punctuation_not_on_abbreviations_or_decimals() {
    let text = "Dr. Smith measured 3.5 kg, e.g. in the lab. Was it heavy? Yes, very heavy! \
                J. R. R. Tolkien wrote books, i.e. novels. Prices rose approx. five percent. \
                See item No. 5 for details. He said \"stop here.\" Then he left... Later it rained.";
    assert_eq!(
        split_sentences(text),
        vec![
            "Dr. Smith measured 3.5 kg, e.g. in the lab.",
            "Was it heavy?",
            "Yes, very heavy!",
            "J. R. R. Tolkien wrote books, i.e. novels.",
            "Prices rose approx. five percent.",
            "See item No. 5 for details.",
            "He said \"stop here.\"",
            "Then he left...",
            "Later it rained.",
        ]
    );
}

#[test]
fn sentences_respect_line_structure() {
    let text = "# Installing the tool\n\
                Installation of the tool usually takes\n\
                about five minutes on most machines\n\
                and needs no admin rights.\n\
                \n\
                Steps to follow\n\
                - Download the archive from the site\n\
                - Unpack it into your home folder\n\
                1. Run the setup script once\n\
                | col | col |\n\
                > Quoted advice is also a sentence\n\
                ok.\n\
                - A list item that wraps onto\n  \
                an indented second line.";
    assert_eq!(
        split_sentences(text),
        vec![
            "Installation of the tool usually takes about five minutes on most machines and needs no admin rights.",
            "Download the archive from the site",
            "Unpack it into your home folder",
            "Run the setup script once",
            "Quoted advice is also a sentence",
            "A list item that wraps onto an indented second line.",
        ]
    );
}

#[test]
fn lowercase_after_a_period_is_judged_by_the_word_before() {
    let text = "Vectors point in similar directions. ragchat embeds every chunk locally. \
                Meet at 5 p.m. on Monday morning. Bring tea, milk, etc. and some biscuits. \
                Bring cake too, etc. Then leave.";
    assert_eq!(
        split_sentences(text),
        vec![
            "Vectors point in similar directions.",
            "ragchat embeds every chunk locally.",
            "Meet at 5 p.m. on Monday morning.",
            "Bring tea, milk, etc. and some biscuits.",
            "Bring cake too, etc.",
        ]
    );
}

#[test]
fn titles_and_lead_ins_are_not_answers() {
    let text = "RRF (Reciprocal Rank Fusion)\n\
                A BEIR data set directory contains:\n\
                - corpus.jsonl with one document per line\n\
                Good first queries:";
    assert_eq!(
        split_sentences(text),
        vec!["corpus.jsonl with one document per line"]
    );
}

#[test]
fn fragments_and_markers_are_dropped() {
    assert_eq!(
        split_sentences("Yes. No. 42. The value is 42 [3]. Done[4]."),
        vec!["The value is 42."]
    );
    assert!(split_sentences("").is_empty());
    assert!(split_sentences("...").is_empty());
}

#[test]
fn cosine_guards_bad_vectors() {
    assert_eq!(cosine(&[1.0, 0.0], &[1.0]), 0.0);
    assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    assert_eq!(cosine(&[f32::NAN, 1.0], &[1.0, 0.0]), 0.0);
    assert!((cosine(&[2.0, 0.0], &[3.0, 0.0]) - 1.0).abs() < 1e-6);
}

#[test]
fn deltas_cover_the_text() {
    assert_eq!(deltas("a b  c"), vec!["a ", "b  ", "c"]);
    assert_eq!(deltas(" x"), vec![" ", "x"]);
    assert!(deltas("").is_empty());
}

#[test]
fn a_window_that_cuts_a_sentence_does_not_answer_with_the_pieces() {
    // Chunk overlap can open or close a passage in the middle of a sentence.
    let text = "the number of documents processed, with their errors. \
                The job reports progress as it runs. Each batch is written to the \
                database and then to both indexes and the whole";
    assert_eq!(
        whole_sentences(text),
        vec!["The job reports progress as it runs.".to_string()]
    );
    // A lowercase name that opens sentences elsewhere in the passage is a
    // sentence start, and a passage that ends on a full stop keeps its end.
    let text = "ragchat runs on one machine. It keeps data in one directory. \
                ragchat needs no other service.";
    assert_eq!(whole_sentences(text).len(), 3);
    // Short unpunctuated last lines and list items are whole as they are.
    let text = "Supported formats are these.\n\n- Markdown and plain text files\n- PDF and Word documents from uploads";
    assert_eq!(whole_sentences(text).len(), 3);
    assert_eq!(
        whole_sentences(", and so the rest follows here. Then a whole one.").len(),
        1
    );
}

#[test]
fn a_sentence_that_only_repeats_the_question_is_no_answer() {
    assert!(restates(
        "\"how do I upload a PDF\"",
        "How do I upload a PDF?"
    ));
    assert!(restates(
        "What does ragchat reindex do?",
        "what does ragchat reindex do"
    ));
    assert!(!restates(
        "Admins upload PDF files with the documents endpoint.",
        "How do I upload a PDF?"
    ));
}
