//! `ragchat delete-collection`: remove a collection from the database and
//! both indexes.

use crate::app::App;
use crate::db::collections;
use crate::error::{Error, ErrorCode};
use crate::ingest::pipeline;

pub(super) async fn run(app: &App, name: &str) -> Result<(), Error> {
    let c = collections::collection_by_name(&app.db, name)
        .await?
        .ok_or_else(|| {
            Error::new(
                ErrorCode::CollectionNotFound,
                format!("no collection named `{name}`"),
            )
        })?;
    pipeline::delete_collection(&app.indexer(), &c).await?;
    println!("deleted collection {name}");
    Ok(())
}
