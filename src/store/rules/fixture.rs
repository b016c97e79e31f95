//! A store made of maps, for the rules' tests: every decision without a
//! database.

use super::secret::SecretFacts;
use super::{Facts, Prior, Target, dm_key};
use crate::proto::{ConvKind, DeviceRef, MemberRole};
use crate::store::log::StoreError;
use std::collections::{BTreeMap, BTreeSet};
use std::future::{Future, ready};

pub type Answer<T> = Result<T, StoreError>;

/// Everything a store knows, in maps; empty, it knows nothing.
#[derive(Default)]
pub struct World {
    pub kinds: BTreeMap<String, ConvKind>,
    pub members: BTreeMap<String, BTreeMap<String, MemberRole>>,
    pub users: BTreeSet<String>,
    pub admins: BTreeSet<String>,
    pub blocks: BTreeSet<(String, String)>,
    pub channels: BTreeMap<String, String>,
    pub removed: BTreeSet<(String, String)>,
    pub priors: BTreeMap<(String, String), Prior>,
    pub targets: BTreeMap<(String, u64), Target>,
    pub uploads: BTreeMap<(String, String), u64>,
    /// The secret conversations.
    pub secret: BTreeSet<String>,
    /// Each user's devices with keys.
    pub devices: BTreeMap<String, Vec<String>>,
    /// The device that started each (conversation, session).
    pub owners: BTreeMap<(String, String), DeviceRef>,
    /// The devices holding each (conversation, session).
    pub holders: BTreeMap<(String, String), Vec<DeviceRef>>,
    /// How many messages a device's inbox holds (none unless given).
    pub inbox: BTreeMap<DeviceRef, usize>,
}

impl Facts for World {
    fn kind(&mut self, conv: &str) -> impl Future<Output = Answer<Option<ConvKind>>> + Send {
        ready(Ok(self.kinds.get(conv).copied()))
    }
    fn role(
        &mut self,
        conv: &str,
        user: &str,
    ) -> impl Future<Output = Answer<Option<MemberRole>>> + Send {
        ready(Ok(self
            .members
            .get(conv)
            .and_then(|m| m.get(user))
            .copied()))
    }
    fn member_count(&mut self, conv: &str) -> impl Future<Output = Answer<usize>> + Send {
        ready(Ok(self.members.get(conv).map_or(0, |m| m.len())))
    }
    fn members(
        &mut self,
        conv: &str,
    ) -> impl Future<Output = Answer<Vec<(String, MemberRole)>>> + Send {
        ready(Ok(self.members.get(conv).map_or_else(Vec::new, |m| {
            m.iter().map(|(u, r)| (u.clone(), *r)).collect()
        })))
    }
    fn user_exists(&mut self, name: &str) -> impl Future<Output = Answer<bool>> + Send {
        ready(Ok(self.users.contains(name)))
    }
    fn server_admin(&mut self, user: &str) -> impl Future<Output = Answer<bool>> + Send {
        ready(Ok(self.admins.contains(user)))
    }
    fn blocks(
        &mut self,
        blocker: &str,
        blocked: &str,
    ) -> impl Future<Output = Answer<bool>> + Send {
        ready(Ok(self
            .blocks
            .contains(&(blocker.to_string(), blocked.to_string()))))
    }
    fn memberships(&mut self, user: &str) -> impl Future<Output = Answer<usize>> + Send {
        ready(Ok(self
            .members
            .values()
            .filter(|m| m.contains_key(user))
            .count()))
    }
    fn dm(&mut self, key: &str) -> impl Future<Output = Answer<Option<String>>> + Send {
        let found = self.kinds.iter().find_map(|(id, k)| {
            let members: Vec<String> = self.members.get(id)?.keys().cloned().collect();
            (*k == ConvKind::Dm && dm_key(&members) == key).then(|| id.clone())
        });
        ready(Ok(found))
    }
    fn channel(&mut self, name: &str) -> impl Future<Output = Answer<Option<String>>> + Send {
        ready(Ok(self.channels.get(name).cloned()))
    }
    fn removed(&mut self, conv: &str, user: &str) -> impl Future<Output = Answer<bool>> + Send {
        ready(Ok(self
            .removed
            .contains(&(conv.to_string(), user.to_string()))))
    }
    fn prior(
        &mut self,
        user: &str,
        client_msg_id: &str,
    ) -> impl Future<Output = Answer<Option<Prior>>> + Send {
        ready(Ok(self
            .priors
            .get(&(user.to_string(), client_msg_id.to_string()))
            .cloned()))
    }
    fn target(
        &mut self,
        conv: &str,
        seq: u64,
    ) -> impl Future<Output = Answer<Option<Target>>> + Send {
        ready(Ok(self.targets.get(&(conv.to_string(), seq)).cloned()))
    }
    fn upload_size(
        &mut self,
        user: &str,
        digest: &str,
    ) -> impl Future<Output = Answer<Option<u64>>> + Send {
        ready(Ok(self
            .uploads
            .get(&(user.to_string(), digest.to_string()))
            .copied()))
    }
    fn encrypted(&mut self, conv: &str) -> impl Future<Output = Answer<bool>> + Send {
        ready(Ok(self.secret.contains(conv)))
    }
}

impl SecretFacts for World {
    fn devices(&mut self, user: &str) -> impl Future<Output = Answer<Vec<String>>> + Send {
        ready(Ok(self.devices.get(user).cloned().unwrap_or_default()))
    }
    fn session_owner(
        &mut self,
        conv: &str,
        session: &str,
    ) -> impl Future<Output = Answer<Option<DeviceRef>>> + Send {
        ready(Ok(self
            .owners
            .get(&(conv.to_string(), session.to_string()))
            .cloned()))
    }
    fn holders(
        &mut self,
        conv: &str,
        session: &str,
    ) -> impl Future<Output = Answer<Vec<DeviceRef>>> + Send {
        ready(Ok(self
            .holders
            .get(&(conv.to_string(), session.to_string()))
            .cloned()
            .unwrap_or_default()))
    }
    fn inbox_len(
        &mut self,
        device: &DeviceRef,
    ) -> impl Future<Output = Answer<Option<usize>>> + Send {
        let exists = self
            .devices
            .get(&device.user)
            .is_some_and(|d| d.contains(&device.device_id));
        ready(Ok(
            exists.then(|| self.inbox.get(device).copied().unwrap_or(0))
        ))
    }
}
