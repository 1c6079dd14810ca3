//! SocketCAN (Linux): a [`FrameSource`] over a raw CAN socket, with kernel receive filters so
//! that only the frames the decoders need reach the process.
//!
//! The link's state is followed as it changes, not when the next frame happens to arrive:
//!
//! - `ip link set can0 down`: the kernel reports `ENETDOWN` on the socket at once. The socket
//!   is waited on for errors as well as frames, so `recv` returns [`SourceError::LinkDown`]
//!   then; the service stops its heartbeat and `GetStatus` says why.
//! - While down, the socket is kept: it stays bound to the interface and receives again as
//!   soon as the link is up, so no frame sent after `up` is lost. The kernel does not report
//!   "up" on a CAN socket; the interface's flags (`/sys/class/net/<if>/flags`, `IFF_UP`) are
//!   read every [`LINK_POLL`] while it is down, and `recv` returns [`SourceError::LinkUp`].
//! - The interface is deleted: `ENODEV` on the socket, [`SourceError::Unavailable`]; the
//!   service opens a new socket when the interface exists again ([`wait_for_interface`]).
//!
//! Tested on a real kernel with vcan in `tests/socketcan.rs` (`cargo xtask system-test`).

use std::io::ErrorKind;
use std::path::PathBuf;
use std::time::Duration;

use socketcan::{CanAnyFrame, CanFilter, EmbeddedFrame, ExtendedId, Frame as _, Id, Socket, SocketOptions, StandardId};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::frame::{
    CAN_EFF_FLAG, CAN_EFF_MASK, CAN_ERR_FLAG, CAN_RTR_FLAG, Filter, Frame, FrameKind, FrameSource, SourceError,
};

/// How often the interface's flags are read while its link is down or it is missing.
pub const LINK_POLL: Duration = Duration::from_millis(250);

/// `IFF_UP` in `/sys/class/net/<if>/flags`.
const IFF_UP: u32 = 0x1;

/// An open CAN socket. It reads classic and CAN FD frames (`CAN_RAW_FD_FRAMES`); on an
/// interface that is not FD-capable only classic frames arrive.
pub struct SocketCanSource {
    socket: AsyncFd<socketcan::CanFdSocket>,
    interface: String,
    /// The link is down (reported, or found down when opened).
    down: bool,
    /// A down link found when opening, not reported yet.
    announce_down: bool,
    /// A frame read while the link was thought down: [`SourceError::LinkUp`] is reported
    /// first, then this frame.
    held: Option<CanAnyFrame>,
}

/// Whether the interface exists and is administratively up; `None` when its flags cannot be
/// read (it does not exist, or /sys is not mounted).
pub fn link_up(interface: &str) -> Option<bool> {
    let path = PathBuf::from("/sys/class/net").join(interface).join("flags");
    let text = std::fs::read_to_string(path).ok()?;
    let flags = u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()?;
    Some(flags & IFF_UP != 0)
}

/// Wait at most `limit` for `interface` to exist and be up, looking every [`LINK_POLL`].
pub async fn wait_for_interface(interface: &str, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if link_up(interface) == Some(true) {
            return;
        }
        tokio::time::sleep(LINK_POLL.min(deadline - tokio::time::Instant::now())).await;
    }
}

impl SocketCanSource {
    /// Open `interface` and install `filters` and an error filter accepting every error class.
    pub fn open(interface: &str, filters: &[Filter]) -> Result<Self, SourceError> {
        let unavailable = |what: &str, e: std::io::Error| {
            SourceError::Unavailable(format!("CAN interface {interface:?}: {what}: {e}"))
        };
        let socket = socketcan::CanFdSocket::open(interface).map_err(|e| unavailable("cannot open", e))?;
        let kernel: Vec<CanFilter> = filters.iter().map(|f| CanFilter::new(f.id, f.mask)).collect();
        socket
            .set_filters(&kernel)
            .map_err(|e| unavailable("cannot set receive filters", e))?;
        socket
            .set_error_filter(CAN_EFF_MASK)
            .map_err(|e| unavailable("cannot set the error filter", e))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| unavailable("cannot make the socket non-blocking", e))?;
        // Errors are a readiness of their own: a reader waiting for READABLE alone is not woken
        // when the link goes down (this was the bug: "down" was seen at the next frame).
        let interest = Interest::READABLE | Interest::WRITABLE | Interest::ERROR;
        // SAFETY: the `CanSocket` owns its file descriptor, which stays open and the same until
        // the `AsyncFd` (which owns the socket) is dropped; `as_raw_fd` always returns it.
        let socket = unsafe { AsyncFd::register_with_interest(socket, interest) }
            .map_err(|e| unavailable("cannot register the socket with the runtime", e.into()))?;
        // Opening works on a link that is down, and nothing is reported on the socket then.
        let down = link_up(interface) == Some(false);
        Ok(SocketCanSource {
            socket,
            interface: interface.to_string(),
            down,
            announce_down: down,
            held: None,
        })
    }

    fn down_error(&self) -> SourceError {
        SourceError::LinkDown(format!("CAN interface {:?} is down", self.interface))
    }

    /// What a failed read or write means: the link went down (the socket stays), or the
    /// socket is unusable (the interface was deleted) and must be opened again.
    fn failed(&mut self, what: &str, e: std::io::Error) -> SourceError {
        if e.kind() == ErrorKind::NetworkDown {
            self.down = true;
            return self.down_error();
        }
        SourceError::Unavailable(format!("CAN interface {:?}: {what} failed: {e}", self.interface))
    }

    /// The next frame, or a change of the link's state.
    async fn next(&mut self) -> Result<CanAnyFrame, SourceError> {
        if std::mem::take(&mut self.announce_down) {
            return Err(self.down_error());
        }
        if let Some(frame) = self.held.take() {
            return Ok(frame);
        }
        loop {
            if self.down {
                tokio::select! {
                    // A frame or an error (the interface deleted) ends the wait as well.
                    ready = self.socket.ready(Interest::READABLE | Interest::ERROR) => {
                        drop(ready);
                    }
                    () = tokio::time::sleep(LINK_POLL) => {
                        if link_up(&self.interface) == Some(true) {
                            self.down = false;
                            return Err(SourceError::LinkUp);
                        }
                        continue;
                    }
                }
            }
            let mut guard = self
                .socket
                .ready(Interest::READABLE | Interest::ERROR)
                .await
                .map_err(|e| SourceError::Unavailable(format!("CAN interface {:?}: {e}", self.interface)))?;
            match guard.try_io(|s| s.get_ref().read_frame()) {
                Ok(Ok(frame)) if self.down => {
                    // A frame arrived, so the link is up: say so, then deliver the frame.
                    self.down = false;
                    self.held = Some(frame);
                    return Err(SourceError::LinkUp);
                }
                Ok(Ok(frame)) => return Ok(frame),
                Ok(Err(e)) => return Err(self.failed("read", e)),
                // Nothing to read after all: wait again.
                Err(_would_block) => continue,
            }
        }
    }
}

impl FrameSource for SocketCanSource {
    async fn recv(&mut self) -> Result<Frame, SourceError> {
        let f = self.next().await?;
        let t = (tolomeo_core::unix_now() * 1e6) as i64;
        let word = f.id_word();
        let extended = word & CAN_EFF_FLAG != 0;
        let kind = match &f {
            CanAnyFrame::Fd(_) => FrameKind::Fd,
            _ if word & CAN_ERR_FLAG != 0 => FrameKind::Error,
            _ if word & CAN_RTR_FLAG != 0 => FrameKind::Remote,
            _ => FrameKind::Data,
        };
        Ok(Frame::new(t, word & CAN_EFF_MASK, extended, kind, f.data()))
    }

    async fn send(&mut self, frame: Frame) -> Result<(), SourceError> {
        if self.down {
            return Err(self.down_error());
        }
        let id = if frame.extended {
            ExtendedId::new(frame.id).map(Id::Extended)
        } else {
            u16::try_from(frame.id).ok().and_then(StandardId::new).map(Id::Standard)
        };
        let out = id
            .and_then(|id| socketcan::CanFrame::new(id, frame.payload()))
            .ok_or_else(|| SourceError::CannotSend(format!("{frame:?} is not a classic CAN frame")))?;
        loop {
            let mut guard = self
                .socket
                .writable()
                .await
                .map_err(|e| SourceError::Unavailable(format!("CAN interface {:?}: {e}", self.interface)))?;
            match guard.try_io(|s| s.get_ref().write_frame(&out)) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => return Err(self.failed("write", e)),
                Err(_would_block) => continue,
            }
        }
    }

    fn describe(&self) -> String {
        format!("CAN interface {}", self.interface)
    }
}
