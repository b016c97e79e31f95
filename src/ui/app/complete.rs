//! Tab completion in the composer: command names after a leading `/`,
//! usernames for user arguments and `@mentions`, channel names for `/join`
//! and `#name`, paths for `/upload`. Repeated Tab cycles through the
//! candidates.

use super::App;
use crate::proto::ConvKind;
use crate::ui::commands::{self, ArgKind};
use crate::ui::strings;

/// An active completion: the replaced range starts at `start`, the current
/// candidate ends at `end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub start: usize,
    pub end: usize,
    pub candidates: Vec<String>,
    pub index: usize,
}

impl App {
    pub(super) fn complete(&mut self, forward: bool) {
        if let Some(c) = self.completion.as_mut() {
            let n = c.candidates.len();
            c.index = if forward {
                (c.index + 1) % n
            } else {
                (c.index + n - 1) % n
            };
            let (range, with) = (c.start..c.end, c.candidates[c.index].clone());
            c.end = c.start + with.len();
            self.composer.replace_range(range, &with);
            return;
        }
        let text = self.composer.text();
        let cursor = self.composer.cursor();
        let start = text[..cursor]
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace())
            .map_or(0, |(i, c)| i + c.len_utf8());
        let token = &text[start..cursor];
        let candidates = self.candidates(&text[..start], token);
        if candidates.is_empty() {
            self.status = Some(strings::COMPLETION_NONE.to_string());
            return;
        }
        let first = candidates[0].clone();
        self.composer.replace_range(start..cursor, &first);
        if candidates.len() > 1 {
            self.completion = Some(Completion {
                start,
                end: start + first.len(),
                candidates,
                index: 0,
            });
        }
    }

    /// Replacements for `token`, given the text before it.
    fn candidates(&self, before: &str, token: &str) -> Vec<String> {
        if before.is_empty() && token.starts_with('/') {
            return commands::NAMES
                .iter()
                .filter(|n| n.starts_with(&token[1..]))
                .map(|n| format!("/{n} "))
                .collect();
        }
        let kind = if let Some(cmd) = before.strip_prefix('/') {
            let mut words = cmd.split_whitespace();
            let name = words.next().unwrap_or("");
            commands::arg_kind(name, words.count())
        } else {
            ArgKind::None
        };
        if kind == ArgKind::Path {
            return path_matches(token);
        }
        if let Some(prefix) = token.strip_prefix('@') {
            return self.user_matches(prefix, "@");
        }
        if let Some(prefix) = token.strip_prefix('#') {
            return self.channel_matches(prefix, "#");
        }
        match kind {
            ArgKind::User => self.user_matches(token, ""),
            ArgKind::Channel => self.channel_matches(token, "#"),
            ArgKind::Path | ArgKind::None => Vec::new(),
        }
    }

    fn user_matches(&self, prefix: &str, sigil: &str) -> Vec<String> {
        let lower = prefix.to_lowercase();
        let mut users: Vec<&str> = self
            .model
            .users
            .iter()
            .chain(
                self.model
                    .conversations
                    .iter()
                    .flat_map(|c| c.members.iter()),
            )
            .map(String::as_str)
            .filter(|u| *u != self.model.me && u.to_lowercase().starts_with(&lower))
            .collect();
        users.sort_unstable();
        users.dedup();
        users.into_iter().map(|u| format!("{sigil}{u} ")).collect()
    }

    fn channel_matches(&self, prefix: &str, sigil: &str) -> Vec<String> {
        let lower = prefix.to_lowercase();
        let mut names: Vec<&str> = self
            .model
            .conversations
            .iter()
            .filter(|c| c.kind == ConvKind::Channel && c.title.to_lowercase().starts_with(&lower))
            .map(|c| c.title.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        names.into_iter().map(|n| format!("{sigil}{n} ")).collect()
    }
}

/// Most directory entries read for one path completion.
const MAX_PATH_CANDIDATES: usize = 200;

/// Entries of the directory `token` names that start with its last part:
/// directories end in `/` (Tab again goes inside), files in a space. Hidden
/// entries only when the part starts with a dot. `~/` stays as typed.
pub(crate) fn path_matches(token: &str) -> Vec<String> {
    let (dir_text, part) = match token.rfind('/') {
        Some(i) => (&token[..=i], &token[i + 1..]),
        None => ("", token),
    };
    let dir = if let Some(rest) = dir_text.strip_prefix("~/") {
        match directories::BaseDirs::new() {
            Some(b) => b.home_dir().join(rest),
            None => return Vec::new(),
        }
    } else if dir_text.is_empty() {
        std::path::PathBuf::from(".")
    } else {
        std::path::PathBuf::from(dir_text)
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .filter_map(Result::ok)
        .take(10_000)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let shown = name.starts_with(part) && (part.starts_with('.') || !name.starts_with('.'));
            if !shown || name.chars().any(crate::client::text::unsafe_char) {
                return None;
            }
            let is_dir = e.file_type().ok()?.is_dir()
                || (e.file_type().ok()?.is_symlink() && e.path().is_dir());
            Some(if is_dir {
                format!("{dir_text}{name}/")
            } else {
                format!("{dir_text}{name} ")
            })
        })
        .collect();
    out.sort_unstable();
    out.truncate(MAX_PATH_CANDIDATES);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_complete_from_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("photos")).unwrap();
        std::fs::write(dir.path().join("plan.txt"), "x").unwrap();
        std::fs::write(dir.path().join(".profile"), "x").unwrap();
        let base = format!("{}/", dir.path().display());
        assert_eq!(
            path_matches(&format!("{base}p")),
            vec![format!("{base}photos/"), format!("{base}plan.txt ")]
        );
        assert_eq!(
            path_matches(&format!("{base}.p")),
            vec![format!("{base}.profile ")]
        );
        assert!(path_matches(&format!("{base}nothing")).is_empty());
    }
}
