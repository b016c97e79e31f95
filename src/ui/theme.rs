//! Colours. Two built-in themes (`assets/themes/*.toml`, embedded); a user
//! theme file overrides any subset of keys. Users get a stable colour from a
//! hash of their name into the theme's palette.

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;
use std::str::FromStr;

pub const DARK: &str = include_str!("../../assets/themes/dark.toml");
pub const LIGHT: &str = include_str!("../../assets/themes/light.toml");

#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub fg: Color,
    pub bg: Color,
    pub dim: Color,
    pub accent: Color,
    pub header_fg: Color,
    pub header_bg: Color,
    pub selected_bg: Color,
    pub unread: Color,
    pub mention: Color,
    pub mention_bg: Color,
    pub error: Color,
    pub warn: Color,
    pub ok: Color,
    pub border: Color,
    /// Background of code: inline code and fenced blocks.
    pub code_bg: Color,
    /// The syntect theme that highlights code blocks.
    pub syntax: String,
    /// The "new messages" line above where the user left off.
    pub new_messages: Color,
    pub users: Vec<Color>,
}

/// A theme file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    fg: Option<String>,
    bg: Option<String>,
    dim: Option<String>,
    accent: Option<String>,
    header_fg: Option<String>,
    header_bg: Option<String>,
    selected_bg: Option<String>,
    unread: Option<String>,
    mention: Option<String>,
    mention_bg: Option<String>,
    error: Option<String>,
    warn: Option<String>,
    ok: Option<String>,
    border: Option<String>,
    code_bg: Option<String>,
    syntax: Option<String>,
    new_messages: Option<String>,
    users: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    #[error("theme file is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("theme key `{key}`: `{value}` is not a colour (try a name like lightblue or #rrggbb)")]
    Colour { key: &'static str, value: String },
    #[error("unknown built-in theme `{0}` (use dark or light)")]
    Unknown(String),
}

impl Default for Theme {
    fn default() -> Self {
        Theme::builtin("dark").unwrap_or_else(|_| Theme::fallback())
    }
}

impl Theme {
    /// `dark` or `light`.
    pub fn builtin(name: &str) -> Result<Theme, ThemeError> {
        let (text, code_bg, syntax) = match name {
            "dark" => (DARK, Color::Rgb(0x1e, 0x22, 0x2a), "base16-ocean.dark"),
            "light" => (LIGHT, Color::Rgb(0xf0, 0xf2, 0xf5), "InspiredGitHub"),
            other => return Err(ThemeError::Unknown(other.to_string())),
        };
        let under = Theme {
            code_bg,
            syntax: syntax.to_string(),
            ..Theme::fallback()
        };
        under.overridden(text)
    }

    /// This theme with the keys present in `toml_text` replaced.
    pub fn overridden(mut self, toml_text: &str) -> Result<Theme, ThemeError> {
        let file: ThemeFile = toml::from_str(toml_text)?;
        let slots: [(&'static str, &Option<String>, &mut Color); 16] = [
            ("fg", &file.fg, &mut self.fg),
            ("bg", &file.bg, &mut self.bg),
            ("dim", &file.dim, &mut self.dim),
            ("accent", &file.accent, &mut self.accent),
            ("header_fg", &file.header_fg, &mut self.header_fg),
            ("header_bg", &file.header_bg, &mut self.header_bg),
            ("selected_bg", &file.selected_bg, &mut self.selected_bg),
            ("unread", &file.unread, &mut self.unread),
            ("mention", &file.mention, &mut self.mention),
            ("mention_bg", &file.mention_bg, &mut self.mention_bg),
            ("error", &file.error, &mut self.error),
            ("warn", &file.warn, &mut self.warn),
            ("ok", &file.ok, &mut self.ok),
            ("border", &file.border, &mut self.border),
            ("code_bg", &file.code_bg, &mut self.code_bg),
            ("new_messages", &file.new_messages, &mut self.new_messages),
        ];
        for (key, value, slot) in slots {
            if let Some(v) = value {
                *slot = parse_colour(key, v)?;
            }
        }
        if let Some(syntax) = file.syntax {
            self.syntax = syntax;
        }
        if let Some(list) = &file.users {
            let users = list
                .iter()
                .map(|v| parse_colour("users", v))
                .collect::<Result<Vec<_>, _>>()?;
            if !users.is_empty() {
                self.users = users;
            }
        }
        Ok(self)
    }

    /// A theme that needs no parsing, used under the built-ins.
    fn fallback() -> Theme {
        Theme {
            fg: Color::Reset,
            bg: Color::Reset,
            dim: Color::DarkGray,
            accent: Color::Cyan,
            header_fg: Color::Black,
            header_bg: Color::Cyan,
            selected_bg: Color::DarkGray,
            unread: Color::White,
            mention: Color::Black,
            mention_bg: Color::Yellow,
            error: Color::Red,
            warn: Color::Yellow,
            ok: Color::Green,
            border: Color::DarkGray,
            code_bg: Color::Reset,
            syntax: super::render::highlight::FALLBACK_THEME.to_string(),
            new_messages: Color::LightRed,
            users: vec![Color::Red, Color::Green, Color::Yellow, Color::Blue],
        }
    }

    /// A stable colour for `user` (FNV-1a of the name into the palette).
    pub fn user_colour(&self, user: &str) -> Color {
        let mut h: u32 = 0x811c_9dc5;
        for b in user.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        match self.users.len() {
            0 => self.fg,
            n => self.users[h as usize % n],
        }
    }

    pub fn base(&self) -> Style {
        Style::default().fg(self.fg).bg(self.bg)
    }
    pub fn dimmed(&self) -> Style {
        Style::default().fg(self.dim)
    }
    pub fn user(&self, user: &str) -> Style {
        Style::default()
            .fg(self.user_colour(user))
            .add_modifier(Modifier::BOLD)
    }
    pub fn header(&self) -> Style {
        Style::default().fg(self.header_fg).bg(self.header_bg)
    }
    pub fn selected(&self) -> Style {
        Style::default().bg(self.selected_bg)
    }
    pub fn mention(&self) -> Style {
        Style::default()
            .fg(self.mention)
            .bg(self.mention_bg)
            .add_modifier(Modifier::BOLD)
    }

    /// The "new messages" line.
    pub fn new_messages(&self) -> Style {
        Style::default()
            .fg(self.new_messages)
            .add_modifier(Modifier::BOLD)
    }
}

fn parse_colour(key: &'static str, value: &str) -> Result<Color, ThemeError> {
    Color::from_str(value).map_err(|_| ThemeError::Colour {
        key,
        value: value.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse() {
        let dark = Theme::builtin("dark").expect("dark");
        let light = Theme::builtin("light").expect("light");
        assert_ne!(dark, light);
        assert_eq!(dark.users.len(), 10);
        assert!(Theme::builtin("neon").is_err());
    }

    #[test]
    fn user_file_overrides_some_keys() {
        let t = Theme::default()
            .overridden("accent = \"#ff0000\"")
            .expect("override");
        assert_eq!(t.accent, Color::Rgb(255, 0, 0));
        assert_eq!(t.dim, Theme::default().dim);
        assert!(Theme::default().overridden("accent = \"nope\"").is_err());
        assert!(Theme::default().overridden("acent = \"red\"").is_err());
    }

    #[test]
    fn user_colours_are_stable() {
        let t = Theme::default();
        assert_eq!(t.user_colour("alice"), t.user_colour("alice"));
        let distinct: std::collections::HashSet<_> = ["alice", "bob", "carol", "dave"]
            .iter()
            .map(|u| format!("{:?}", t.user_colour(u)))
            .collect();
        assert!(distinct.len() > 1);
    }
}
