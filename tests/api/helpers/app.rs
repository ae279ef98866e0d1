//! The running application a black-box test talks to, as zero-to-production's
//! `TestApp`: the real server on a random port over a fresh data directory,
//! with a client bound to it and the users and collections the test asked for.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::client::{create_user_cli, ingest, login, Api, PASSWORD};
use super::{Server, TestDir};

/// A server on a fresh data directory with users (created with [`PASSWORD`])
/// and collections ingested before it starts.
pub struct TestApp {
    // Declared first so the server stops before its directory goes away.
    pub server: Server,
    pub api: Api,
    pub data: PathBuf,
    /// User name → id.
    pub users: HashMap<String, String>,
    // Held so the data directory (and its database) outlives the server.
    _dir: TestDir,
}

impl TestApp {
    /// `users`: (name, admin); `collections`: (name, path to ingest);
    /// `env`: extra server environment.
    pub fn start(
        users: &[(&str, bool)],
        collections: &[(&str, &Path)],
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_server(users, collections, env, false)
    }

    /// [`TestApp::start`] with the server's log kept (`self.server.log()`).
    pub fn start_logged(
        users: &[(&str, bool)],
        collections: &[(&str, &Path)],
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_server(users, collections, env, true)
    }

    fn start_server(
        users: &[(&str, bool)],
        collections: &[(&str, &Path)],
        env: &[(&str, &str)],
        keep_log: bool,
    ) -> Self {
        let dir = TestDir::new();
        let data = dir.path().join("data");
        let mut ids = HashMap::new();
        for (name, admin) in users {
            ids.insert(
                name.to_string(),
                create_user_cli(&data, name, PASSWORD, *admin),
            );
        }
        for (name, path) in collections {
            ingest(&data, path, name);
        }
        let server = if keep_log {
            Server::start_logged(&data, env)
        } else {
            Server::start_with(&data, env)
        };
        let api = Api::new(&server);
        Self {
            server,
            api,
            data,
            users: ids,
            _dir: dir,
        }
    }

    pub fn id(&self, user: &str) -> &str {
        self.users
            .get(user)
            .unwrap_or_else(|| panic!("no user {user}"))
    }

    /// Log in `user` with [`PASSWORD`]: (access, refresh).
    pub fn login(&self, user: &str) -> (String, String) {
        login(&self.api, user, PASSWORD)
    }
}
