//! What the hub keeps per user on a node: every node holds every
//! conversation's members, so this is also what a user costs on each node
//! they are not connected to. 100,000 users in rooms of 100 are loaded
//! from a snapshot, and the bytes the allocator was asked for meanwhile
//! are counted (the allocator's own rounding and free space come on top).
//!
//! `cargo bench --bench hub_memory`

use chat::proto::{ConvKind, ReceiptPair};
use chat::server::hub::Hub;
use chat::store::log::{ConvRecord, Snapshot};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}
#[global_allocator]
static A: Counting = Counting;

fn main() {
    let users = 100_000usize;
    let room = 100usize;
    let hub = Hub::new(64);
    let before = LIVE.load(Ordering::Relaxed);
    let mut snap = Snapshot::default();
    for r in 0..users / room {
        let mut receipts = BTreeMap::new();
        for m in 0..room {
            receipts.insert(
                format!("bench-{}-{}", r, m),
                ReceiptPair {
                    delivered: 5,
                    read: 5,
                },
            );
        }
        snap.conversations.push(ConvRecord {
            id: format!("01936f2e-7b1c-7d3a-9f00-{:012}", r),
            kind: ConvKind::Group,
            name: Some(format!("room {r}")),
            last_seq: 5,
            receipts,
            roles: BTreeMap::new(),
        });
    }
    hub.load(snap);
    let after = LIVE.load(Ordering::Relaxed);
    println!(
        "hub state: {} bytes per user ({users} users in rooms of {room})",
        (after - before) / users
    );
}
