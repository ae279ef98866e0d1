//! `ragchat query`: search from the terminal.

use std::sync::Arc;

use crate::app::App;
use crate::auth;
use crate::error::Error;
use crate::retrieve::{self, SearchRequest, SearchResponse};

pub(super) async fn run(app: &Arc<App>, req: SearchRequest, json: bool) -> Result<(), Error> {
    // The terminal is the operator's: every collection is readable.
    let resp = retrieve::search(app, req, &auth::Access::All).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&resp).map_err(|e| Error::Internal(e.to_string()))?
        );
        return Ok(());
    }
    print_results(&resp);
    Ok(())
}

fn print_results(resp: &SearchResponse) {
    println!("fusion: {}", resp.fusion.label());
    for r in &resp.results {
        let sig = |s: Option<retrieve::Signal>| {
            s.map(|s| format!("#{} ({:.3})", s.rank, s.score))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "{:>2}. {:.4}  {}  [{}]  dense {}  lexical {}",
            r.rank,
            r.score,
            r.title,
            r.collection,
            sig(r.dense),
            sig(r.lexical)
        );
        println!("    {}", r.snippet.text.replace('\n', " "));
        println!("    document {} chunk {}", r.document_id, r.chunk_id);
    }
    println!("{} results in {:.1} ms", resp.results.len(), resp.took_ms);
}
