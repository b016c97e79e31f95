//! Files in the App: opening and saving the selected file (`o`, `s`),
//! `/upload PATH`, the offer to upload a pasted path, transfer progress in
//! the status line, and the inline images of the rows shown. The transfers
//! themselves run in the engine; the App only asks and reports.

use super::{App, Mode};
use crate::client::Action;
use crate::client::attach::{self, human_size};
use crate::client::update::{Fetch, TransferState, TransferView};
use crate::client::view::{MessageRow, SendState};
use crate::proto::FileInfo;
use crate::ui::app::TerminalRequest;
use crate::ui::strings;
use crossterm::event::{KeyCode, KeyEvent};
use std::path::{Path, PathBuf};

impl App {
    /// The file of the selected row, or of the newest file row shown.
    fn file_target(&mut self) -> Option<FileInfo> {
        let selected = self.selected;
        let found = self.rows().iter().rev().find_map(|r| match r {
            MessageRow::Message(m)
                if (selected.is_none() || m.seq == selected)
                    && !m.deleted
                    && !matches!(
                        m.send_state,
                        Some(SendState::Pending | SendState::Failed(_))
                    ) =>
            {
                m.file.as_deref().cloned()
            }
            _ => None,
        });
        if found.is_none() {
            self.status = Some(strings::NO_FILE_SELECTED.to_string());
        }
        found
    }

    /// Whether the selected row (chosen, not the default newest) is a file.
    pub(super) fn selected_file(&self) -> bool {
        let Some(seq) = self.selected else {
            return false;
        };
        self.rows().iter().any(|r| {
            matches!(r, MessageRow::Message(m) if m.seq == Some(seq) && !m.deleted && m.file.is_some())
        })
    }

    /// `o` (open) and `s` (save) on the selected file.
    pub(super) fn fetch_selected(&mut self, purpose: Fetch, out: &mut Vec<Action>) {
        if let Some(file) = self.file_target() {
            self.status = Some(strings::transfer_progress(
                false,
                &crate::client::text::clean(&file.name),
                "0 B",
                &human_size(file.size),
                0,
            ));
            out.push(Action::Download { file, purpose });
        }
    }

    /// `/upload PATH`: share a file in the focused conversation.
    pub(super) fn upload_path(&mut self, text: &str, out: &mut Vec<Action>) {
        let Some(conv) = self.focused.clone() else {
            self.status = Some(strings::NO_CONVERSATION.to_string());
            return;
        };
        match attach::pasted_path(text).filter(|p| p.is_file()) {
            Some(path) => out.push(Action::Upload {
                conv,
                path,
                caption: None,
            }),
            None => self.status = Some(strings::no_such_file(text.trim())),
        }
    }

    /// A paste that names an existing file (a terminal's "drop") is offered
    /// as an upload; `true` when it was.
    pub(super) fn offer_upload(&mut self, text: &str) -> bool {
        if self.focused.is_none() {
            return false;
        }
        let Some(path) = attach::pasted_path(text).filter(|p| p.is_absolute() && p.is_file())
        else {
            return false;
        };
        self.mode = Mode::ConfirmUpload {
            path,
            text: text.to_string(),
        };
        true
    }

    /// y uploads the offered file; anything else pastes the text as typed.
    pub(super) fn confirm_upload_key(
        &mut self,
        k: KeyEvent,
        path: PathBuf,
        text: String,
        out: &mut Vec<Action>,
    ) {
        self.mode = Mode::Insert;
        match k.code {
            KeyCode::Char('y' | 'Y') | KeyCode::Enter => {
                if let Some(conv) = self.focused.clone() {
                    out.push(Action::Upload {
                        conv,
                        path,
                        caption: None,
                    });
                }
                if self.composer.is_empty() {
                    self.mode = Mode::Normal;
                }
            }
            KeyCode::Esc => {}
            _ => self.composer.insert_str(&text),
        }
    }

    /// A transfer's progress, end or failure, in the status line.
    pub(super) fn on_transfer(&mut self, t: TransferView) {
        let name = t.name.as_str();
        self.status = Some(match &t.state {
            TransferState::Running => {
                let pct = (t.done * 100).checked_div(t.total).unwrap_or(0);
                strings::transfer_progress(
                    t.upload,
                    name,
                    &human_size(t.done),
                    &human_size(t.total),
                    pct,
                )
            }
            TransferState::Done => strings::transfer_done(t.upload, name),
            TransferState::Failed(why) => strings::transfer_failed(t.upload, name, why),
        });
    }

    /// A file the user asked for is on disk.
    pub(super) fn on_file_ready(&mut self, digest: &str, path: PathBuf, purpose: Fetch) {
        match purpose {
            Fetch::Open => {
                self.status = Some(strings::opening(&display_name(&path)));
                self.terminal_requests.push(TerminalRequest::Open(path));
            }
            Fetch::Save => self.status = Some(strings::saved_to(&path.display().to_string())),
            Fetch::Show => {
                let pixels = self.image_pixels(digest);
                self.images.file_ready(digest, path, pixels);
            }
        }
    }

    fn image_pixels(&self, digest: &str) -> Option<(u32, u32)> {
        self.rows().iter().find_map(|r| match r {
            MessageRow::Message(m) => m
                .file
                .as_ref()
                .filter(|f| f.digest == digest)
                .and_then(|f| Some((f.width?, f.height?))),
            _ => None,
        })
    }

    /// Queue the previews of the image rows of the focused conversation.
    pub(super) fn queue_previews(&mut self) {
        if !self.images.enabled() {
            return;
        }
        let wanted: Vec<FileInfo> = self
            .rows()
            .iter()
            .filter_map(|r| match r {
                MessageRow::Message(m) if !m.deleted => m.file.as_deref(),
                _ => None,
            })
            .filter(|f| attach::previewable(&f.media_type) && f.preview.is_some())
            .cloned()
            .collect();
        for f in wanted {
            let preview = f.preview.as_deref().unwrap_or_default();
            self.images
                .want_preview(&f.digest, preview, f.width.zip(f.height));
        }
    }

    /// The images on screen (digests from the last frame): fetch the full
    /// file of each, once.
    pub fn fetch_visible_images(&mut self, digests: &[String]) -> Vec<Action> {
        let mut out = Vec::new();
        for digest in digests {
            if !self.images.want_full(digest) {
                continue;
            }
            let file = self.rows().iter().find_map(|r| match r {
                MessageRow::Message(m) => m.file.as_deref().filter(|f| &f.digest == digest),
                _ => None,
            });
            // Too large to draw: the preview stays.
            let file = file.filter(|f| f.size <= crate::ui::images::MAX_FILE);
            if let Some(file) = file {
                out.push(Action::Download {
                    file: file.clone(),
                    purpose: Fetch::Show,
                });
            }
        }
        out
    }
}

fn display_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}
