//! Decoding the frames read most: a message `event` push, as chatd writes
//! it, into a [`ServerFrame`] (what the client's network task does with
//! every text frame), the `ok` of a `send`, and on chatd's side the `send`
//! request itself.
//!
//! `cargo bench --bench decode`

use chat::bench::client;
use chat::proto::{ServerFrame, decode_request, encode_event};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn message_push() -> String {
    // A generated message, with the ids chatd gives every push.
    let mut ev = client::message("c_5f0d3c1e9a7b42d8", 48_213, 7);
    ev.client_msg_id = Some("01JEXAMPLE7Q2N4R6T8V0X2Z4B".into());
    ev.eid = Some("e_9c1f2a7d3b5e4f60".into());
    encode_event(&ev)
}

fn decode(c: &mut Criterion) {
    let push = message_push();
    c.bench_function("decode a message event push", |b| {
        b.iter(|| ServerFrame::decode(black_box(&push)).expect("decodes"))
    });
    let ok = r#"{"type":"ok","id":8812,"seq":48213,"ts":1765000000123}"#;
    c.bench_function("decode the ok of a send", |b| {
        b.iter(|| ServerFrame::decode(black_box(ok)).expect("decodes"))
    });
    let send = r#"{"type":"send","id":8812,"conversation_id":"c_5f0d3c1e9a7b42d8","client_msg_id":"01JEXAMPLE7Q2N4R6T8V0X2Z4B","body":"the deploy finished: 3 nodes, 0 errors, see the dashboard"}"#;
    c.bench_function("decode a send request (chatd)", |b| {
        b.iter(|| decode_request(black_box(send)).expect("decodes"))
    });
}

criterion_group!(benches, decode);
criterion_main!(benches);
