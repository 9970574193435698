//! Request/response over framed TCP connections to a peer, with a deadline on every call.

use crate::wire::{read_frame, write_frame, Message, WireError};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// Why a call failed. The outcome of the request is then unknown.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// No answer before the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Every connection to the peer is still waiting for an answer.
    #[error("a call to this peer is already in flight")]
    Busy,
    /// The connection failed or the answer was malformed.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// A peer reached over a few lazily opened, reused connections (slots), one call in flight
/// on each. A failed call drops its connection, and the next call on that slot opens a new
/// one.
#[derive(Debug)]
pub struct Peer {
    address: String,
    slots: Vec<Mutex<Option<TcpStream>>>,
}

impl Peer {
    /// A peer at `address` (not connected until the first call).
    pub fn new(address: impl Into<String>) -> Peer {
        Peer::with_slots(address, 1)
    }

    /// A peer with `slots` connections, so that up to that many calls can be in flight at
    /// once: heartbeats sent every interval keep flowing while the round trip is longer than
    /// the interval (up to `slots` intervals).
    pub fn with_slots(address: impl Into<String>, slots: usize) -> Peer {
        Peer {
            address: address.into(),
            slots: (0..slots.max(1)).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// The peer's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sends `request` and waits for one answer, within `deadline`. One call is in flight
    /// per slot: a call made while every slot is waiting fails at once with
    /// [`RpcError::Busy`] (for a heartbeat, as good as a lost one). A call that fails or
    /// times out drops the connection, so that a late answer is never taken for the next
    /// call's, and a connection stuck behind a partition is not reused after it heals.
    pub async fn call(&self, request: &Message, deadline: Duration) -> Result<Message, RpcError> {
        // A free slot with its connection open first: opening one costs a round trip more.
        let free = || self.slots.iter().filter_map(|slot| slot.try_lock().ok());
        let Some(mut connection) = free().find(|c| c.is_some()).or_else(|| free().next()) else {
            return Err(RpcError::Busy);
        };
        let result = tokio::time::timeout(deadline, self.exchange(&mut connection, request)).await;
        match result {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => {
                *connection = None;
                Err(error.into())
            }
            Err(_) => {
                *connection = None;
                Err(RpcError::Timeout(deadline))
            }
        }
    }

    async fn exchange(
        &self,
        connection: &mut Option<TcpStream>,
        request: &Message,
    ) -> Result<Message, WireError> {
        if connection.is_none() {
            crate::service::loss::delay(crate::service::loss::Transmission::Connect).await;
            *connection = Some(TcpStream::connect(self.address.as_str()).await?);
        }
        let stream = connection.as_mut().expect("connected above");
        write_frame(stream, request).await?;
        read_frame(stream).await
    }
}
