//! Pushes of secret conversations: a to-device message to the connections
//! of the one session (device) it is for, and a user's changed devices to
//! whoever may encrypt for them.

use super::{Frame, State, frame_of};
use crate::proto::ServerFrame;
use crate::proto::keys::DevicesPush;

impl State {
    /// Queue `push` for `user`'s connections on the session `token`.
    pub(super) fn to_device(&self, user: &str, token: &[u8; 32], push: &str) {
        let Some(online) = self.online.get(user) else {
            return;
        };
        let frame: Frame = frame_of(push.to_string());
        let mut n = 0;
        for conn in online.conns.iter().filter(|c| c.token == *token) {
            if conn.queue.push(frame.clone()) {
                n += 1;
            } else {
                self.dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.count_pushed(n);
    }

    /// Tell `user` and their contacts (everyone in a DM or a listed
    /// conversation with them, which every secret conversation is) that
    /// `user`'s devices changed.
    pub(super) fn devices_changed(&self, user: &str, identity_changed: bool) {
        let frame = frame_of(
            ServerFrame::Devices(DevicesPush {
                user: user.to_string(),
                identity_changed,
            })
            .encode(),
        );
        let mut to = self.contacts(user);
        to.insert(user.into());
        self.deliver_all(&to, &frame);
    }
}
