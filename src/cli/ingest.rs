//! `ragchat ingest`: load a file or directory into a collection.

use std::path::Path;

use super::bar;
use crate::app::App;
use crate::db::collections::{self, CollectionChanges};
use crate::error::{Error, ErrorCode};
use crate::ingest::{load, pipeline};

pub(super) async fn run(
    app: &App,
    path: &Path,
    collection: &str,
    public: bool,
) -> Result<(), Error> {
    if collection.trim().is_empty() {
        return Err(Error::new(
            ErrorCode::UnknownCollection,
            "collection name must not be empty",
        ));
    }
    let p = path.to_path_buf();
    let docs = tokio::task::spawn_blocking(move || load::load_path(&p))
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    let c = collections::ensure_collection(&app.db, collection).await?;
    if public && !c.public {
        let changes = CollectionChanges {
            public: Some(true),
            ..Default::default()
        };
        collections::update_collection(&app.db, &c.id, changes).await?;
    }
    let pb = bar(docs.len() as u64, "ingest");
    let report = pipeline::ingest(&app.indexer(), &c, docs, &|n| pb.set_position(n as u64)).await?;
    pb.finish_and_clear();
    println!(
        "ingested {} documents into `{collection}` ({} new, {} updated, {} unchanged, {} empty): \
         {} chunks embedded, {} kept, {} deleted in {:.1} s ({:.1} chunks/s)",
        report.documents,
        report.added,
        report.updated,
        report.unchanged,
        report.skipped_empty,
        report.chunks_embedded,
        report.chunks_kept,
        report.chunks_deleted,
        report.seconds,
        report.chunks_per_second()
    );
    Ok(())
}
