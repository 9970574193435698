//! Request/response over one framed TCP connection per peer, with a deadline on every call.

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
    /// Another call to the same peer is still waiting for its answer.
    #[error("a call to this peer is already in flight")]
    Busy,
    /// The connection failed or the answer was malformed.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// A peer reached over a lazily opened, reused connection. Calls to one peer are serialised;
/// a failed call drops the connection, and the next call opens a new one.
#[derive(Debug)]
pub struct Peer {
    address: String,
    connection: Mutex<Option<TcpStream>>,
}

impl Peer {
    /// A peer at `address` (not connected until the first call).
    pub fn new(address: impl Into<String>) -> Peer {
        Peer {
            address: address.into(),
            connection: Mutex::new(None),
        }
    }

    /// The peer's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sends `request` and waits for one answer, within `deadline`. One call is in flight
    /// per peer at a time: a call made while another is waiting fails at once with
    /// [`RpcError::Busy`] (for a heartbeat, as good as a lost one). A call that fails or
    /// times out drops the connection, so that a late answer is never taken for the next
    /// call's, and a connection stuck behind a partition is not reused after it heals.
    pub async fn call(&self, request: &Message, deadline: Duration) -> Result<Message, RpcError> {
        let Ok(mut connection) = self.connection.try_lock() else {
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
            *connection = Some(TcpStream::connect(self.address.as_str()).await?);
        }
        let stream = connection.as_mut().expect("connected above");
        write_frame(stream, request).await?;
        read_frame(stream).await
    }
}
