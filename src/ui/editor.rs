//! Writing a draft in an external editor: which command (`$EDITOR`, then
//! `$VISUAL`, then `vi`), a private temp file holding the draft, and the
//! edited text read back. The UI loop suspends the terminal around
//! [`edit`]; this module only runs the program.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The editor to run and its arguments: the first non-empty of `editor`
/// and `visual`, split on white space (`code --wait`), else `vi`.
pub fn command(editor: Option<&str>, visual: Option<&str>) -> (String, Vec<String>) {
    let chosen = [editor, visual]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or("vi");
    let mut words = chosen.split_whitespace().map(str::to_string);
    let program = words.next().unwrap_or_else(|| "vi".to_string());
    (program, words.collect())
}

/// Opens `draft` in the user's editor and returns the text it was saved
/// as. Errors are messages for the status line.
pub async fn edit(draft: &str) -> Result<String, String> {
    let editor = std::env::var("EDITOR").ok();
    let visual = std::env::var("VISUAL").ok();
    let (program, args) = command(editor.as_deref(), visual.as_deref());
    edit_with(&program, &args, draft).await
}

/// Runs `program args… FILE` on a temp file holding `draft`.
async fn edit_with(program: &str, args: &[String], draft: &str) -> Result<String, String> {
    let path = temp_path();
    write_private(&path, draft).map_err(|e| format!("cannot write a temp file: {e}"))?;
    let status = tokio::process::Command::new(program)
        .args(args)
        .arg(&path)
        .status()
        .await;
    let result = match status {
        Ok(s) if s.success() => std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display())),
        Ok(s) => Err(format!("{program} exited with {s}")),
        Err(e) => Err(format!("cannot start {program}: {e}")),
    };
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::warn!("cannot remove draft {}: {e}", path.display());
    }
    result
}

fn temp_path() -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!("chat-draft-{}-{nanos}.md", std::process::id()))
}

/// Creates `path` (never over an existing file), readable only by me.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_then_visual_then_vi() {
        let s = |p: &str| p.to_string();
        assert_eq!(command(Some("nano"), Some("code")), (s("nano"), vec![]));
        assert_eq!(
            command(None, Some("code --wait")),
            (s("code"), vec![s("--wait")])
        );
        assert_eq!(command(Some("  "), Some("emacs")), (s("emacs"), vec![]));
        assert_eq!(command(Some(""), None), (s("vi"), vec![]));
        assert_eq!(command(None, None), (s("vi"), vec![]));
    }

    #[test]
    fn draft_file_is_new_and_private() {
        let path = temp_path();
        write_private(&path, "draft").expect("write");
        assert!(write_private(&path, "again").is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "draft");
        std::fs::remove_file(&path).expect("remove");
    }

    #[tokio::test]
    async fn the_saved_file_comes_back() {
        let sh = |script: &str| vec!["-c".to_string(), script.to_string()];
        let edited = edit_with("sh", &sh("printf 'new\\n' >> \"$0\""), "old ").await;
        assert_eq!(edited, Ok("old new\n".to_string()));
        let failed = edit_with("sh", &sh("exit 3"), "x").await;
        assert!(failed.is_err_and(|e| e.contains("exited")));
        let missing = edit_with("/nonexistent/editor", &[], "x").await;
        assert!(missing.is_err_and(|e| e.contains("cannot start")));
    }
}
