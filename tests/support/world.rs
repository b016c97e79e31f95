//! The fixture client and CLI tests start from: a server over a temp dir,
//! its users as raw peers, headless clients or `chat` homes, each user's
//! data in a dir of its own under the same temp dir.
//!
//! ```ignore
//! let w = World::new();
//! let (mut alice, _, dm) = w.dm("alice", "bob").await;
//! let bob = w.client_login("bob", Fault::None).await;
//! ```

use super::cli::Home;
use super::client::{Client, Fault};
use super::raw::Peer;
use super::server::Server;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use tempfile::TempDir;

/// A server and the temp dir that holds its data and its clients' data.
/// Derefs to its [`Server`].
pub struct World {
    pub server: Server,
    tmp: TempDir,
}

impl World {
    /// A server on `127.0.0.1:0` with its data in `<tmp>/server`.
    pub fn new() -> World {
        let tmp = TempDir::new().expect("temp dir");
        let server = Server::start_in(&tmp.path().join("server"));
        World { server, tmp }
    }

    /// `<tmp>/<name>`: where the client called `name` keeps its data.
    pub fn dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Register `a` and `b` as raw peers; `a` opens a DM with `b`.
    pub async fn dm(&self, a: &str, b: &str) -> (Peer, Peer, String) {
        let [mut first, second] = self.users([a, b]).await;
        let conv = first.create_dm(b).await;
        (first, second, conv)
    }

    /// A headless client that registers `user`, its data in `dir(user)`;
    /// connected.
    pub async fn client(&self, user: &str) -> Client {
        let c = Client::register(&self.url(), &self.dir(user), user);
        c.wait_connected().await;
        c
    }

    /// A headless client of `user` (registered earlier) that logs in with
    /// `fault` between its network task and engine, its data in
    /// `dir(user)`; connected.
    pub async fn client_login(&self, user: &str, fault: Fault) -> Client {
        self.client_login_in(user, user, fault).await
    }

    /// Like [`World::client_login`], with the data in `dir(dir)`: another device.
    pub async fn client_login_in(&self, dir: &str, user: &str, fault: Fault) -> Client {
        let c = Client::login(&self.url(), &self.dir(dir), user, fault);
        c.wait_connected().await;
        c
    }

    /// A home in `dir(user)` for `chat` subprocesses against this server.
    pub fn home(&self, user: &str) -> Home {
        Home::new(self.dir(user), &self.url())
    }

    /// A headless client of `user` that starts from the cache and token in
    /// `dir(user)`, as the TUI starts; not waited for.
    pub fn client_resume(&self, user: &str) -> Client {
        Client::resume(&self.url(), &self.dir(user), user)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Its database (on PostgreSQL) goes with it, the server first.
        self.server.kill();
        super::backend::release(self.server.data_dir());
    }
}

impl Deref for World {
    type Target = Server;

    fn deref(&self) -> &Server {
        &self.server
    }
}

impl DerefMut for World {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.server
    }
}
