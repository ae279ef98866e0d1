//! `ragchat user`: create users and reset passwords; needs only the database.

use super::UserCommand;
use crate::auth;
use crate::config::Settings;
use crate::db::{accounts, Db};
use crate::error::{Error, ErrorCode};
use crate::http;

pub(super) async fn run(command: UserCommand, settings: &Settings) -> Result<(), Error> {
    match command {
        UserCommand::Create {
            username,
            username_flag,
            admin,
            email,
            password_stdin,
            password,
        } => {
            let password = read_password(password, password_stdin)?;
            let username = username.or(username_flag).unwrap_or_default();
            create(settings, &username, &password, email.as_deref(), admin).await
        }
        UserCommand::SetPassword {
            username,
            password_stdin,
            password,
        } => {
            let password = read_password(password, password_stdin)?;
            set_password(settings, &username, &password).await
        }
    }
}

/// Creates the user and prints it as the HTTP API shows users.
async fn create(
    settings: &Settings,
    username: &str,
    password: &str,
    email: Option<&str>,
    admin: bool,
) -> Result<(), Error> {
    let db = Db::connect(settings).await?;
    let role = if admin {
        auth::Role::Admin
    } else {
        auth::Role::User
    };
    let user = auth::create_user(
        &db,
        username,
        password,
        email,
        role,
        settings.auth.min_password_length,
    )
    .await?;
    let json = serde_json::to_string(&http::views::UserView::from(&user))
        .map_err(|e| Error::Internal(e.to_string()))?;
    println!("{json}");
    Ok(())
}

async fn set_password(settings: &Settings, username: &str, password: &str) -> Result<(), Error> {
    auth::check_password("password", password, settings.auth.min_password_length)?;
    let db = Db::connect(settings).await?;
    let user = accounts::user_by_username(&db, &username.to_lowercase())
        .await?
        .ok_or_else(|| Error::new(ErrorCode::UserNotFound, format!("no user `{username}`")))?;
    let hash = auth::password::hash(password).await?;
    accounts::set_password(&db, &user.id, &hash).await?;
    println!(
        "password of `{}` changed; its sessions are ended",
        user.username
    );
    Ok(())
}

/// The password from the flag or the first line of stdin.
fn read_password(password: Option<String>, stdin: bool) -> Result<String, Error> {
    match (password, stdin) {
        (Some(p), _) => Ok(p),
        (None, true) => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| Error::Internal(format!("reading stdin: {e}")))?;
            Ok(line.trim_end_matches(['\r', '\n']).to_string())
        }
        (None, false) => Err(Error::new(
            ErrorCode::PasswordRequired,
            "give --password-stdin (or --password)",
        )),
    }
}
