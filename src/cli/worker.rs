//! `ragchat worker`: job workers without the HTTP server.

use std::sync::Arc;

use crate::app::App;
use crate::error::Error;
use crate::startup;

pub(super) async fn run(app: Arc<App>, workers: Option<usize>) -> Result<(), Error> {
    startup::worker(app, workers).await
}
