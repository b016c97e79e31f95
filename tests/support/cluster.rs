//! Several chatd nodes in this process on one PostgreSQL database and one
//! Redis: the scale-out mode as the tests see it. A cluster is made only
//! when `CHATD_TEST_PG` and `CHATD_TEST_REDIS` are set (see
//! [`backend`](super::backend)); without them [`Cluster::start`] says so and
//! returns `None`, and the test returns.

use super::backend::{self, Database};
use super::server::Server;
use chat::server::Config;

/// Nodes on one database and one bus. The nodes are dropped (killed)
/// before the database.
pub struct Cluster {
    pub nodes: Vec<Server>,
    pub bus: String,
    pub db: Database,
}

impl Cluster {
    /// `n` nodes on a fresh database and the test Redis; `None` (with a note
    /// on stderr) when the variables are not set.
    pub fn start(n: usize) -> Option<Cluster> {
        Self::start_with(n, None, |_| {})
    }

    /// Like [`Cluster::start`], on the Redis at `bus` (else the test
    /// Redis), every node's configuration changed by `tweak`.
    pub fn start_with(
        n: usize,
        bus: Option<String>,
        tweak: impl Fn(&mut Config),
    ) -> Option<Cluster> {
        let (Some(_), Some(test_bus)) = (backend::pg_base(), backend::redis_url()) else {
            eprintln!(
                "skipped: several nodes need PostgreSQL and Redis; set {} and {}",
                backend::PG_VAR,
                backend::REDIS_VAR
            );
            return None;
        };
        let bus = bus.unwrap_or(test_bus);
        let db = Database::create()?;
        let nodes = (0..n)
            .map(|_| {
                Server::start_node(|c| {
                    c.store.url = Some(db.url.clone());
                    c.bus.url = Some(bus.clone());
                    // Nodes that die must not hold a user online for long.
                    c.bus.presence_ttl_secs = 3;
                    tweak(c);
                })
            })
            .collect();
        let cluster = Cluster { nodes, bus, db };
        for node in &cluster.nodes {
            node.wait_ready();
        }
        Some(cluster)
    }

    pub fn node(&self, i: usize) -> &Server {
        &self.nodes[i]
    }

    pub fn node_mut(&mut self, i: usize) -> &mut Server {
        &mut self.nodes[i]
    }

    /// Every node's `host:port`.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }
}
