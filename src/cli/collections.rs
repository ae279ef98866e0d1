//! `ragchat collections`: list collections with their sizes.

use crate::app::App;
use crate::db::collections;
use crate::db::documents;
use crate::error::Error;

pub(super) async fn run(app: &App) -> Result<(), Error> {
    for c in collections::list_collections(&app.db).await? {
        let docs = documents::count_documents(&app.db, Some(&c.id)).await?;
        let chunks = documents::count_chunks(&app.db, Some(&c.id)).await?;
        let fusion = c
            .tuned_fusion()
            .map(|f| format!("\ttuned fusion: {}", f.label()))
            .unwrap_or_default();
        println!("{}\t{docs} documents\t{chunks} chunks{fusion}", c.name);
    }
    Ok(())
}
