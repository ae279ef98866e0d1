//! `ragchat eval`: retrieval quality on a BEIR-layout dataset.

use std::sync::Arc;

use super::{bar, EvalArgs};
use crate::app::App;
use crate::db::documents;
use crate::error::Error;
use crate::eval::run::{self as eval_run, EvalOptions, Prepared};
use crate::retrieve::{Mode, Weights};

pub(super) async fn run(app: &Arc<App>, args: EvalArgs) -> Result<(), Error> {
    let opts = options(app, args)?;
    let pb = bar(0, "ingest corpus");
    let prepared = eval_run::prepare(app, &opts, &|n, total| {
        pb.set_length(total as u64);
        pb.set_position(n as u64);
    })
    .await?;
    pb.finish_and_clear();
    if let Some(r) = &prepared.ingest {
        println!(
            "ingested {} documents: {} chunks in {:.1} s ({:.1} chunks/s)",
            r.documents,
            r.chunks_embedded,
            r.seconds,
            r.chunks_per_second()
        );
    }
    print_dataset(app, &opts, &prepared).await?;
    println!(
        "{:<8} {:>8} {:>11} {:>8} {:>9}",
        "mode", "nDCG@10", "recall@100", "MRR@10", "queries/s"
    );
    for &mode in &opts.modes {
        let (result, run) = eval_run::run_mode(app, &prepared, &opts, mode).await?;
        let s = result.scores;
        println!(
            "{:<8} {:>8.4} {:>11.4} {:>8.4} {:>9.1}",
            eval_run::mode_name(mode),
            s.ndcg_at_10,
            s.recall_at_100,
            s.mrr_at_10,
            s.queries as f64 / result.seconds.max(1e-9)
        );
        if let Some(path) = &opts.run_out {
            let written = eval_run::write_run_file(path, mode, opts.modes.len() > 1, &run)?;
            println!("         run file: {}", written.display());
        }
    }
    Ok(())
}

/// The flags as evaluation options; unset weights are the configured ones.
fn options(app: &App, args: EvalArgs) -> Result<EvalOptions, Error> {
    let modes = args
        .mode
        .split(',')
        .map(|m| m.parse::<Mode>())
        .collect::<Result<Vec<_>, _>>()?;
    let r = &app.settings.retrieval;
    Ok(EvalOptions {
        dir: args.dir,
        split: args.split,
        modes,
        collection: args.collection,
        run_out: args.run_out,
        candidates: args.candidates,
        weights: Weights {
            dense: args.dense_weight.unwrap_or(r.dense_weight),
            lexical: args.lexical_weight.unwrap_or(r.lexical_weight),
        },
        concurrency: args.concurrency,
    })
}

async fn print_dataset(app: &App, opts: &EvalOptions, prepared: &Prepared) -> Result<(), Error> {
    let chunks = documents::count_chunks(&app.db, Some(&prepared.collection_id)).await?;
    println!(
        "dataset {} split {}: {} documents, {} chunks, {} judged queries; candidates {} per signal, weights dense {} lexical {}, rrf k {}",
        opts.dir.display(),
        opts.split,
        prepared.doc_names.len(),
        chunks,
        prepared.dataset.queries.len(),
        opts.candidates,
        opts.weights.dense,
        opts.weights.lexical,
        app.settings.retrieval.rrf_k
    );
    Ok(())
}
