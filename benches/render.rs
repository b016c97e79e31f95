//! Rendering a long conversation at 200×60 on a `TestBackend`: the cost of
//! one frame as `chat` draws it (the engine keeps a 200-row window of the
//! focused conversation in the model; 2,000 rows shows how it scales), the
//! same window with every body a highlighted code block, and the one-off
//! cost of parsing and highlighting such a window.

use chat::bench::client;
use chat::client::view::MessageRow;
use chat::ui::App;
use chat::ui::render::markdown::{Cache, Palette};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

const SNIPPETS: [(&str, &str); 4] = [
    (
        "rust",
        "fn retry<F: FnMut() -> Result<u32, String>>(mut f: F) -> Option<u32> {\n    for attempt in 0..3 {\n        match f() {\n            Ok(v) => return Some(v),\n            Err(e) => eprintln!(\"attempt {attempt}: {e}\"),\n        }\n    }\n    None\n}",
    ),
    (
        "python",
        "def fetch(url, timeout=5):\n    \"\"\"Fetch a page.\"\"\"\n    with urllib.request.urlopen(url, timeout=timeout) as r:\n        return r.read().decode(\"utf-8\")",
    ),
    (
        "json",
        "{\n  \"name\": \"chat\",\n  \"version\": \"0.1.0\",\n  \"features\": [\"markdown\", \"highlight\"],\n  \"limits\": { \"body\": 16384 }\n}",
    ),
    (
        "sh",
        "set -euo pipefail\nfor f in *.log; do\n  grep -c ERROR \"$f\" || true\ndone | sort -n | tail -5",
    ),
];

/// Message `i` as a short sentence and a fenced code block.
fn code_body(i: usize) -> String {
    let (lang, code) = SNIPPETS[i % SNIPPETS.len()];
    format!("try this (**{i}**):\n```{lang}\n{code}\n```")
}

fn with_code_blocks(app: &mut App) {
    for rows in app.model.messages.values_mut() {
        for (i, row) in rows.iter_mut().enumerate() {
            if let MessageRow::Message(m) = row {
                m.body = code_body(i);
            }
        }
    }
}

fn render(c: &mut Criterion) {
    for rows in [client::WINDOW, 2000] {
        let app = client::long_conversation_app(rows, (200, 60)).expect("app");
        let mut term = client::terminal(200, 60);
        c.bench_function(&format!("render 200x60, {rows} rows"), |b| {
            b.iter(|| client::draw(&mut term, black_box(&app)))
        });
    }
    let mut app = client::long_conversation_app(client::WINDOW, (200, 60)).expect("app");
    with_code_blocks(&mut app);
    let mut term = client::terminal(200, 60);
    c.bench_function("render 200x60, 200 rows of highlighted code", |b| {
        b.iter(|| client::draw(&mut term, black_box(&app)))
    });
    let palette = Palette::new(&app.theme, "me");
    let bodies: Vec<String> = (0..client::WINDOW).map(code_body).collect();
    c.bench_function("parse + highlight 200 code bodies (cold cache)", |b| {
        b.iter(|| {
            let cache = Cache::default();
            for body in &bodies {
                black_box(cache.doc(body, &palette));
            }
        })
    });
}

criterion_group!(benches, render);
criterion_main!(benches);
