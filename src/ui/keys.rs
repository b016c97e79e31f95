//! The normal-mode key map: named commands bound to key chords, with
//! defaults, overridable from a TOML table such as
//!
//! ```toml
//! [keys]
//! quit = ["q"]
//! next_conversation = ["tab", "ctrl-n"]
//! ```
//!
//! Composer editing keys (Enter, Alt-Enter, arrows) are fixed; `Ctrl-c`
//! always quits.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::HashMap;

/// What a normal-mode key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyCmd {
    Quit,
    Help,
    Compose,
    Command,
    Up,
    Down,
    PageUp,
    PageDown,
    HalfUp,
    HalfDown,
    Top,
    Bottom,
    NextConversation,
    PrevConversation,
    QuickSwitcher,
    Reply,
    Edit,
    Delete,
    React,
    CopyCode,
    ToggleRaw,
    NextUnread,
    NextMention,
    UnreadOnly,
    /// Download the selected file and open it with the system's opener.
    OpenFile,
    /// Save the selected file into the downloads directory (`s` does too
    /// while a file is selected).
    SaveFile,
    Search,
}

const NAMES: &[(&str, KeyCmd)] = &[
    ("quit", KeyCmd::Quit),
    ("help", KeyCmd::Help),
    ("compose", KeyCmd::Compose),
    ("command", KeyCmd::Command),
    ("up", KeyCmd::Up),
    ("down", KeyCmd::Down),
    ("page_up", KeyCmd::PageUp),
    ("page_down", KeyCmd::PageDown),
    ("half_page_up", KeyCmd::HalfUp),
    ("half_page_down", KeyCmd::HalfDown),
    ("top", KeyCmd::Top),
    ("bottom", KeyCmd::Bottom),
    ("next_conversation", KeyCmd::NextConversation),
    ("prev_conversation", KeyCmd::PrevConversation),
    ("quick_switcher", KeyCmd::QuickSwitcher),
    ("reply", KeyCmd::Reply),
    ("edit", KeyCmd::Edit),
    ("delete", KeyCmd::Delete),
    ("react", KeyCmd::React),
    ("copy_code", KeyCmd::CopyCode),
    ("toggle_raw", KeyCmd::ToggleRaw),
    ("next_unread", KeyCmd::NextUnread),
    ("next_mention", KeyCmd::NextMention),
    ("unread_only", KeyCmd::UnreadOnly),
    ("open_file", KeyCmd::OpenFile),
    ("save_file", KeyCmd::SaveFile),
    ("search", KeyCmd::Search),
];

const DEFAULTS: &[(KeyCmd, &[&str])] = &[
    (KeyCmd::Quit, &["q"]),
    (KeyCmd::Help, &["?", "f1"]),
    (KeyCmd::Compose, &["i", "enter", "a"]),
    (KeyCmd::Command, &["/", ":"]),
    (KeyCmd::Up, &["up", "k"]),
    (KeyCmd::Down, &["down", "j"]),
    (KeyCmd::PageUp, &["pageup", "ctrl-b"]),
    (KeyCmd::PageDown, &["pagedown", "ctrl-f"]),
    (KeyCmd::HalfUp, &["ctrl-u"]),
    (KeyCmd::HalfDown, &["ctrl-d"]),
    (KeyCmd::Top, &["home", "g"]),
    (KeyCmd::Bottom, &["end", "G"]),
    (KeyCmd::NextConversation, &["tab", "ctrl-n"]),
    (KeyCmd::PrevConversation, &["backtab", "ctrl-p"]),
    (KeyCmd::QuickSwitcher, &["ctrl-k"]),
    (KeyCmd::Reply, &["r"]),
    (KeyCmd::Edit, &["e"]),
    (KeyCmd::Delete, &["d"]),
    (KeyCmd::React, &["+"]),
    (KeyCmd::CopyCode, &["y"]),
    (KeyCmd::ToggleRaw, &["R"]),
    (KeyCmd::UnreadOnly, &["U"]),
    (KeyCmd::OpenFile, &["o"]),
    (KeyCmd::SaveFile, &["S"]),
    (KeyCmd::Search, &["s"]),
];

/// Two-key defaults: a prefix chord, then the key that completes it.
const SEQUENCE_DEFAULTS: &[(KeyCmd, &str)] =
    &[(KeyCmd::NextUnread, "] u"), (KeyCmd::NextMention, "] m")];

/// Parses a two-key sequence written as two chords with a space: `] u`.
fn parse_sequence(spec: &str) -> Option<(Chord, Chord)> {
    let mut parts = spec.split_whitespace();
    let first = Chord::parse(parts.next()?)?;
    let second = Chord::parse(parts.next()?)?;
    parts.next().is_none().then_some((first, second))
}

/// What a key means, given the prefix of a sequence typed before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLookup {
    Cmd(KeyCmd),
    /// The first key of a sequence: wait for the next one.
    Prefix(Chord),
    Unbound,
}

/// A key with its modifiers, normalised so `G` and `shift-g` are one chord.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Chord {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

impl Chord {
    pub fn from_event(ev: &KeyEvent) -> Chord {
        normalise(ev.code, ev.modifiers)
    }

    /// Parses `ctrl-k`, `alt-enter`, `shift-tab`, `pageup`, `G`, `?`.
    pub fn parse(spec: &str) -> Option<Chord> {
        let mut mods = KeyModifiers::NONE;
        let mut rest = spec;
        loop {
            let lower = rest.to_ascii_lowercase();
            let (m, len) = if lower.starts_with("ctrl-") {
                (KeyModifiers::CONTROL, 5)
            } else if lower.starts_with("alt-") {
                (KeyModifiers::ALT, 4)
            } else if lower.starts_with("shift-") {
                (KeyModifiers::SHIFT, 6)
            } else {
                break;
            };
            if rest.len() == len {
                break;
            }
            mods |= m;
            rest = &rest[len..];
        }
        let code = match rest.to_ascii_lowercase().as_str() {
            "enter" | "return" => KeyCode::Enter,
            "esc" | "escape" => KeyCode::Esc,
            "tab" => KeyCode::Tab,
            "backtab" => KeyCode::BackTab,
            "backspace" => KeyCode::Backspace,
            "delete" | "del" => KeyCode::Delete,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "pageup" => KeyCode::PageUp,
            "pagedown" => KeyCode::PageDown,
            "space" => KeyCode::Char(' '),
            f if f.len() > 1 && f.starts_with('f') => KeyCode::F(f[1..].parse().ok()?),
            _ => {
                let mut chars = rest.chars();
                let c = chars.next()?;
                if chars.next().is_some() {
                    return None;
                }
                KeyCode::Char(c)
            }
        };
        Some(normalise(code, mods))
    }
}

fn normalise(code: KeyCode, mods: KeyModifiers) -> Chord {
    let mut mods = mods & (KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SHIFT);
    let code = match code {
        KeyCode::Char(c) if mods.contains(KeyModifiers::SHIFT) && c.is_ascii_alphabetic() => {
            KeyCode::Char(c.to_ascii_uppercase())
        }
        KeyCode::Char(c) if mods.contains(KeyModifiers::CONTROL) => {
            KeyCode::Char(c.to_ascii_lowercase())
        }
        KeyCode::BackTab => {
            mods.remove(KeyModifiers::SHIFT);
            KeyCode::BackTab
        }
        KeyCode::Tab if mods.contains(KeyModifiers::SHIFT) => {
            mods.remove(KeyModifiers::SHIFT);
            KeyCode::BackTab
        }
        other => other,
    };
    if matches!(code, KeyCode::Char(_)) {
        mods.remove(KeyModifiers::SHIFT);
    }
    Chord { code, mods }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyMapError {
    #[error("key map: unknown command `{0}`")]
    UnknownCommand(String),
    #[error("key map: `{0}` is not a key (try ctrl-k, alt-enter, pageup, g)")]
    BadKey(String),
}

#[derive(Debug, Clone)]
pub struct KeyMap {
    map: HashMap<Chord, KeyCmd>,
    /// Two-key sequences (prefix, key).
    sequences: HashMap<(Chord, Chord), KeyCmd>,
}

impl Default for KeyMap {
    fn default() -> Self {
        let mut map = HashMap::new();
        for (cmd, keys) in DEFAULTS {
            for k in *keys {
                if let Some(chord) = Chord::parse(k) {
                    map.insert(chord, *cmd);
                }
            }
        }
        let sequences = SEQUENCE_DEFAULTS
            .iter()
            .filter_map(|(cmd, spec)| Some((parse_sequence(spec)?, *cmd)))
            .collect();
        KeyMap { map, sequences }
    }
}

impl KeyMap {
    pub fn lookup(&self, ev: &KeyEvent) -> Option<KeyCmd> {
        self.map.get(&Chord::from_event(ev)).copied()
    }

    /// Like [`KeyMap::lookup`], with two-key sequences: after `prefix`,
    /// only a sequence completing it counts; a key that starts a sequence
    /// (and is not bound alone) is reported as a prefix.
    pub fn lookup_after(&self, prefix: Option<Chord>, ev: &KeyEvent) -> KeyLookup {
        let chord = Chord::from_event(ev);
        if let Some(p) = prefix {
            return self
                .sequences
                .get(&(p, chord))
                .map_or(KeyLookup::Unbound, |c| KeyLookup::Cmd(*c));
        }
        if let Some(cmd) = self.map.get(&chord) {
            return KeyLookup::Cmd(*cmd);
        }
        if self.sequences.keys().any(|(p, _)| *p == chord) {
            return KeyLookup::Prefix(chord);
        }
        KeyLookup::Unbound
    }

    /// The defaults with each command named in `table` rebound to exactly
    /// the keys given there.
    pub fn from_table(table: &toml::Table) -> Result<KeyMap, KeyMapError> {
        let mut km = KeyMap::default();
        for (name, value) in table {
            let cmd = NAMES
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, c)| *c)
                .ok_or_else(|| KeyMapError::UnknownCommand(name.clone()))?;
            let specs: Vec<String> = match value {
                toml::Value::String(s) => vec![s.clone()],
                toml::Value::Array(a) => a
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| KeyMapError::BadKey(v.to_string()))
                    })
                    .collect::<Result<_, _>>()?,
                other => return Err(KeyMapError::BadKey(other.to_string())),
            };
            km.map.retain(|_, c| *c != cmd);
            km.sequences.retain(|_, c| *c != cmd);
            for spec in specs {
                if let Some(seq) = parse_sequence(&spec) {
                    km.sequences.insert(seq, cmd);
                    continue;
                }
                let chord = Chord::parse(&spec).ok_or(KeyMapError::BadKey(spec))?;
                km.map.insert(chord, cmd);
            }
        }
        Ok(km)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, mods: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, mods)
    }

    #[test]
    fn defaults_cover_vim_and_arrows() {
        let km = KeyMap::default();
        let k = |c: char| km.lookup(&key(KeyCode::Char(c), KeyModifiers::NONE));
        assert_eq!(k('j'), Some(KeyCmd::Down));
        assert_eq!(k('k'), Some(KeyCmd::Up));
        assert_eq!(k('g'), Some(KeyCmd::Top));
        assert_eq!(
            km.lookup(&key(KeyCode::Char('G'), KeyModifiers::SHIFT)),
            Some(KeyCmd::Bottom)
        );
        assert_eq!(
            km.lookup(&key(KeyCode::Char('k'), KeyModifiers::CONTROL)),
            Some(KeyCmd::QuickSwitcher)
        );
        assert_eq!(
            km.lookup(&key(KeyCode::BackTab, KeyModifiers::SHIFT)),
            Some(KeyCmd::PrevConversation)
        );
        assert_eq!(
            km.lookup(&key(KeyCode::Char('?'), KeyModifiers::SHIFT)),
            Some(KeyCmd::Help)
        );
    }

    #[test]
    fn table_rebinds() {
        let table: toml::Table = toml::from_str("quit = [\"x\"]\nhelp = \"ctrl-h\"").expect("toml");
        let km = KeyMap::from_table(&table).expect("map");
        assert_eq!(
            km.lookup(&key(KeyCode::Char('x'), KeyModifiers::NONE)),
            Some(KeyCmd::Quit)
        );
        assert_eq!(
            km.lookup(&key(KeyCode::Char('q'), KeyModifiers::NONE)),
            None
        );
        assert_eq!(
            km.lookup(&key(KeyCode::Char('h'), KeyModifiers::CONTROL)),
            Some(KeyCmd::Help)
        );
        let bad: toml::Table = toml::from_str("fly = \"x\"").expect("toml");
        assert!(KeyMap::from_table(&bad).is_err());
        assert_eq!(Chord::parse("ctrl-"), None);
        assert!(Chord::parse("ctrl--").is_some());
        assert_eq!(Chord::parse("f5").map(|c| c.code), Some(KeyCode::F(5)));
    }

    #[test]
    fn sequences_wait_for_their_second_key() {
        let km = KeyMap::default();
        let plain = |c: char| key(KeyCode::Char(c), KeyModifiers::NONE);
        let bracket = Chord::parse("]").expect("chord");
        assert_eq!(
            km.lookup_after(None, &plain(']')),
            KeyLookup::Prefix(bracket)
        );
        assert_eq!(
            km.lookup_after(Some(bracket), &plain('u')),
            KeyLookup::Cmd(KeyCmd::NextUnread)
        );
        assert_eq!(
            km.lookup_after(Some(bracket), &plain('m')),
            KeyLookup::Cmd(KeyCmd::NextMention)
        );
        assert_eq!(
            km.lookup_after(Some(bracket), &plain('x')),
            KeyLookup::Unbound
        );
        assert_eq!(
            km.lookup_after(None, &key(KeyCode::Char('U'), KeyModifiers::SHIFT)),
            KeyLookup::Cmd(KeyCmd::UnreadOnly)
        );
        let table: toml::Table = toml::from_str("next_unread = \"space u\"").expect("toml");
        let km = KeyMap::from_table(&table).expect("map");
        let space = Chord::parse("space").expect("chord");
        assert_eq!(km.lookup_after(None, &plain(' ')), KeyLookup::Prefix(space));
        assert_eq!(
            km.lookup_after(Some(space), &plain('u')),
            KeyLookup::Cmd(KeyCmd::NextUnread)
        );
        assert_eq!(
            km.lookup_after(Some(bracket), &plain('u')),
            KeyLookup::Unbound
        );
    }
}
