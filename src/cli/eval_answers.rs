//! `ragchat eval-answers`: the answerer's citations and refusals, judged.

use std::io::Write;
use std::sync::Arc;

use super::{bar, EvalAnswersArgs};
use crate::app::App;
use crate::error::{Error, ErrorCode};
use crate::eval::answers::{evaluate_answers, summarise, AnswerEvalOptions, Outcome};
use crate::eval::run::EvalOptions;
use crate::retrieve::fusion::Aggregation;
use crate::retrieve::{FusionOverrides, Mode};

pub(super) async fn run(app: &Arc<App>, args: EvalAnswersArgs) -> Result<(), Error> {
    let opts = AnswerEvalOptions {
        base: EvalOptions {
            dir: args.dir.clone(),
            split: args.split,
            modes: vec![Mode::Hybrid],
            collection: args.collection,
            run_out: None,
            candidates: app.settings.retrieval.candidates,
            fusion: FusionOverrides::default(),
            aggregation: Aggregation::Max,
            concurrency: 1,
        },
        off_domain: args.off_domain,
        limit: args.limit,
        top_k: args.top_k,
    };
    let pb = bar(0, "questions");
    let (prepared, outcomes) = evaluate_answers(app, &opts, &|n, total| {
        pb.set_length(total as u64);
        pb.set_position(n as u64);
    })
    .await?;
    pb.finish_and_clear();
    let chat = &app.settings.chat;
    println!(
        "collection {} ({}); answerer {}; refused when cosine + {} × (term share − 0.5) < {}",
        prepared.collection,
        args.dir.display(),
        app.chat_model.name(),
        chat.term_share_weight,
        chat.refusal_threshold,
    );
    println!(
        "{:<16} {:>9} {:>8} {:>10} {:>10} {:>11} {:>9} {:>9}",
        "questions",
        "asked",
        "refused",
        "cite prec",
        "cite rec",
        "in sources",
        "ttft p50",
        "ttft p95"
    );
    let mut sets: Vec<&str> = Vec::new();
    for o in &outcomes {
        if !sets.contains(&o.set.as_str()) {
            sets.push(&o.set);
        }
    }
    for set in sets {
        let of: Vec<&Outcome> = outcomes.iter().filter(|o| o.set == set).collect();
        let s = summarise(&of);
        let label = if set == "answerable" {
            "answerable".to_string()
        } else {
            format!("off: {set}")
        };
        println!(
            "{:<16} {:>9} {:>7.1}% {:>10.3} {:>10.3} {:>11.3} {:>7.0}ms {:>7.0}ms",
            label,
            s.questions,
            100.0 * s.refused as f64 / s.questions.max(1) as f64,
            s.citation_precision,
            s.citation_recall,
            s.relevant_in_sources,
            s.first_token_p50_ms,
            s.first_token_p95_ms,
        );
        if s.errors > 0 {
            println!("  {} questions failed", s.errors);
        }
    }
    if let Some(path) = &args.outcomes_out {
        let io = |e: std::io::Error| {
            Error::new(ErrorCode::BadRunFile, format!("{}: {e}", path.display()))
        };
        let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
        for o in &outcomes {
            let line = serde_json::to_string(o).map_err(|e| Error::Internal(e.to_string()))?;
            writeln!(f, "{line}").map_err(io)?;
        }
        f.flush().map_err(io)?;
        println!("outcomes: {}", path.display());
    }
    Ok(())
}
