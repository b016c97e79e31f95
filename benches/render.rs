//! Rendering a long conversation at 200×60 on a `TestBackend`: the cost of
//! one frame as `chat` draws it (the engine keeps a 200-row window of the
//! focused conversation in the model; 2,000 rows shows how it scales).

use chat::bench::client;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn render(c: &mut Criterion) {
    for rows in [client::WINDOW, 2000] {
        let app = client::long_conversation_app(rows, (200, 60)).expect("app");
        let mut term = client::terminal(200, 60);
        c.bench_function(&format!("render 200x60, {rows} rows"), |b| {
            b.iter(|| client::draw(&mut term, black_box(&app)))
        });
    }
}

criterion_group!(benches, render);
criterion_main!(benches);
