//! `ragchat reindex`: rebuild both indexes from the database.

use std::time::Instant;

use super::bar;
use crate::app::App;
use crate::db::documents;
use crate::error::Error;
use crate::ingest::pipeline;

pub(super) async fn run(app: &App) -> Result<(), Error> {
    let total = documents::count_chunks(&app.db, None).await?;
    let pb = bar(total as u64, "reindex");
    let started = Instant::now();
    let n = pipeline::reindex(&app.indexer(), &|n| pb.set_position(n as u64)).await?;
    pb.finish_and_clear();
    println!(
        "reindexed {n} chunks in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
