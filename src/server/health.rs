//! What `GET /healthz` and `GET /readyz` report: whether this node reaches
//! the store and the bus.
//!
//! A store that can be probed (a database over the network) gives a
//! [`StoreProbe`]; the embedded store has none and is always reachable. A
//! node whose store or bus is unreachable keeps serving its clients but
//! answers `/readyz` with 503, so that a load balancer sends new clients
//! elsewhere until it recovers.

use super::bus::BusStatus;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Checks that the store answers (`Err`: why not).
pub type StoreProbe =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// How long a store probe may take before it counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What this node depends on, to be checked.
#[derive(Clone, Default)]
pub struct Health {
    store: Option<StoreProbe>,
    bus: Option<Arc<BusStatus>>,
}

/// The state of one dependency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Ok,
    Down(String),
}

/// One check of every dependency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub store: Check,
    /// `None`: no bus (one node).
    pub bus: Option<Check>,
}

impl Health {
    pub fn with_store(mut self, probe: StoreProbe) -> Health {
        self.store = Some(probe);
        self
    }

    pub fn with_bus(mut self, bus: Option<Arc<BusStatus>>) -> Health {
        self.bus = bus;
        self
    }

    /// Whether there is more to report than that the process answers: a
    /// store to probe or a bus. (The embedded node's `/healthz` stays a
    /// plain `ok`.)
    pub fn detailed(&self) -> bool {
        self.store.is_some() || self.bus.is_some()
    }

    pub async fn check(&self) -> Report {
        let store = match &self.store {
            None => Check::Ok,
            Some(probe) => match tokio::time::timeout(PROBE_TIMEOUT, probe()).await {
                Ok(Ok(())) => Check::Ok,
                Ok(Err(e)) => Check::Down(e),
                Err(_) => Check::Down("no answer".into()),
            },
        };
        let bus = self.bus.as_ref().map(|b| {
            if b.ready() {
                Check::Ok
            } else {
                Check::Down("redis unreachable".into())
            }
        });
        Report { store, bus }
    }
}

impl Check {
    fn word(&self) -> &str {
        match self {
            Check::Ok => "ok",
            Check::Down(_) => "down",
        }
    }
}

impl Report {
    /// Whether every dependency is reachable.
    pub fn ok(&self) -> bool {
        self.store == Check::Ok && self.bus.as_ref().is_none_or(|b| *b == Check::Ok)
    }

    /// `{"status":"ok"|"degraded","store":"ok"|"down","bus":…}`, with an
    /// `error` naming what is down.
    pub fn to_json(&self) -> String {
        let mut v = serde_json::json!({
            "status": if self.ok() { "ok" } else { "degraded" },
            "store": self.store.word(),
        });
        if let Some(bus) = &self.bus {
            v["bus"] = bus.word().into();
        }
        let errors: Vec<String> = [("store", Some(&self.store)), ("bus", self.bus.as_ref())]
            .into_iter()
            .filter_map(|(name, c)| match c {
                Some(Check::Down(why)) => Some(format!("{name}: {why}")),
                _ => None,
            })
            .collect();
        if !errors.is_empty() {
            v["error"] = errors.join("; ").into();
        }
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_embedded_node_is_healthy_with_nothing_to_report() {
        let h = Health::default();
        assert!(!h.detailed());
        let r = h.check().await;
        assert!(r.ok());
        assert_eq!(r.to_json(), r#"{"status":"ok","store":"ok"}"#);
    }

    #[tokio::test]
    async fn a_store_that_fails_its_probe_makes_the_node_unready() {
        let probe: StoreProbe = Arc::new(|| Box::pin(async { Err("refused".to_string()) }));
        let h = Health::default()
            .with_store(probe)
            .with_bus(Some(Arc::new(BusStatus::default())));
        assert!(h.detailed());
        let r = h.check().await;
        assert!(!r.ok());
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["status"], "degraded");
        assert_eq!(v["store"], "down");
        assert_eq!(v["bus"], "down");
        assert!(v["error"].as_str().unwrap().contains("refused"));
    }
}
