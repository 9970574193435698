//! The wire: every message is one frame, `[length: u32 big-endian][version: u8][postcard body]`,
//! where the length counts the version byte and the body. A frame that is too large, of an
//! unknown version, or that does not decode is an error; the connection is then closed by
//! the caller. Nothing here panics on input.

use crate::protocol::{
    Append, AppendReply, ConfigAck, Heartbeat, NodeReport, Publish, PublishReply, Subscribe, Write,
    WriteReply,
};
use crate::types::UserConfig;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The protocol version this build speaks.
pub const VERSION: u8 = 1;

/// The largest frame accepted: a publication for a million users fits, a runaway length
/// prefix does not.
pub const MAX_FRAME_BYTES: u32 = 256 << 20;

/// Every message any party sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Controller to node.
    Heartbeat(Heartbeat),
    /// Node to controller.
    Report(NodeReport),
    /// User to node.
    Write(Write),
    /// Node to user.
    WriteReply(WriteReply),
    /// Primary node to backup node.
    Append(Append),
    /// Backup node to primary node.
    AppendReply(AppendReply),
    /// Controller to config center.
    Publish(Publish),
    /// Config center to controller.
    PublishReply(PublishReply),
    /// User to config center: start pushing my config.
    Subscribe(Subscribe),
    /// Config center to user: your config (pushed on every new epoch).
    Config(UserConfig),
    /// User to config center: I applied this epoch.
    ConfigAck(ConfigAck),
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The connection failed or closed mid-frame.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection between frames.
    #[error("connection closed")]
    Closed,
    /// The length prefix exceeds [`MAX_FRAME_BYTES`] (or is zero).
    #[error("frame length {0} outside 1..={MAX_FRAME_BYTES}")]
    BadLength(u32),
    /// The frame is of a protocol version this build does not speak.
    #[error("frame version {0}, expected {VERSION}")]
    Version(u8),
    /// The body is not a valid message.
    #[error("undecodable frame body: {0}")]
    Decode(#[from] postcard::Error),
}

/// Encodes a message as one frame.
pub fn encode(message: &Message) -> Result<Vec<u8>, WireError> {
    let mut frame = postcard::to_extend(message, vec![0, 0, 0, 0, VERSION])?;
    let length = (frame.len() - 4) as u32;
    if length > MAX_FRAME_BYTES {
        return Err(WireError::BadLength(length));
    }
    frame[..4].copy_from_slice(&length.to_be_bytes());
    Ok(frame)
}

/// Decodes one frame's body (the bytes after the length prefix).
pub fn decode(body: &[u8]) -> Result<Message, WireError> {
    let (&version, rest) = body.split_first().ok_or(WireError::BadLength(0))?;
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    Ok(postcard::from_bytes(rest)?)
}

/// Writes one frame and flushes it (a simulated stream sends nothing until flushed).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    message: &Message,
) -> Result<(), WireError> {
    let frame = encode(message)?;
    crate::service::loss::delay(crate::service::loss::Transmission::Frame).await;
    writer.write_all(&frame).await?;
    writer.flush().await?;
    Ok(())
}

/// Reads one frame. [`WireError::Closed`] when the peer closed cleanly between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Message, WireError> {
    let mut prefix = [0u8; 4];
    match reader.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
        Err(e) => return Err(e.into()),
    }
    let length = u32::from_be_bytes(prefix);
    if length == 0 || length > MAX_FRAME_BYTES {
        return Err(WireError::BadLength(length));
    }
    let mut body = vec![0u8; length as usize];
    reader.read_exact(&mut body).await?;
    decode(&body)
}
