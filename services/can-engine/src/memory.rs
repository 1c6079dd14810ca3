//! An in-process CAN bus: a [`FrameSource`] whose other end is held by the test or demo code
//! (an ECU simulator that answers OBD-II requests, for instance).

use tokio::sync::mpsc;

use crate::frame::{Frame, FrameSource, SourceError};

/// The service's end of an in-process bus.
pub struct MemoryBus {
    rx: mpsc::Receiver<Frame>,
    tx: mpsc::Sender<Frame>,
}

/// The other end: what the service sends arrives in `rx`; frames sent on `tx` reach the service.
pub struct Peer {
    /// Frames the service sent.
    pub rx: mpsc::Receiver<Frame>,
    /// Frames for the service.
    pub tx: mpsc::Sender<Frame>,
}

/// A bus with room for `capacity` frames in each direction.
pub fn bus(capacity: usize) -> (MemoryBus, Peer) {
    let (to_service, rx) = mpsc::channel(capacity.max(1));
    let (tx, from_service) = mpsc::channel(capacity.max(1));
    (
        MemoryBus { rx, tx },
        Peer {
            rx: from_service,
            tx: to_service,
        },
    )
}

impl FrameSource for MemoryBus {
    async fn recv(&mut self) -> Result<Frame, SourceError> {
        self.rx
            .recv()
            .await
            .ok_or_else(|| SourceError::Unavailable("the in-process bus was closed by its peer".into()))
    }

    async fn send(&mut self, frame: Frame) -> Result<(), SourceError> {
        self.tx
            .send(frame)
            .await
            .map_err(|_| SourceError::Unavailable("the in-process bus was closed by its peer".into()))
    }

    fn describe(&self) -> String {
        "in-process bus".into()
    }
}
