//! The explicit channels between shards, and from shards to the control thread.
//!
//! Owns every cross-thread message path of the control plane. Each shard has one inbox
//! (a `std::sync::mpsc` receiver) that any shard, the control thread and the DNS
//! discovery thread ([`Outlets`]) may send to; a
//! shard reads it on its control tick (`STOP_POLL_INTERVAL`), never on the data path, so
//! a message takes at most one tick to act. Messages are small `Copy` values; servers
//! are named by index (backend, server), the same on every thread.
//!
//! What flows: a server's owning shard sends its new [`Status`] to every shard (itself
//! included, so all apply it the same way) and to the control thread; the control thread
//! sends operator commands to the owner (admin state) or to every shard (shut sessions
//! down); a shard whose live traffic hit a server's `error_limit` tells the owner; the
//! discovery thread sends a slot's new address to every shard and the control thread.
//! An operator command answers only once its shards have applied it: the control thread
//! follows it with a `Sync` and waits for each shard's `Synced`.

use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, Sender};

use crate::upstream::health::{Admin, Status, Transition};

/// A message to a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardMsg {
    /// From the owning shard: the server's health changed.
    Status {
        backend: usize,
        server: usize,
        status: Status,
        transition: Option<Transition>,
    },
    /// To the owning shard: the operator set the administrative state.
    SetAdmin {
        backend: usize,
        server: usize,
        admin: Admin,
    },
    /// To the owning shard: another shard saw `error_limit` errors in a row (`observe`).
    Errors { backend: usize, server: usize },
    /// To every shard: close the sessions using this server now.
    ShutdownSessions { backend: usize, server: usize },
    /// To every shard: the operator set the server's weight.
    SetWeight {
        backend: usize,
        server: usize,
        weight: u32,
    },
    /// From the discovery thread: a discovery slot's address (`None`: it has none).
    Address {
        backend: usize,
        server: usize,
        addr: Option<SocketAddr>,
    },
    /// From the control thread: answer [`ControlMsg::Synced`] with `seq`. An inbox is
    /// read in order, so the answer says that every message sent to this shard before
    /// it has been applied.
    Sync { seq: u64 },
}

/// A message to the control thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlMsg {
    /// A server's health changed (sent by its owning shard).
    Status {
        backend: usize,
        server: usize,
        status: Status,
    },
    /// A discovery slot's address changed.
    Address {
        backend: usize,
        server: usize,
        addr: Option<SocketAddr>,
    },
    /// A shard's answer to [`ShardMsg::Sync`].
    Synced { shard: usize, seq: u64 },
}

/// One shard's ends of the mesh.
#[derive(Debug)]
pub struct Mesh {
    /// Indexed by shard (this one included).
    peers: Vec<Sender<ShardMsg>>,
    control: Option<Sender<ControlMsg>>,
    inbox: Receiver<ShardMsg>,
}

/// The control thread's ends of the mesh.
#[derive(Debug)]
pub struct ControlLink {
    /// Indexed by shard.
    pub shards: Vec<Sender<ShardMsg>>,
    pub inbox: Receiver<ControlMsg>,
}

/// Senders to every shard and the control thread, for another control-plane thread
/// (DNS discovery).
#[derive(Debug, Clone)]
pub struct Outlets {
    pub shards: Vec<Sender<ShardMsg>>,
    pub control: Option<Sender<ControlMsg>>,
}

impl Outlets {
    /// Sends to every shard (one that has exited is skipped).
    pub fn broadcast(&self, msg: ShardMsg) {
        for s in &self.shards {
            let _ = s.send(msg);
        }
    }

    /// Sends to the control thread, if there is one.
    pub fn to_control(&self, msg: ControlMsg) {
        if let Some(c) = &self.control {
            let _ = c.send(msg);
        }
    }
}

/// Builds the mesh of `shards` shards and, with `control`, the control thread's link.
pub fn build(shards: usize, control: bool) -> (Vec<Mesh>, Option<ControlLink>, Outlets) {
    let (senders, inboxes): (Vec<_>, Vec<_>) = (0..shards).map(|_| mpsc::channel()).unzip();
    let (control_tx, control_link) = if control {
        let (tx, rx) = mpsc::channel();
        (
            Some(tx),
            Some(ControlLink {
                shards: senders.clone(),
                inbox: rx,
            }),
        )
    } else {
        (None, None)
    };
    let meshes = inboxes
        .into_iter()
        .map(|inbox| Mesh {
            peers: senders.clone(),
            control: control_tx.clone(),
            inbox,
        })
        .collect();
    let outlets = Outlets {
        shards: senders,
        control: control_tx,
    };
    (meshes, control_link, outlets)
}

impl Mesh {
    /// Sends to every shard (this one included). A shard that has exited is skipped.
    pub fn broadcast(&self, msg: ShardMsg) {
        for p in &self.peers {
            let _ = p.send(msg);
        }
    }

    pub fn send_to(&self, shard: usize, msg: ShardMsg) {
        if let Some(p) = self.peers.get(shard) {
            let _ = p.send(msg);
        }
    }

    pub fn to_control(&self, msg: ControlMsg) {
        if let Some(c) = &self.control {
            let _ = c.send(msg);
        }
    }

    /// The next message waiting, if any (never blocks).
    pub fn try_recv(&self) -> Option<ShardMsg> {
        self.inbox.try_recv().ok()
    }

    pub fn shards(&self) -> usize {
        self.peers.len()
    }
}
