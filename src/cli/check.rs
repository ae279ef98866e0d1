//! `ragchat check [--repair] [--catch-up]`: do the database and both indexes
//! agree, and if not, make the indexes follow the database.

use crate::app::App;
use crate::error::Error;
use crate::ingest::pipeline::{self, CheckReport};

/// Prints the counts and up to five ids of each difference; an inconsistency
/// is an error, so the exit code says it. With `repair`, the differences are
/// fixed and the check runs again.
pub(super) async fn run(app: &App, repair: bool) -> Result<(), Error> {
    let ix = app.indexer();
    let r = pipeline::check(&ix).await?;
    print(&r);
    print_lag(app).await?;
    if r.is_consistent() {
        println!("consistent");
        return Ok(());
    }
    if !repair {
        return Err(Error::Unavailable(
            "indexes differ from the database; run `ragchat check --repair` (or `ragchat reindex`)"
                .into(),
        ));
    }
    let done = pipeline::repair(&ix, &r).await?;
    println!(
        "repaired: removed {} orphans from the vector index and {} from the lexical index, indexed {} chunks",
        done.removed_from_vector, done.removed_from_lexical, done.indexed
    );
    let again = pipeline::check(&ix).await?;
    print(&again);
    print_lag(app).await?;
    if again.is_consistent() {
        println!("consistent");
        Ok(())
    } else {
        Err(Error::Unavailable(
            "indexes still differ from the database after the repair; run `ragchat reindex`".into(),
        ))
    }
}

fn print(r: &CheckReport) {
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
}

/// Where this node's lexical index stands in the database's change log: a
/// difference from the database that is only entries not applied yet goes
/// away when the node next catches up (any command but `check`, or
/// `check --catch-up`).
async fn print_lag(app: &App) -> Result<(), Error> {
    let lag = app.follower()?.lag().await?;
    if lag.behind > 0 {
        println!(
            "  lexical index at change-log position {} of {}: {} entries not applied yet",
            lag.position, lag.head, lag.behind
        );
    }
    Ok(())
}
