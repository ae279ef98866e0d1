//! `ragchat migrate`: apply pending database migrations (connecting does).

use crate::config::Settings;
use crate::db::Db;
use crate::error::Error;

pub(super) async fn run(settings: &Settings) -> Result<(), Error> {
    let db = Db::connect(settings).await?;
    println!("database schema is up to date ({})", db.backend());
    Ok(())
}
