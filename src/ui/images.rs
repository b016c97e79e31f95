//! Inline images: shared images drawn under their file row, with the
//! terminal's graphics protocol (kitty, iTerm2, sixel) where it has one and
//! as half-blocks elsewhere (tmux included).
//!
//! An image is drawn from its event's preview at once and from the full
//! file once the engine has fetched it (asked for when its row is on
//! screen). Decoding and encoding for the terminal run on blocking threads
//! ([`decode`]); the App only keeps the results, at most [`KEEP`] of them.
//! The size an image takes on screen is fixed by its pixel size, so the
//! full image replaces the preview without moving anything.
//!
//! The terminal is asked which protocol it speaks once, at start, only when
//! standard input and output are a terminal and `CHAT_NO_TERMINAL_QUERY`
//! is not set (the tests set it), and for at most [`QUERY_TIMEOUT`].

use base64::Engine as _;
use image::DynamicImage;
use ratatui::layout::Size;
use ratatui_image::picker::{Picker, ProtocolType};
use ratatui_image::protocol::Protocol;
use ratatui_image::{FilterType, Resize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

/// Images kept ready to draw.
const KEEP: usize = 48;
/// Most cells an image takes: columns, rows.
pub const MAX_CELLS: (u16, u16) = (32, 8);
/// How long the terminal may take to answer the graphics query.
const QUERY_TIMEOUT: Duration = Duration::from_millis(300);
/// Largest image file fetched and decoded for drawing.
pub const MAX_FILE: u64 = 32 * 1024 * 1024;

/// Where an image's pixels come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The event's preview, decoded from base64.
    Preview(String),
    /// The downloaded file.
    File(PathBuf),
}

/// Work for a blocking thread: decode `source` and encode it for the
/// terminal.
#[derive(Debug, Clone)]
pub struct ImageJob {
    pub digest: String,
    pub source: Source,
    /// The image's size in pixels, when the event says it.
    pub pixels: Option<(u32, u32)>,
    pub picker: Picker,
}

/// A finished job.
pub struct Decoded {
    pub digest: String,
    pub full: bool,
    pub protocol: Option<Protocol>,
}

impl std::fmt::Debug for Decoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded")
            .field("digest", &self.digest)
            .field("full", &self.full)
            .field("ok", &self.protocol.is_some())
            .finish()
    }
}

struct Shown {
    protocol: Protocol,
    full: bool,
}

/// The images the App can draw, and what it has asked for.
#[derive(Default)]
pub struct Images {
    /// `None`: images are off.
    picker: Option<Picker>,
    shown: HashMap<String, Shown>,
    /// Oldest first, for eviction.
    order: VecDeque<String>,
    /// Decodes under way, and digests that failed (not tried again).
    started: HashSet<String>,
    /// Full images asked of the engine.
    fetched: HashSet<String>,
    /// Jobs for the UI loop to run.
    pub jobs: Vec<ImageJob>,
}

impl Images {
    /// Images drawn with `picker`'s protocol.
    pub fn with_picker(picker: Picker) -> Images {
        Images {
            picker: Some(picker),
            ..Images::default()
        }
    }

    pub fn enabled(&self) -> bool {
        self.picker.is_some()
    }

    /// The protocol to draw for `digest`, if decoded.
    pub fn protocol(&self, digest: &str) -> Option<&Protocol> {
        self.shown.get(digest).map(|s| &s.protocol)
    }

    /// Queue the preview of a file row not seen before.
    pub fn want_preview(&mut self, digest: &str, preview: &str, pixels: Option<(u32, u32)>) {
        let Some(picker) = &self.picker else { return };
        if self.shown.contains_key(digest) || !self.started.insert(digest.to_string()) {
            return;
        }
        self.jobs.push(ImageJob {
            digest: digest.to_string(),
            source: Source::Preview(preview.to_string()),
            pixels,
            picker: picker.clone(),
        });
    }

    /// Whether the full image of `digest` should be fetched now (once).
    pub fn want_full(&mut self, digest: &str) -> bool {
        self.enabled()
            && !self.shown.get(digest).is_some_and(|s| s.full)
            && self.fetched.insert(digest.to_string())
    }

    /// The full image is on disk: decode it.
    pub fn file_ready(&mut self, digest: &str, path: PathBuf, pixels: Option<(u32, u32)>) {
        let Some(picker) = &self.picker else { return };
        self.jobs.push(ImageJob {
            digest: digest.to_string(),
            source: Source::File(path),
            pixels,
            picker: picker.clone(),
        });
    }

    /// Keep a finished decode.
    pub fn insert(&mut self, done: Decoded) {
        let Some(protocol) = done.protocol else {
            return;
        };
        if self.shown.get(&done.digest).is_some_and(|s| s.full) && !done.full {
            return;
        }
        self.order.retain(|d| d != &done.digest);
        self.order.push_back(done.digest.clone());
        self.shown.insert(
            done.digest,
            Shown {
                protocol,
                full: done.full,
            },
        );
        while self.order.len() > KEEP {
            if let Some(old) = self.order.pop_front() {
                self.shown.remove(&old);
                self.started.remove(&old);
                self.fetched.remove(&old);
            }
        }
    }
}

/// The cells an image of `w`×`h` pixels takes: as wide as fits in
/// [`MAX_CELLS`] with its aspect kept, given the font's cell size.
pub fn cells_for(w: u32, h: u32, font: (u16, u16)) -> (u16, u16) {
    let (fw, fh) = (f64::from(font.0.max(1)), f64::from(font.1.max(1)));
    let (w, h) = (f64::from(w.max(1)), f64::from(h.max(1)));
    let (max_c, max_r) = (f64::from(MAX_CELLS.0), f64::from(MAX_CELLS.1));
    // Columns and rows at the image's aspect, scaled to the larger bound.
    let aspect = (h / fh) / (w / fw);
    let mut cols = max_c;
    let mut rows = cols * aspect;
    if rows > max_r {
        rows = max_r;
        cols = rows / aspect;
    }
    (cols.round().max(1.0) as u16, rows.round().max(1.0) as u16)
}

/// Decode and encode one image (blocking).
pub fn decode(job: ImageJob) -> Decoded {
    let full = matches!(job.source, Source::File(_));
    let img = match &job.source {
        Source::Preview(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|bytes| image::load_from_memory(&bytes).ok()),
        Source::File(path) => std::fs::metadata(path)
            .ok()
            .filter(|m| m.len() <= MAX_FILE)
            .and_then(|_| image::ImageReader::open(path).ok())
            .and_then(|r| r.with_guessed_format().ok())
            .and_then(|r| r.decode().ok()),
    };
    let protocol = img.and_then(|img| encode(&job.picker, img, job.pixels));
    Decoded {
        digest: job.digest,
        full,
        protocol,
    }
}

/// `img` scaled to its cells (by the event's pixel size, else its own) and
/// encoded for the picker's protocol.
pub fn encode(picker: &Picker, img: DynamicImage, pixels: Option<(u32, u32)>) -> Option<Protocol> {
    let (w, h) = pixels.unwrap_or((img.width(), img.height()));
    let font = picker.font_size();
    let (cols, rows) = cells_for(w, h, (font.width, font.height));
    let px = (
        u32::from(cols) * u32::from(font.width),
        u32::from(rows) * u32::from(font.height),
    );
    let img = img.resize_exact(px.0.max(1), px.1.max(1), FilterType::Triangle);
    picker
        .new_protocol(img, Size::new(cols, rows), Resize::Fit(None))
        .ok()
}

/// The picker for this terminal: `None` when images are off; asked of the
/// terminal (bounded by a short timeout) only when standard output is one,
/// half-blocks otherwise.
pub fn detect(enabled: bool) -> Option<Picker> {
    use std::io::IsTerminal;
    if !enabled {
        return None;
    }
    let ask = std::io::stdout().is_terminal()
        && std::io::stdin().is_terminal()
        && std::env::var_os("CHAT_NO_TERMINAL_QUERY").is_none();
    if !ask {
        return Some(Picker::halfblocks());
    }
    let options = ratatui_image::picker::cap_parser::QueryStdioOptions {
        timeout: QUERY_TIMEOUT,
        ..Default::default()
    };
    let mut picker =
        Picker::from_query_stdio_with_options(options).unwrap_or_else(|_| Picker::halfblocks());
    if picker.tmux_detected() && picker.protocol_type() != ProtocolType::Halfblocks {
        // Graphics through tmux need its passthrough, which is often off.
        picker.set_protocol_type(ProtocolType::Halfblocks);
    }
    Some(picker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_keep_the_aspect_within_bounds() {
        // Half-block cells: 10×20 pixels.
        assert_eq!(cells_for(64, 32, (10, 20)), (32, 8));
        assert_eq!(cells_for(640, 80, (10, 20)), (32, 2));
        assert_eq!(cells_for(100, 1000, (10, 20)), (2, 8));
        assert_eq!(cells_for(0, 0, (0, 0)), (8, 8));
    }

    #[test]
    fn a_preview_decodes_to_half_blocks() {
        let img = image::RgbImage::from_pixel(8, 4, image::Rgb([255, 0, 0]));
        let mut png = Vec::new();
        DynamicImage::ImageRgb8(img)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let job = ImageJob {
            digest: "d".into(),
            source: Source::Preview(base64::engine::general_purpose::STANDARD.encode(&png)),
            pixels: Some((8, 4)),
            picker: Picker::halfblocks(),
        };
        let done = decode(job);
        assert!(!done.full);
        let p = done.protocol.expect("decoded");
        assert_eq!((p.size().width, p.size().height), (32, 8));
    }
}
