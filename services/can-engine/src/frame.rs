//! CAN frames and the [`FrameSource`] trait every source implements (SocketCAN, candump
//! replay, the in-process [`MemoryBus`](crate::memory::MemoryBus)).

use std::future::Future;

/// `CAN_EFF_FLAG`: the identifier is 29-bit (extended).
pub const CAN_EFF_FLAG: u32 = 0x8000_0000;
/// `CAN_RTR_FLAG`: remote transmission request.
pub const CAN_RTR_FLAG: u32 = 0x4000_0000;
/// `CAN_ERR_FLAG`: an error frame reported by the controller.
pub const CAN_ERR_FLAG: u32 = 0x2000_0000;
/// Mask of a 29-bit identifier.
pub const CAN_EFF_MASK: u32 = 0x1FFF_FFFF;
/// Mask of an 11-bit identifier.
pub const CAN_SFF_MASK: u32 = 0x7FF;

/// One kernel receive filter: a frame passes when `id_word & mask == id & mask`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filter {
    /// Identifier, with `CAN_EFF_FLAG` for extended ones.
    pub id: u32,
    /// Mask, including `CAN_EFF_FLAG | CAN_RTR_FLAG` so that frame types do not mix.
    pub mask: u32,
}

/// What kind of frame it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A classic CAN data frame (0 to 8 bytes).
    Data,
    /// A CAN FD data frame (0 to 64 bytes).
    Fd,
    /// A remote frame (no data).
    Remote,
    /// An error frame (`CAN_ERR_FLAG`).
    Error,
}

/// One timestamped frame.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Unix time in microseconds when the frame was seen (the log's timestamp when replaying).
    pub time_us: i64,
    /// The identifier without flags (11 or 29 bits; the error class for error frames).
    pub id: u32,
    /// 29-bit identifier.
    pub extended: bool,
    /// Data, remote, FD or error frame.
    pub kind: FrameKind,
    len: u8,
    data: [u8; 64],
}

impl Frame {
    /// A frame; data beyond 64 bytes is cut.
    pub fn new(time_us: i64, id: u32, extended: bool, kind: FrameKind, data: &[u8]) -> Self {
        let len = data.len().min(64);
        let mut buf = [0u8; 64];
        buf[..len].copy_from_slice(&data[..len]);
        Frame {
            time_us,
            id: if extended { id & CAN_EFF_MASK } else { id & CAN_SFF_MASK },
            extended,
            kind,
            len: len as u8,
            data: buf,
        }
    }
    /// A classic data frame.
    pub fn data(time_us: i64, id: u32, extended: bool, data: &[u8]) -> Self {
        Frame::new(time_us, id, extended, FrameKind::Data, data)
    }
    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.data[..self.len as usize]
    }
    /// The time in Unix seconds.
    pub fn time(&self) -> f64 {
        self.time_us as f64 / 1e6
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({:?} t={} id=", self.kind, self.time())?;
        if self.extended {
            write!(f, "{:08X}", self.id)?;
        } else {
            write!(f, "{:03X}", self.id)?;
        }
        write!(f, " data=")?;
        for b in self.payload() {
            write!(f, "{b:02X}")?;
        }
        write!(f, ")")
    }
}

/// Why a source could not deliver a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The source is not readable (interface missing or deleted, file unreadable); opened again.
    #[error("{0}")]
    Unavailable(String),
    /// The link went down (SocketCAN): the source stays open and reports
    /// [`SourceError::LinkUp`] when it is up again.
    #[error("{0}")]
    LinkDown(String),
    /// The link is up again after [`SourceError::LinkDown`]; frames follow.
    #[error("the link is up again")]
    LinkUp,
    /// A replay reached its end (and does not loop).
    #[error("end of the recording")]
    End,
    /// This source cannot send (a replay).
    #[error("{0}")]
    CannotSend(String),
}

/// Where frames come from. One decoder path runs behind every implementation.
///
/// `recv` must be cancel-safe: the reading loop selects on it together with outgoing requests.
pub trait FrameSource: Send + 'static {
    /// The next frame.
    fn recv(&mut self) -> impl Future<Output = Result<Frame, SourceError>> + Send;
    /// Send a frame (OBD-II requests). A replay refuses.
    fn send(&mut self, frame: Frame) -> impl Future<Output = Result<(), SourceError>> + Send;
    /// Log lines skipped since the last call (a replay's malformed lines).
    fn take_malformed(&mut self) -> u64 {
        0
    }
    /// What it is, for logs and `GetStatus`.
    fn describe(&self) -> String;
    /// Up to `max` frames at once when they are all ready now (replay at full speed); the
    /// default delivers one through `recv`.
    fn recv_batch(
        &mut self,
        out: &mut Vec<Frame>,
        _max: usize,
    ) -> impl Future<Output = Result<(), SourceError>> + Send {
        async move {
            let f = self.recv().await?;
            out.push(f);
            Ok(())
        }
    }
}
