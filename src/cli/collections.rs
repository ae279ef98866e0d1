//! `ragchat collections`: list collections with their sizes.

use crate::app::App;
use crate::db::repo;
use crate::error::Error;

pub(super) async fn run(app: &App) -> Result<(), Error> {
    for c in repo::list_collections(&app.db).await? {
        let docs = repo::count_documents(&app.db, Some(&c.id)).await?;
        let chunks = repo::count_chunks(&app.db, Some(&c.id)).await?;
        println!("{}\t{docs} documents\t{chunks} chunks", c.name);
    }
    Ok(())
}
