//! SocketCAN (Linux): a thin [`FrameSource`] over `socketcan::tokio::CanSocket`, with kernel
//! receive filters so that only the frames the decoders need reach the process.
//!
//! This machine has no SocketCAN: this layer is compiled and type-checked here, exercised on
//! hardware; everything above it is tested with replays through the same pipeline.

use socketcan::{CanFilter, EmbeddedFrame, ExtendedId, Frame as _, Id, SocketOptions, StandardId};

use crate::frame::{
    CAN_EFF_FLAG, CAN_EFF_MASK, CAN_ERR_FLAG, CAN_RTR_FLAG, Filter, Frame, FrameKind, FrameSource, SourceError,
};

/// An open CAN socket.
pub struct SocketCanSource {
    socket: socketcan::tokio::CanSocket,
    interface: String,
}

impl SocketCanSource {
    /// Open `interface` and install `filters` and an error filter accepting every error class.
    pub fn open(interface: &str, filters: &[Filter]) -> Result<Self, SourceError> {
        let unavailable = |what: &str, e: std::io::Error| {
            SourceError::Unavailable(format!("CAN interface {interface:?}: {what}: {e}"))
        };
        let socket = socketcan::tokio::CanSocket::open(interface).map_err(|e| unavailable("cannot open", e))?;
        let kernel: Vec<CanFilter> = filters.iter().map(|f| CanFilter::new(f.id, f.mask)).collect();
        socket
            .set_filters(&kernel)
            .map_err(|e| unavailable("cannot set receive filters", e))?;
        socket
            .set_error_filter(CAN_EFF_MASK)
            .map_err(|e| unavailable("cannot set the error filter", e))?;
        Ok(SocketCanSource {
            socket,
            interface: interface.to_string(),
        })
    }
}

impl FrameSource for SocketCanSource {
    async fn recv(&mut self) -> Result<Frame, SourceError> {
        let f =
            self.socket.read_frame().await.map_err(|e| {
                SourceError::Unavailable(format!("CAN interface {:?}: read failed: {e}", self.interface))
            })?;
        let t = (tolomeo_core::unix_now() * 1e6) as i64;
        let word = f.id_word();
        let extended = word & CAN_EFF_FLAG != 0;
        let kind = if word & CAN_ERR_FLAG != 0 {
            FrameKind::Error
        } else if word & CAN_RTR_FLAG != 0 {
            FrameKind::Remote
        } else {
            FrameKind::Data
        };
        Ok(Frame::new(t, word & CAN_EFF_MASK, extended, kind, f.data()))
    }

    async fn send(&mut self, frame: Frame) -> Result<(), SourceError> {
        let id = if frame.extended {
            ExtendedId::new(frame.id).map(Id::Extended)
        } else {
            u16::try_from(frame.id).ok().and_then(StandardId::new).map(Id::Standard)
        };
        let out = id
            .and_then(|id| socketcan::CanFrame::new(id, frame.payload()))
            .ok_or_else(|| SourceError::CannotSend(format!("{frame:?} is not a classic CAN frame")))?;
        self.socket
            .write_frame(out)
            .await
            .map_err(|e| SourceError::Unavailable(format!("CAN interface {:?}: write failed: {e}", self.interface)))
    }

    fn describe(&self) -> String {
        format!("CAN interface {}", self.interface)
    }
}
