//! `ragchat serve`: the HTTP server with its job workers.

use std::sync::Arc;

use crate::app::App;
use crate::config::{ConfigError, Settings};
use crate::error::Error;
use crate::startup;

/// Apply `--bind` and `--dev` and check the settings before anything starts:
/// a server must not come up without a signing secret.
pub(super) fn prepare(
    settings: &mut Settings,
    bind: Option<&str>,
    dev: bool,
) -> Result<(), ConfigError> {
    if let Some(b) = bind {
        settings.server.bind = b.to_string();
    }
    settings.validate()?;
    let secret = settings.jwt_secret(dev)?;
    // In dev mode the random secret is fixed here so the whole process signs
    // and verifies with the same one.
    if settings.auth.jwt_secret.is_empty() {
        eprintln!(
            "warning: --dev: signing tokens with a random secret; they end with this process"
        );
        settings.auth.jwt_secret = hex::encode(secret);
    }
    if dev {
        settings.auth.registration = crate::config::Registration::Open;
    }
    Ok(())
}

pub(super) async fn run(app: Arc<App>) -> Result<(), Error> {
    startup::serve(app).await
}
