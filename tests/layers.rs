//! The dependency directions of DESIGN.md, checked on the source: the
//! client never imports the UI or the server; storage never imports the
//! client, the UI or the transport; the server never imports the client or
//! the UI; the protocol imports nothing of ours. A forbidden `crate::…`
//! path anywhere in a layer's code (comments aside) fails this test.

use std::path::{Path, PathBuf};

/// (layer directory, top-level modules it must not name).
const RULES: &[(&str, &[&str])] = &[
    ("src/client", &["ui", "server", "store", "net", "bench"]),
    ("src/store", &["client", "ui", "net", "server", "bench"]),
    ("src/server", &["client", "ui", "bench"]),
    ("src/net", &["client", "ui", "bench"]),
    ("src/ui", &["server", "store", "net", "bench"]),
    (
        "src/proto",
        &["client", "ui", "server", "store", "net", "bench"],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The forbidden module names that `code` refers to through `crate::`,
/// either directly (`crate::ui::…`) or in a group (`crate::{ui, …}`).
fn forbidden_refs(code: &str, forbidden: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end]
                    .split(',')
                    .map(|n| n.trim().split("::").next().unwrap_or("").trim())
                    .collect()
            } else {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                vec![&rest[..end]]
            };
            for n in names {
                if forbidden.contains(&n) {
                    found.push(n.to_string());
                }
            }
        }
    }
    found
}

#[test]
fn the_checker_sees_direct_and_grouped_imports() {
    let bad = ["ui", "server"];
    assert_eq!(forbidden_refs("use crate::ui::Model;", &bad), ["ui"]);
    assert_eq!(
        forbidden_refs("use crate::{proto::Event, server::Config};", &bad),
        ["server"]
    );
    assert_eq!(
        forbidden_refs("let x = crate::ui_like::f();", &bad),
        [] as [&str; 0]
    );
    assert!(forbidden_refs("// see crate::ui", &bad).is_empty());
    assert!(forbidden_refs("use crate::client::Update;", &bad).is_empty());
}

#[test]
fn dependencies_point_one_way() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut broken = Vec::new();
    for (dir, forbidden) in RULES {
        let mut files = Vec::new();
        rust_files(&root.join(dir), &mut files);
        assert!(!files.is_empty(), "no sources under {dir}");
        for f in files {
            let code = std::fs::read_to_string(&f).expect("read a source file");
            for name in forbidden_refs(&code, forbidden) {
                broken.push(format!(
                    "{} names crate::{name}",
                    f.strip_prefix(root).unwrap_or(&f).display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}
