//! `ragchat check`: do the database and both indexes agree?

use crate::app::App;
use crate::error::Error;
use crate::ingest::pipeline;

/// Prints the counts and up to five ids of each difference; an inconsistency
/// is an error, so the exit code says it.
pub(super) async fn run(app: &App) -> Result<(), Error> {
    let r = pipeline::check(&app.indexer()).await?;
    println!(
        "database {} chunks, vector index {} points, lexical index {} documents",
        r.db_chunks, r.vector_points, r.lexical_docs
    );
    let show = |what: &str, ids: &[String]| {
        if !ids.is_empty() {
            let head: Vec<&str> = ids.iter().take(5).map(String::as_str).collect();
            println!("  {what}: {} (e.g. {})", ids.len(), head.join(", "));
        }
    };
    show("missing in vector index", &r.missing_in_vector);
    show("missing in lexical index", &r.missing_in_lexical);
    show("orphans in vector index", &r.orphans_in_vector);
    show("orphans in lexical index", &r.orphans_in_lexical);
    if r.is_consistent() {
        println!("consistent");
        Ok(())
    } else {
        Err(Error::Unavailable(
            "indexes differ from the database; run `ragchat reindex` to repair".into(),
        ))
    }
}
