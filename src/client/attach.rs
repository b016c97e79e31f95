//! Files as the client shares and saves them: what an upload says about its
//! file (digest, name, size, media type, and for images their size and a
//! small preview), and the safe local name of a file someone else named.
//!
//! [`describe`] reads the whole file and decodes images: it blocks, and
//! callers on the runtime run it with `spawn_blocking`.

use crate::proto::FileInfo;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use std::io::Read;
use std::path::Path;

/// Longest side of a preview, in pixels.
const PREVIEW_SIDE: u32 = 64;
/// Largest preview, encoded (before base64).
pub const MAX_PREVIEW_BYTES: usize = 16 * 1024;
/// Longest file name on the wire, in bytes.
const MAX_NAME_BYTES: usize = 255;
/// Images larger than this many pixels are not decoded for a preview.
const MAX_DECODE_PIXELS: u64 = 64 * 1024 * 1024;

/// The media type of a file named `name`, from its extension.
pub fn media_type(name: &str) -> String {
    mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream")
        .to_string()
}

/// Whether the client makes previews of this media type.
pub fn previewable(media_type: &str) -> bool {
    matches!(
        media_type,
        "image/png" | "image/jpeg" | "image/gif" | "image/webp"
    )
}

/// A name safe to create in a directory: its last path component, without
/// control or bidi characters, leading dots or surrounding spaces, at most
/// 255 bytes (the extension kept); `"file"` when nothing is left.
pub fn safe_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = last
        .chars()
        .filter(|c| !crate::client::text::unsafe_char(*c))
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.').trim();
    if trimmed.is_empty() || trimmed == ".." {
        return "file".to_string();
    }
    shorten(trimmed, MAX_NAME_BYTES)
}

/// `name` cut to `max` bytes at a character boundary, keeping a short
/// extension.
fn shorten(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e)
        .filter(|e| e.len() <= 16 && !e.is_empty())
        .map(|e| format!(".{e}"))
        .unwrap_or_default();
    let mut stem_end = max - ext.len();
    while !name.is_char_boundary(stem_end) {
        stem_end -= 1;
    }
    format!("{}{ext}", &name[..stem_end])
}

/// Everything a `file` event says about the file at `path`, from its bytes.
pub fn describe(path: &Path) -> std::io::Result<FileInfo> {
    let mut f = std::fs::File::open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    let name = safe_name(
        &path
            .file_name()
            .map_or_else(|| "file".to_string(), |n| n.to_string_lossy().into_owned()),
    );
    let media_type = media_type(&name);
    let mut info = FileInfo {
        digest: hex::encode(hasher.finalize()),
        name,
        size,
        media_type,
        width: None,
        height: None,
        preview: None,
        key: None,
    };
    if previewable(&info.media_type)
        && let Some((w, h, preview)) = image_facts(path)
    {
        info.width = Some(w);
        info.height = Some(h);
        info.preview = preview.map(|p| base64::engine::general_purpose::STANDARD.encode(p));
    }
    Ok(info)
}

/// An image's size and, where one fits in [`MAX_PREVIEW_BYTES`], a preview.
fn image_facts(path: &Path) -> Option<(u32, u32, Option<Vec<u8>>)> {
    let reader = image::ImageReader::open(path)
        .ok()?
        .with_guessed_format()
        .ok()?;
    let (w, h) = reader.into_dimensions().ok()?;
    if u64::from(w) * u64::from(h) > MAX_DECODE_PIXELS {
        return Some((w, h, None));
    }
    let img = image::ImageReader::open(path)
        .ok()?
        .with_guessed_format()
        .ok()?
        .decode()
        .ok()?;
    Some((w, h, preview(&img)))
}

/// A PNG (or, where smaller, a JPEG) of at most [`PREVIEW_SIDE`] pixels on
/// the long side and [`MAX_PREVIEW_BYTES`].
pub fn preview(img: &image::DynamicImage) -> Option<Vec<u8>> {
    for side in [PREVIEW_SIDE, PREVIEW_SIDE / 2] {
        let small = img.thumbnail(side, side);
        let mut png = Vec::new();
        if small
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .is_ok()
            && png.len() <= MAX_PREVIEW_BYTES
        {
            return Some(png);
        }
        let mut jpeg = Vec::new();
        let rgb = image::DynamicImage::ImageRgb8(small.to_rgb8());
        if rgb
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .is_ok()
            && jpeg.len() <= MAX_PREVIEW_BYTES
        {
            return Some(jpeg);
        }
    }
    None
}

/// A size in bytes as people read it: `512 B`, `47 KiB`, `5.0 MiB`.
pub fn human_size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if bytes < 1024 {
        format!("{bytes} B")
    } else if b < KIB * KIB {
        format!("{:.0} KiB", b / KIB)
    } else if b < KIB * KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else {
        format!("{:.1} GiB", b / (KIB * KIB * KIB))
    }
}

/// A path the user pasted or typed: unquoted, `file://` removed (with its
/// percent escapes decoded), `~/` expanded.
pub fn pasted_path(text: &str) -> Option<std::path::PathBuf> {
    let t = text.trim();
    if t.is_empty() || t.contains('\n') {
        return None;
    }
    let t = t
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .or_else(|| t.strip_prefix('"').and_then(|r| r.strip_suffix('"')))
        .unwrap_or(t);
    let unescaped;
    let t = if let Some(rest) = t.strip_prefix("file://") {
        // `file:///home/…` or `file://localhost/home/…`.
        let rest = rest.strip_prefix("localhost").unwrap_or(rest);
        unescaped = percent_decode(rest)?;
        unescaped.as_str()
    } else if t.contains("\\ ") {
        // A path a shell escaped.
        unescaped = t.replace("\\ ", " ");
        unescaped.as_str()
    } else {
        t
    };
    if let Some(rest) = t.strip_prefix("~/") {
        let home = directories::BaseDirs::new()?.home_dir().to_path_buf();
        return Some(home.join(rest));
    }
    Some(std::path::PathBuf::from(t))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_paths_controls_and_leading_dots() {
        assert_eq!(safe_name("deploy.log"), "deploy.log");
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("..\\..\\boot.ini"), "boot.ini");
        assert_eq!(safe_name(".bashrc"), "bashrc");
        assert_eq!(safe_name("...hidden"), "hidden");
        assert_eq!(safe_name("a\u{1b}[31mred\n.txt"), "a[31mred.txt");
        assert_eq!(safe_name("evil\u{202e}txt.exe"), "eviltxt.exe");
        assert_eq!(safe_name(".."), "file");
        assert_eq!(safe_name("dir/"), "file");
        assert_eq!(safe_name("   "), "file");
        let long = format!("{}.tar.gz", "é".repeat(200));
        let short = safe_name(&long);
        assert!(short.len() <= 255 && short.ends_with(".gz"), "{short}");
    }

    #[test]
    fn media_types_come_from_the_extension() {
        assert_eq!(media_type("a.png"), "image/png");
        assert_eq!(media_type("A.JPG"), "image/jpeg");
        assert_eq!(media_type("x.webp"), "image/webp");
        assert_eq!(media_type("deploy.log"), "text/plain");
        assert_eq!(media_type("notes.txt"), "text/plain");
        assert_eq!(media_type("blob"), "application/octet-stream");
        assert!(previewable("image/gif") && !previewable("image/svg+xml"));
    }

    #[test]
    fn sizes_read_plainly() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(48213), "47 KiB");
        assert_eq!(human_size(5 * 1024 * 1024), "5.0 MiB");
    }

    #[test]
    fn pasted_paths_are_unquoted_and_unescaped() {
        let p = |s| pasted_path(s).map(|p| p.to_string_lossy().into_owned());
        assert_eq!(p("/tmp/a b.png").as_deref(), Some("/tmp/a b.png"));
        assert_eq!(p("'/tmp/a b.png'").as_deref(), Some("/tmp/a b.png"));
        assert_eq!(p("\"/tmp/x.png\"\n").as_deref(), Some("/tmp/x.png"));
        assert_eq!(p("file:///tmp/a%20b.png").as_deref(), Some("/tmp/a b.png"));
        assert_eq!(p("/tmp/a\\ b.png").as_deref(), Some("/tmp/a b.png"));
        assert_eq!(p("two\nlines"), None);
    }

    #[test]
    fn an_image_gets_its_size_and_a_small_preview() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pic.png");
        let img = image::RgbImage::from_fn(300, 200, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x * y) % 256) as u8])
        });
        img.save(&path).unwrap();
        let info = describe(&path).unwrap();
        assert_eq!(info.media_type, "image/png");
        assert_eq!((info.width, info.height), (Some(300), Some(200)));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(info.preview.unwrap())
            .unwrap();
        assert!(bytes.len() <= MAX_PREVIEW_BYTES);
        let small = image::load_from_memory(&bytes).unwrap();
        assert_eq!(small.width().max(small.height()), 64);
        let digest = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
        assert_eq!(info.digest, digest);
    }
}
