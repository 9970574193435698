//! The nouns every part of standby shares: clusters, nodes, epochs, log positions, users and
//! the routing config a user holds.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One of the two clusters. At the start `A` is primary and `B` is backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Cluster {
    /// The cluster that starts as primary.
    A,
    /// The cluster that starts as backup.
    B,
}

impl Cluster {
    /// The other cluster of the pair.
    pub fn other(self) -> Cluster {
        match self {
            Cluster::A => Cluster::B,
            Cluster::B => Cluster::A,
        }
    }

    /// Both clusters, in a fixed order.
    pub const BOTH: [Cluster; 2] = [Cluster::A, Cluster::B];

    /// The lower-case letter used in node names (`a/3`).
    pub fn letter(self) -> char {
        match self {
            Cluster::A => 'a',
            Cluster::B => 'b',
        }
    }
}

impl fmt::Display for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.letter())
    }
}

/// A storage node: cluster and index. Node `a/i` is paired with node `b/i` (the patent's node
/// mapping, [0046]); index `i` is also the shard the pair serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId {
    /// The cluster the node belongs to.
    pub cluster: Cluster,
    /// The node's index in its cluster, equal to the shard it serves.
    pub index: u16,
}

impl NodeId {
    /// Node `index` of `cluster`.
    pub fn new(cluster: Cluster, index: u16) -> NodeId {
        NodeId { cluster, index }
    }

    /// The paired node in the other cluster (the node mapping).
    pub fn peer(self) -> NodeId {
        NodeId::new(self.cluster.other(), self.index)
    }

    /// The shard this node serves.
    pub fn shard(self) -> Shard {
        Shard(self.index)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.cluster, self.index)
    }
}

/// A shard: the data served by node pair `a/i`, `b/i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Shard(pub u16);

impl Shard {
    /// The node serving this shard in `cluster`.
    pub fn node(self, cluster: Cluster) -> NodeId {
        NodeId::new(cluster, self.0)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard {}", self.0)
    }
}

/// A configuration generation. Every change of the writable cluster starts a new epoch, and
/// each epoch belongs to exactly one cluster. Epochs only ever grow.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The epoch after this one.
    pub fn next(self) -> Epoch {
        Epoch(self.0 + 1)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e{}", self.0)
    }
}

/// A log sequence number: the position of a write in its shard's log. LSN 0 is the empty log;
/// the first write is LSN 1.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lsn {}", self.0)
    }
}

/// A user (client) of the storage system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserId(pub u32);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user {}", self.0)
    }
}

/// A write's identity: the user who issued it and that user's sequence number. Unique across
/// a run, so checkers can follow one write through logs, quarantines and histories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WriteId {
    /// The user that issued the write.
    pub user: UserId,
    /// The user's own sequence number for it.
    pub seq: u64,
}

impl fmt::Display for WriteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "w{}.{}", self.user.0, self.seq)
    }
}

/// The routing config a user holds (the patent's "cluster configuration information"): which
/// node to send its requests to, and in which epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserConfig {
    /// The user this config is for.
    pub user: UserId,
    /// The epoch the config belongs to; writes are stamped with it.
    pub epoch: Epoch,
    /// The node serving the user's shard in the writable cluster.
    pub node: NodeId,
    /// The node's network address.
    pub address: String,
}
