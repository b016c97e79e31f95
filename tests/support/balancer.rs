//! A TCP load balancer on loopback, as a deployment puts in front of its
//! chatd nodes: each new connection goes to the next node in turn that
//! accepts it (a node that refuses is skipped), bytes pass through
//! untouched, and a connection ends when either side ends it. No sticky
//! sessions: a client that reconnects may land on any node.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// How long a node may take to accept a connection before the next is tried.
const CONNECT_WAIT: Duration = Duration::from_millis(500);

pub struct Balancer {
    /// `host:port` clients connect to.
    pub addr: String,
    /// Connections passed to each node, by the node's index.
    pub passed: Arc<Vec<AtomicU64>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Balancer {
    /// Balance over `nodes` (`host:port` each).
    pub async fn start(nodes: Vec<String>) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let passed: Arc<Vec<AtomicU64>> =
            Arc::new(nodes.iter().map(|_| AtomicU64::new(0)).collect());
        let counts = passed.clone();
        let next = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            for _ in 0..100_000 {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (nodes, counts, next) = (nodes.clone(), counts.clone(), next.clone());
                tokio::spawn(async move {
                    let start = next.fetch_add(1, Ordering::Relaxed);
                    for k in 0..nodes.len() {
                        let i = (start + k) % nodes.len();
                        let connect = TcpStream::connect(&nodes[i]);
                        if let Ok(Ok(node)) = tokio::time::timeout(CONNECT_WAIT, connect).await {
                            counts[i].fetch_add(1, Ordering::Relaxed);
                            pass(client, node).await;
                            return;
                        }
                    }
                    // No node accepts: the client's connection closes.
                });
            }
        });
        Balancer { addr, passed, task }
    }

    /// Connections passed to node `i` so far.
    pub fn passed_to(&self, i: usize) -> u64 {
        self.passed[i].load(Ordering::Relaxed)
    }
}

/// Copy both ways until either side ends.
async fn pass(mut client: TcpStream, mut node: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = node.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut node).await;
}
