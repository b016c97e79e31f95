//! Tab completion in the composer: command names after a leading `/`,
//! usernames for user arguments and `@mentions`, channel names for `/join`
//! and `#name`. Repeated Tab cycles through the candidates.

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
        if let Some(prefix) = token.strip_prefix('@') {
            return self.user_matches(prefix, "@");
        }
        if let Some(prefix) = token.strip_prefix('#') {
            return self.channel_matches(prefix, "#");
        }
        match kind {
            ArgKind::User => self.user_matches(token, ""),
            ArgKind::Channel => self.channel_matches(token, "#"),
            ArgKind::None => Vec::new(),
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
