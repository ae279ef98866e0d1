//! `ragchat eval`: retrieval quality on a BEIR-layout dataset.

use std::sync::Arc;

use super::{bar, EvalArgs};
use crate::app::App;
use crate::db::{collections, documents};
use crate::error::{Error, ErrorCode};
use crate::eval::run::{self as eval_run, EvalOptions, Prepared};
use crate::eval::tune::{self, Ranker};
use crate::eval::Scores;
use crate::retrieve::fusion::{self, Aggregation};
use crate::retrieve::{Fusion, FusionOverrides, Mode};

pub(super) async fn run(app: &Arc<App>, args: EvalArgs) -> Result<(), Error> {
    let tune_it = args.tune;
    let store = args.store;
    let folds = args.folds;
    let sweep_out = args.sweep_out.clone();
    let opts = options(args)?;
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
    if tune_it {
        return run_tune(app, &opts, &prepared, folds, store, sweep_out).await;
    }
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

fn row(label: &str, s: &Scores) {
    println!(
        "{:<44} {:>8.4} {:>11.4} {:>8.4}",
        label, s.ndcg_at_10, s.recall_at_100, s.mrr_at_10
    );
}

/// The sweep, the cross-validated choice and the references, as a table.
async fn run_tune(
    app: &Arc<App>,
    opts: &EvalOptions,
    prepared: &Prepared,
    folds: usize,
    store: bool,
    sweep_out: Option<std::path::PathBuf>,
) -> Result<(), Error> {
    if folds < 2 {
        return Err(Error::new(
            ErrorCode::InvalidBody,
            "--folds must be at least 2",
        ));
    }
    let t = std::time::Instant::now();
    let queries = tune::collect(app, prepared, opts.candidates, opts.concurrency).await?;
    if queries.len() < folds {
        return Err(Error::new(
            ErrorCode::BadDataset,
            format!("{} judged queries cannot make {folds} folds", queries.len()),
        ));
    }
    let searched = t.elapsed().as_secs_f64();
    let grid = tune::grid();
    let t = std::time::Instant::now();
    let per = tune::sweep(prepared, &queries, &grid, opts.aggregation);
    let fold = tune::folds(&queries, folds);
    let cv = tune::cross_validate(&per, &fold, folds);
    let best = tune::best_by_ndcg(&per, 0..queries.len());
    println!(
        "searched {} queries in {:.1} s; {} fusions scored in {:.1} s; aggregation {}",
        queries.len(),
        searched,
        grid.len(),
        t.elapsed().as_secs_f64(),
        opts.aggregation.label()
    );
    println!(
        "{:<44} {:>8} {:>11} {:>8}",
        "ranking", "nDCG@10", "recall@100", "MRR@10"
    );
    let lexical = tune::score(prepared, &queries, Ranker::Lexical);
    let dense = tune::score(prepared, &queries, Ranker::Dense);
    let current = eval_run::fusion_of(app, prepared, opts);
    let current_per = tune::score(prepared, &queries, Ranker::Fused(current, opts.aggregation));
    row("lexical", &lexical.mean());
    row("dense", &dense.mean());
    row("plain rrf (k=60, 1:1)", &per[0].mean());
    row(
        &format!("current: {}", current.label()),
        &current_per.mean(),
    );
    row(&format!("{folds}-fold cross-validated choice"), &cv.scores);
    row(
        &format!("best on all queries: {}", grid[best].label()),
        &per[best].mean(),
    );
    let (won, lost) = tune::wins(&per[best], &per[0]);
    println!("best vs plain rrf, per query nDCG@10: better on {won}, worse on {lost}");
    for (f, &c) in cv.chosen.iter().enumerate() {
        println!("  fold {f} chose {}", grid[c].label());
    }
    println!("top of the sweep (all queries):");
    for (i, s) in tune::ranked_entries(&per).into_iter().take(8) {
        row(&format!("  {}", grid[i].label()), &s);
    }
    // The best of each family, to show how far apart they are.
    for (name, pick) in [
        ("best rrf", fusion::Method::Rrf, None),
        (
            "best convex min-max",
            fusion::Method::Convex,
            Some(fusion::Normalization::MinMax),
        ),
        (
            "best convex theoretical-min",
            fusion::Method::Convex,
            Some(fusion::Normalization::TheoreticalMin),
        ),
    ]
    .map(|(n, m, norm)| (n, (m, norm)))
    {
        let family: Vec<usize> = (0..grid.len())
            .filter(|&i| {
                grid[i].method == pick.0 && pick.1.is_none_or(|n| grid[i].normalization == n)
            })
            .collect();
        if let Some(&i) = family.iter().max_by(|&&a, &&b| {
            per[a]
                .mean()
                .ndcg_at_10
                .total_cmp(&per[b].mean().ndcg_at_10)
                .then(b.cmp(&a))
        }) {
            row(&format!("{name}: {}", grid[i].label()), &per[i].mean());
        }
    }
    // Document aggregation for the chosen fusion.
    println!("document aggregation with {}:", grid[best].label());
    for agg in [
        Aggregation::Max,
        Aggregation::Decayed(0.1),
        Aggregation::Decayed(0.25),
        Aggregation::Decayed(0.5),
    ] {
        let p = tune::score(prepared, &queries, Ranker::Fused(grid[best], agg));
        row(&format!("  {}", agg.label()), &p.mean());
    }
    if let Some(path) = &sweep_out {
        write_sweep(path, &prepared.collection, &grid, &per)?;
        println!("sweep: {}", path.display());
    }
    if store {
        let chosen: Fusion = grid[best];
        collections::set_tuned_fusion(&app.db, prepared.collection_id.as_str(), Some(&chosen))
            .await?;
        println!(
            "stored on collection `{}`: {} (searches of it alone now use this)",
            prepared.collection,
            chosen.label()
        );
    }
    Ok(())
}

/// One line per swept fusion: its parameters as JSON, then its scores.
fn write_sweep(
    path: &std::path::Path,
    collection: &str,
    grid: &[Fusion],
    per: &[tune::PerQuery],
) -> Result<(), Error> {
    use std::io::Write;
    let io =
        |e: std::io::Error| Error::new(ErrorCode::BadRunFile, format!("{}: {e}", path.display()));
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    writeln!(
        f,
        "collection\tfusion\tlabel\tndcg@10\trecall@100\tmrr@10\tqueries"
    )
    .map_err(io)?;
    for (g, p) in grid.iter().zip(per) {
        let s = p.mean();
        let json = serde_json::to_string(g).map_err(|e| Error::Internal(e.to_string()))?;
        writeln!(
            f,
            "{collection}\t{json}\t{}\t{:.6}\t{:.6}\t{:.6}\t{}",
            g.label(),
            s.ndcg_at_10,
            s.recall_at_100,
            s.mrr_at_10,
            s.queries
        )
        .map_err(io)?;
    }
    f.flush().map_err(io)
}

/// `max` or `decay:D` with D in (0, 1].
fn parse_aggregation(s: &str) -> Result<Aggregation, Error> {
    let bad = || {
        Error::new(
            ErrorCode::InvalidBody,
            format!("--aggregate must be `max` or `decay:D` with 0 < D <= 1, got `{s}`"),
        )
    };
    match s.trim() {
        "max" => Ok(Aggregation::Max),
        other => {
            let d: f32 = other
                .strip_prefix("decay:")
                .ok_or_else(bad)?
                .parse()
                .map_err(|_| bad())?;
            if d > 0.0 && d <= 1.0 {
                Ok(Aggregation::Decayed(d))
            } else {
                Err(bad())
            }
        }
    }
}

/// The flags as evaluation options; unset fusion values are the
/// collection's tuned or the configured ones.
fn options(args: EvalArgs) -> Result<EvalOptions, Error> {
    let modes = args
        .mode
        .split(',')
        .map(|m| m.parse::<Mode>())
        .collect::<Result<Vec<_>, _>>()?;
    let fusion = FusionOverrides {
        method: args
            .fusion
            .as_deref()
            .map(fusion::parse_method)
            .transpose()?,
        alpha: args.alpha,
        normalization: args
            .normalization
            .as_deref()
            .map(fusion::parse_normalization)
            .transpose()?,
        dense_weight: args.dense_weight,
        lexical_weight: args.lexical_weight,
    };
    Ok(EvalOptions {
        dir: args.dir,
        split: args.split,
        modes,
        collection: args.collection,
        run_out: args.run_out,
        candidates: args.candidates,
        fusion,
        aggregation: parse_aggregation(&args.aggregate)?,
        concurrency: args.concurrency,
    })
}

async fn print_dataset(app: &App, opts: &EvalOptions, prepared: &Prepared) -> Result<(), Error> {
    let chunks = documents::count_chunks(&app.db, Some(&prepared.collection_id)).await?;
    let fusion = eval_run::fusion_of(app, prepared, opts);
    fusion::check(&fusion)?;
    println!(
        "dataset {} split {}: {} documents, {} chunks, {} judged queries; candidates {} per signal, fusion {}",
        opts.dir.display(),
        opts.split,
        prepared.doc_names.len(),
        chunks,
        prepared.dataset.queries.len(),
        opts.candidates,
        fusion.label(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregation_flags() {
        assert_eq!(parse_aggregation("max").unwrap(), Aggregation::Max);
        assert_eq!(
            parse_aggregation("decay:0.25").unwrap(),
            Aggregation::Decayed(0.25)
        );
        for bad in ["decay:0", "decay:1.5", "decay:x", "sum", "decay:"] {
            assert!(parse_aggregation(bad).is_err(), "{bad}");
        }
    }
}
