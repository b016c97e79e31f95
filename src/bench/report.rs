//! What a run reports: named figures in order, printed as one JSON object or
//! as a readable summary; and latency percentiles.

use serde_json::{Map, Value, json};

/// Latency samples in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples(pub Vec<u32>);

impl Samples {
    pub fn push(&mut self, micros: u64) {
        self.0.push(micros.min(u64::from(u32::MAX)) as u32);
    }
    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// p50, p90, p99, max in milliseconds (zeros when empty).
    pub fn summary(&mut self) -> Percentiles {
        if self.0.is_empty() {
            return Percentiles::default();
        }
        self.0.sort_unstable();
        let at = |q: f64| {
            let i = ((self.0.len() as f64 - 1.0) * q).round() as usize;
            f64::from(self.0[i.min(self.0.len() - 1)]) / 1000.0
        };
        Percentiles {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn to_json(self) -> Value {
        json!({"p50_ms": r3(self.p50), "p90_ms": r3(self.p90), "p99_ms": r3(self.p99), "max_ms": r3(self.max)})
    }
}

/// Round to three decimals, for readable JSON.
pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One run's figures, in the order they were added.
#[derive(Debug, Clone)]
pub struct Report {
    pub scenario: String,
    pub fields: Vec<(String, Value)>,
}

impl Report {
    pub fn new(scenario: &str) -> Report {
        Report {
            scenario: scenario.to_string(),
            fields: Vec::new(),
        }
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        let value = match value.into() {
            Value::Number(n) if n.is_f64() => json!(r3(n.as_f64().unwrap_or(0.0))),
            v => v,
        };
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((key.to_string(), value)),
        }
        self
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A number figure (0 when absent).
    pub fn num(&self, key: &str) -> f64 {
        self.get(key).and_then(Value::as_f64).unwrap_or(0.0)
    }

    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("scenario".into(), Value::String(self.scenario.clone()));
        for (k, v) in &self.fields {
            map.insert(k.clone(), v.clone());
        }
        Value::Object(map)
    }

    /// `key: value` lines under the scenario's name.
    pub fn to_text(&self) -> String {
        let mut out = format!("== {}\n", self.scenario);
        for (k, v) in &self.fields {
            let shown = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push_str(&format!("  {k:<22} {shown}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_set() {
        let mut s = Samples::default();
        for i in 1..=100u64 {
            s.push(i * 1000);
        }
        let p = s.summary();
        assert_eq!((p.p50, p.p99, p.max), (51.0, 99.0, 100.0));
        assert_eq!(Samples::default().summary(), Percentiles::default());
    }

    #[test]
    fn reports_keep_order_and_round() {
        let mut r = Report::new("x");
        r.set("b", 1.23456).set("a", "y").set("b", 2);
        assert_eq!(r.fields[0].0, "b");
        assert_eq!(r.num("b"), 2.0);
        assert!(r.to_text().contains("a"));
        assert_eq!(r.to_json()["scenario"], "x");
    }
}
