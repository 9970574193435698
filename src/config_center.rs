//! The config center, sans-IO: every user's routing config, versioned by epoch, and the
//! acknowledgements users send back (claim 3's "preset interface", [0046]-[0048]).

use crate::protocol::{Publish, PublishReply};
use crate::types::{Epoch, UserConfig, UserId};
use std::collections::BTreeMap;

/// The config center's state.
#[derive(Clone, Debug, Default)]
pub struct ConfigCenter {
    epoch: Epoch,
    configs: BTreeMap<UserId, UserConfig>,
    acks: BTreeMap<UserId, Epoch>,
}

impl ConfigCenter {
    /// An empty config center.
    pub fn new() -> ConfigCenter {
        ConfigCenter::default()
    }

    /// The newest epoch stored.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Stores a publication unless it is older than what is held (an old controller, or a
    /// delayed message, can never roll the users back), and within it each user's config
    /// newer than the one held.
    pub fn publish(&mut self, publish: Publish) -> PublishReply {
        if publish.epoch < self.epoch {
            return PublishReply {
                epoch: self.epoch,
                stored: false,
            };
        }
        self.epoch = publish.epoch;
        // Each user's config carries its shard's epoch, which may be older than the
        // publication's (a shard that did not move): a config replaces only an older one.
        for config in publish.configs {
            let held = self.configs.get(&config.user).map(|c| c.epoch);
            if held.is_none_or(|e| e < config.epoch) {
                self.configs.insert(config.user, config);
            }
        }
        PublishReply {
            epoch: self.epoch,
            stored: true,
        }
    }

    /// A user's current config.
    pub fn config(&self, user: UserId) -> Option<&UserConfig> {
        self.configs.get(&user)
    }

    /// Records that `user` applied `epoch`; an older acknowledgement never replaces a newer.
    pub fn ack(&mut self, user: UserId, epoch: Epoch) {
        let entry = self.acks.entry(user).or_default();
        *entry = (*entry).max(epoch);
    }

    /// The epoch each user last acknowledged.
    pub fn acks(&self) -> &BTreeMap<UserId, Epoch> {
        &self.acks
    }
}
