//! docs/PROTOCOL.md and docs/OPERATIONS.md against the code: every example
//! decodes, and every request type, error code, event kind, push, limit and
//! config key is documented.

use chat::proto::{ErrorCode, Limits, REQUEST_TYPES, ServerFrame, decode_request};
use serde_json::Value;

fn read(path: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (client requests, server frames) of the `→` / `←` example lines.
fn examples(doc: &str) -> (Vec<&str>, Vec<&str>) {
    let mut requests = Vec::new();
    let mut frames = Vec::new();
    for line in doc.lines() {
        if let Some(r) = line.strip_prefix("→ ") {
            requests.push(r);
        } else if let Some(f) = line.strip_prefix("← ") {
            frames.push(f);
        }
    }
    (requests, frames)
}

#[test]
fn protocol_examples_decode() {
    let doc = read("docs/PROTOCOL.md");
    let (requests, frames) = examples(&doc);
    let mut types = std::collections::BTreeSet::new();
    for r in &requests {
        let (_, req) = decode_request(r).unwrap_or_else(|e| panic!("{r}\n{e:?}"));
        types.insert(req.type_name());
    }
    for t in REQUEST_TYPES {
        assert!(types.contains(t), "no example of the {t} request");
    }
    let mut kinds = std::collections::BTreeSet::new();
    let mut pushes = std::collections::BTreeSet::new();
    for f in &frames {
        let frame = ServerFrame::decode(f).unwrap_or_else(|e| panic!("{f}\n{e}"));
        let v: Value = serde_json::from_str(f).unwrap();
        pushes.insert(v["type"].as_str().unwrap().to_string());
        if let ServerFrame::Event(ev) = frame {
            kinds.insert(ev.body.kind());
        }
    }
    for k in [
        "message", "edit", "delete", "reaction", "join", "leave", "rename", "create",
    ] {
        assert!(kinds.contains(k), "no example of a {k} event");
    }
    for p in [
        "ok",
        "error",
        "event",
        "conversation",
        "receipt",
        "typing",
        "presence",
    ] {
        assert!(pushes.contains(p), "no example of a {p} frame");
    }
}

#[test]
fn every_error_code_and_limit_is_documented() {
    let doc = read("docs/PROTOCOL.md");
    for c in ErrorCode::ALL {
        assert!(
            doc.contains(&format!("| `{}` |", c.as_str())),
            "error code {c} is not in the table"
        );
    }
    let limits = serde_json::to_value(Limits::default()).unwrap();
    for (key, value) in limits.as_object().unwrap() {
        assert!(
            doc.contains(&format!("| `{key}` | {value}")),
            "limit {key} (default {value}) is not in the table"
        );
    }
}

#[test]
fn every_config_key_is_documented() {
    let doc = read("docs/OPERATIONS.md");
    let config = toml::to_string(&chat::server::Config::default()).unwrap();
    for line in config.lines() {
        if let Some((key, _)) = line.split_once(" = ") {
            assert!(
                doc.contains(&format!("`{key}`")),
                "config key {key} is not in OPERATIONS.md"
            );
        } else if line.starts_with('[') {
            assert!(
                doc.contains(line),
                "config section {line} is not in OPERATIONS.md"
            );
        }
    }
}
