//! The App's cache of bodies: parsed and highlighted once per text, laid
//! out once per width and trailer, so a frame over the same window copies
//! lines instead of parsing, highlighting and wrapping again.

use super::markdown::{Doc, Palette, lay_out, parse};
use super::wrap::Seg;
use ratatui::text::Span;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Bodies kept by a [`Cache`] before it starts over.
const CACHE_MAX: usize = 4096;

/// Parsed bodies by text, so a frame parses and highlights only bodies it
/// has not seen. Starts over when the palette changes or it grows past
/// [`CACHE_MAX`] bodies.
#[derive(Default)]
pub struct Cache {
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    palette: Option<Palette>,
    docs: HashMap<String, Arc<Doc>>,
    /// Bodies laid out at a width, with their trailer: a frame that lays out
    /// the same window again (every frame does) copies lines instead of
    /// wrapping again.
    laid: HashMap<LaidKey, Arc<Vec<Vec<Span<'static>>>>>,
}

/// What a laid-out body depends on: the body, both widths and the trailer.
#[derive(PartialEq, Eq, Hash)]
struct LaidKey {
    body: String,
    first: usize,
    rest: usize,
    trailer: Vec<Seg>,
}

impl Cache {
    pub fn doc(&self, body: &str, palette: &Palette) -> Arc<Doc> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.palette.as_ref() != Some(palette) {
            inner.docs.clear();
            inner.laid.clear();
            inner.palette = Some(palette.clone());
        }
        if let Some(doc) = inner.docs.get(body) {
            return Arc::clone(doc);
        }
        let doc = Arc::new(parse(body, palette));
        if inner.docs.len() >= CACHE_MAX {
            inner.docs.clear();
        }
        inner.docs.insert(body.to_string(), Arc::clone(&doc));
        doc
    }

    /// `body` parsed and laid out as [`lay_out`] does, from the cache when
    /// the same body was laid out at the same widths with the same trailer.
    pub fn laid(
        &self,
        body: &str,
        palette: &Palette,
        (first, rest): (usize, usize),
        trailer: &[Seg],
    ) -> (Arc<Doc>, Arc<Vec<Vec<Span<'static>>>>) {
        let doc = self.doc(body, palette);
        let key = LaidKey {
            body: body.to_string(),
            first,
            rest,
            trailer: trailer.to_vec(),
        };
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lines) = inner.laid.get(&key) {
            return (doc, Arc::clone(lines));
        }
        let lines = Arc::new(lay_out(&doc, first, rest, trailer));
        if inner.laid.len() >= CACHE_MAX {
            inner.laid.clear();
        }
        inner.laid.insert(key, Arc::clone(&lines));
        (doc, lines)
    }
}
