use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::ingest::clean::clean_text;
use crate::ingest::formats::beir;
use crate::ingest::load;

fn check(raw: &str) -> QualityReport {
    assess(&clean_text(raw), &QualitySettings::default())
}

fn assert_rejected(raw: &str, reason_prefix: &str) -> QualityReport {
    let r = check(raw);
    assert!(!r.passed(), "expected rejection ({reason_prefix}): {r:#?}");
    assert!(r.score < 0.5);
    assert!(
        r.reasons
            .first()
            .is_some_and(|x| x.starts_with(reason_prefix)),
        "expected the main reason to start with {reason_prefix:?}: {r:#?}"
    );
    r
}

fn assert_kept(raw: &str) -> QualityReport {
    let r = check(raw);
    assert!(r.passed(), "expected to keep: {r:#?}");
    r
}

const PROSE: &str = "Chunks are sized in tokens, counted with the embedding model's own \
    tokenizer, so that each chunk fits the model's input limit. Neighbouring chunks overlap \
    a little so that text at a boundary is not cut apart. Markdown is split at headings, \
    paragraphs and other structural boundaries where possible.";

const ABSTRACT: &str = "Background: Vitamin D deficiency (serum 25(OH)D < 20 ng/mL) is \
    common in older adults. Methods: We randomised 2,303 participants (mean age 71.3 ± 6.2 \
    years; 52.4% women) to 2,000 IU/d cholecalciferol or placebo for 5.3 years. Results: \
    The hazard ratio for incident fractures was 0.98 (95% CI, 0.89-1.08; P = .70); for \
    falls, 1.02 (95% CI, 0.95-1.10; P = .51). Conclusions: Supplementation did not reduce \
    fractures (n = 940 vs n = 952) in this population.";

const CODE_MARKDOWN: &str = "# Configuration\n\nSettings come from `ragchat.toml`:\n\n\
    ```toml\n[server]\nbind = \"127.0.0.1:8080\"\nworkers = 0\n\n[chunking]\nmax_tokens = 256\n\
    overlap_tokens = 32\n```\n\n| key | default |\n|---|---|\n| `server.bind` | `127.0.0.1:8080` |\n\
    | `chunking.max_tokens` | 256 |\n\n```json\n{\n  \"results\": [\n    {\n      \"score\": 0.0325,\n\
    \"rank\": 1\n    },\n    {\n      \"score\": 0.0318,\n      \"rank\": 2\n    }\n  ]\n}\n```\n\n\
    ```rust\nfn main() {\n    let x = 1;\n    println!(\"{x}\");\n}\n```\n";

#[test]
fn keeps_normal_documents() {
    let r = assert_kept(PROSE);
    assert_eq!(r.score, 1.0, "{r:#?}");
    assert!(r.reasons.is_empty());
    assert_kept(ABSTRACT);
    assert_kept(CODE_MARKDOWN);
    // Short FAQ answers.
    assert_kept("Not yet.\n\nChat is planned for the next milestone.");
    assert_kept("Yes: set `server.bind`.");
    // Scripts without spaces between words.
    assert_kept("東京は日本の首都です。人口は約千四百万人で、多くの企業の本社があります。");
    assert_kept("Привет, мир! Это обычный текст на русском языке, ничего особенного.");
}

#[test]
fn rejects_empty_and_near_empty_text() {
    let r = assert_rejected("", "too short");
    assert_eq!(r.score, 0.0);
    assert_eq!(r.reasons, ["too short: 0 words (minimum 3)"]);
    assert_rejected("   \n\n ", "too short");
    assert_rejected("TODO", "too short");
    assert_rejected("-- !!! --", "too short");
}

#[test]
fn rejects_binary_garbage() {
    let mut rng = StdRng::seed_from_u64(1);
    let bytes: Vec<u8> = (0..4000).map(|_| rng.random()).collect();
    // What the loaders make of a binary file: lossy UTF-8.
    let r = assert_rejected(&String::from_utf8_lossy(&bytes), "garbage");
    assert!(r.signals.garbage_ratio > 0.3, "{r:#?}");

    // Base64 of binary data has no invalid bytes but no words either.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    assert_rejected(&lines.join("\n"), "word length");
}

#[test]
fn rejects_repetition_spam() {
    let r = assert_rejected("aaaa aaaa aaaa", "repetition");
    assert_eq!(
        r.reasons[0],
        "repetition: \"aaaa\" is 100% of all words (limit 40%)"
    );
    assert_rejected(&"aaaa ".repeat(500), "repetition");
    assert_rejected(&"buy now ".repeat(100), "repetition");

    let lorem = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod \
        tempor incididunt ut labore et dolore magna aliqua. ";
    let r = assert_rejected(&lorem.repeat(12), "repetition");
    assert!(r.reasons[0].contains("10-word sequences"), "{r:#?}");

    let mut lines = String::from("Our shop has the best prices in town.\n");
    for _ in 0..12 {
        lines.push_str("Click here to subscribe to our newsletter!\n");
    }
    let r = assert_rejected(&lines, "repetition");
    assert!(
        r.reasons
            .iter()
            .any(|x| x == "repetition: 85% of lines are duplicates (limit 30%)"),
        "{r:#?}"
    );
}

#[test]
fn rejects_number_tables() {
    let mut rng = StdRng::seed_from_u64(2);
    let table: String = (0..40)
        .map(|_| {
            (0..6)
                .map(|_| format!("{:.2}", rng.random_range(0.0..1000.0f64)))
                .collect::<Vec<_>>()
                .join(" | ")
                + "\n"
        })
        .collect();
    let r = assert_rejected(&table, "letters");
    assert!(
        r.reasons.iter().any(|x| x.starts_with("no letters")),
        "{r:#?}"
    );
    assert_rejected("10 20 30 40 50 60 70 80 90 100 110 120 130 140", "letters");
    assert_rejected("#!/%$ 12 >> 34 ~~ 56 ** 78 ++ 90", "letters");
}

#[test]
fn score_is_the_worst_factor_and_min_score_tightens() {
    // The shape: 1 up to half the limit, 0.5 at the limit, 0 at twice it.
    assert_eq!(falling_share(0.10, 0.3), 1.0);
    assert!((falling_share(0.225, 0.3) - 0.75).abs() < 1e-6);
    assert_eq!(falling_share(0.3, 0.3), 0.5);
    assert!((falling_share(0.45, 0.3) - 0.25).abs() < 1e-6);
    assert_eq!(falling_share(0.7, 0.3), 0.0);
    assert_eq!(falling_share(1.0, 1.0), 0.5);
    assert_eq!(falling_share(0.0, 0.0), 1.0);
    assert_eq!(falling_share(0.01, 0.0), 0.0);

    // 3 of 10 lines duplicated: exactly at the 30% limit, so kept with score 0.5.
    let text = "Remember to save your work.\n\
        The service listens on port 8080 by default.\n\
        Chunks overlap a little at their boundaries.\n\
        Remember to save your work.\n\
        Tantivy builds the lexical index on disk.\n\
        Queries fuse dense and lexical rankings.\n\
        Remember to save your work.\n\
        Each document keeps its source path.\n\
        Administrators can grant read access.\n\
        Remember to save your work.";
    let r = check(text);
    assert_eq!(r.signals.duplicate_line_fraction, 0.3);
    assert_eq!(r.score, 0.5);
    assert!(r.passed());
    assert_eq!(
        r.reasons[0],
        "repetition: 30% of lines are duplicates (limit 30%)"
    );
    let strict = QualitySettings {
        min_score: 0.6,
        ..QualitySettings::default()
    };
    assert!(!assess(&clean_text(text), &strict).passed());
}

#[test]
fn report_and_settings_serialise() {
    let r = check("aaaa aaaa aaaa");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["passed"], false);
    assert_eq!(json["signals"]["words"], 3);
    assert!(json["reasons"][0]
        .as_str()
        .unwrap()
        .starts_with("repetition"));
    let back: QualityReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, r);

    let s: QualitySettings = serde_json::from_str(r#"{"min_words": 10}"#).unwrap();
    assert_eq!(s.min_words, 10);
    assert_eq!(s.min_score, QualitySettings::default().min_score);
    assert!(serde_json::from_str::<QualitySettings>(r#"{"min_wrods": 10}"#).is_err());
    assert!(s.validate().is_ok());
    let bad = QualitySettings {
        max_top_word_fraction: 1.5,
        ..QualitySettings::default()
    };
    assert_eq!(bad.validate().unwrap_err().key, "max_top_word_fraction");
    let bad = QualitySettings {
        max_mean_word_len: f32::NAN,
        ..QualitySettings::default()
    };
    assert!(bad.validate().is_err());
}

#[test]
fn is_deterministic() {
    let text = clean_text(CODE_MARKDOWN);
    let a = assess(&text, &QualitySettings::default());
    for _ in 0..5 {
        assert_eq!(assess(&text, &QualitySettings::default()), a);
    }
}

/// Cleaned texts of a corpus, loaded the way ingestion loads them.
fn corpus_texts(path: &Path) -> Option<Vec<(String, String)>> {
    if !path.exists() {
        println!("note: {} is absent; skipped", path.display());
        return None;
    }
    let docs = if path.extension().is_some_and(|e| e == "jsonl") {
        beir::load_corpus(path)
            .unwrap()
            .into_iter()
            .map(|d| (d.id, d.text))
            .collect::<Vec<_>>()
    } else {
        load::load_path(path)
            .unwrap()
            .into_iter()
            .map(|d| (d.source, d.text))
            .collect()
    };
    Some(
        docs.into_iter()
            .map(|(id, text)| (id, clean_text(&text)))
            .filter(|(_, text)| !text.is_empty())
            .collect(),
    )
}

pub(crate) fn real_corpora() -> Vec<(&'static str, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    vec![
        ("corpus/", root.join("corpus")),
        ("docs/", root.join("docs")),
        ("README.md", root.join("README.md")),
        (
            "scifact-train",
            root.join("../shared/eval/scifact-train/corpus.jsonl"),
        ),
        (
            "cranfield",
            root.join("../shared/eval/cranfield/corpus.jsonl"),
        ),
        ("adi", root.join("../shared/eval/adi/corpus.jsonl")),
    ]
}

#[test]
fn real_corpora_pass() {
    let settings = QualitySettings::default();
    let mut rejected_total = 0;
    for (name, path) in real_corpora() {
        let Some(docs) = corpus_texts(&path) else {
            continue;
        };
        let reports: Vec<(String, QualityReport)> = docs
            .iter()
            .map(|(id, text)| (id.clone(), assess(text, &settings)))
            .collect();
        let rejected: Vec<&(String, QualityReport)> =
            reports.iter().filter(|(_, r)| !r.passed()).collect();
        let below_one = reports.iter().filter(|(_, r)| r.score < 1.0).count();
        let lowest = reports
            .iter()
            .min_by(|a, b| a.1.score.total_cmp(&b.1.score))
            .map(|(id, r)| format!("{id} {:.3} {:?}", r.score, r.reasons.first()))
            .unwrap_or_default();
        println!(
            "{name}: {} documents, {} kept, {} rejected, {below_one} below 1.0; lowest: {lowest}",
            reports.len(),
            reports.len() - rejected.len(),
            rejected.len(),
        );
        let extreme = |f: fn(&QualitySignals) -> f32| {
            let mut v: Vec<f32> = reports.iter().map(|(_, r)| f(&r.signals)).collect();
            v.sort_by(f32::total_cmp);
            (v[0], v[v.len() / 2], v[v.len() - 1])
        };
        println!(
            "  (min, median, max) letters {:?} garbage {:?} word_len {:?} dup_lines {:?} \
             dup_ngrams {:?} top_word {:?} no_letter_lines {:?}",
            extreme(|s| s.letter_ratio),
            extreme(|s| s.garbage_ratio),
            extreme(|s| s.mean_word_len),
            extreme(|s| s.duplicate_line_fraction),
            extreme(|s| s.duplicate_ngram_fraction),
            extreme(|s| s.top_word_fraction),
            extreme(|s| s.no_letter_line_fraction),
        );
        for (id, r) in &rejected {
            println!("  rejected {id}: {:.3} {:?}", r.score, r.reasons);
        }
        rejected_total += rejected.len();
    }
    assert_eq!(
        rejected_total, 0,
        "real documents were rejected (see above)"
    );
}
