//! Replay of a `candump -L` log as a [`FrameSource`].
//!
//! The file is read line by line (constant memory). At a speed factor the frames are
//! delivered at the log's pace divided by the factor, stamped with the log's timestamps
//! (speed ≥ 1) or the wall clock (speed < 1, or [`ReplaySource::stamped_now`]: a recording
//! shown as if it were live, as canplayer plays one). At "max" they come as fast as they are
//! parsed, with the log's timestamps.
//! Looping shifts every pass by the log's duration plus one frame interval so that time keeps
//! increasing. Malformed lines are skipped and counted, never fatal.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::candump::parse_line;
use crate::frame::{Frame, FrameSource, SourceError};

/// A log replayed as a bus.
pub struct ReplaySource {
    path: PathBuf,
    reader: BufReader<File>,
    line: Vec<u8>,
    speed: Option<f64>,
    looping: bool,
    stamp_now: bool,
    origin: Option<(Instant, i64)>,
    offset_us: i64,
    first_raw: Option<i64>,
    last_raw: i64,
    last_gap: i64,
    frames_in_pass: u64,
    pending: Option<Frame>,
    malformed: u64,
    line_no: u64,
    logged: u32,
}

impl ReplaySource {
    /// Open `path`; `speed` is `None` for "max".
    pub fn open(path: &Path, speed: Option<f64>, looping: bool) -> Result<Self, SourceError> {
        let file = File::open(path)
            .map_err(|e| SourceError::Unavailable(format!("cannot open the replay file {}: {e}", path.display())))?;
        Ok(ReplaySource {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(16 * 1024, file),
            line: Vec::with_capacity(256),
            speed,
            looping,
            stamp_now: false,
            origin: None,
            offset_us: 0,
            first_raw: None,
            last_raw: 0,
            last_gap: 0,
            frames_in_pass: 0,
            pending: None,
            malformed: 0,
            line_no: 0,
            logged: 0,
        })
    }

    /// At a speed factor, stamp every frame with the wall clock when it is delivered instead
    /// of the log's time (`replay_clock = "now"`).
    pub fn stamped_now(mut self, now: bool) -> Self {
        self.stamp_now = now;
        self
    }

    /// The next frame in the file (looping if configured), without pacing.
    fn next_frame(&mut self) -> Result<Frame, SourceError> {
        loop {
            self.line.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.line)
                .map_err(|e| SourceError::Unavailable(format!("cannot read {}: {e}", self.path.display())))?;
            if n == 0 {
                if !self.looping || self.frames_in_pass == 0 {
                    return Err(SourceError::End);
                }
                let gap = if self.last_gap > 0 { self.last_gap } else { 1_000 };
                let first = self.first_raw.unwrap_or(self.last_raw);
                self.offset_us = self.offset_us.saturating_add(self.last_raw - first + gap);
                self.frames_in_pass = 0;
                self.first_raw = None;
                self.line_no = 0;
                self.reader
                    .rewind()
                    .map_err(|e| SourceError::Unavailable(format!("cannot rewind {}: {e}", self.path.display())))?;
                continue;
            }
            self.line_no += 1;
            match parse_line(&self.line) {
                Ok(Some(mut f)) => {
                    let raw = f.time_us;
                    if self.first_raw.is_none() {
                        self.first_raw = Some(raw);
                    } else if raw > self.last_raw {
                        self.last_gap = raw - self.last_raw;
                    }
                    if self.frames_in_pass == 0 || raw > self.last_raw {
                        self.last_raw = raw;
                    }
                    self.frames_in_pass += 1;
                    f.time_us = raw.saturating_add(self.offset_us);
                    return Ok(f);
                }
                Ok(None) => {}
                Err(e) => {
                    self.malformed += 1;
                    if self.logged < 10 {
                        self.logged += 1;
                        tracing::warn!(
                            "{} line {}: skipped, {e} (expected `(seconds.micros) iface ID#DATA`)",
                            self.path.display(),
                            self.line_no
                        );
                    }
                }
            }
        }
    }
}

impl FrameSource for ReplaySource {
    async fn recv(&mut self) -> Result<Frame, SourceError> {
        let frame = match self.pending {
            Some(f) => f,
            None => {
                let f = self.next_frame()?;
                self.pending = Some(f);
                f
            }
        };
        if let Some(speed) = self.speed {
            let (wall0, log0) = *self.origin.get_or_insert((Instant::now(), frame.time_us));
            let ahead_us = (frame.time_us - log0).max(0) as f64 / speed;
            let due = wall0 + Duration::from_micros(ahead_us.min(1e15) as u64);
            tokio::time::sleep_until(due.into()).await;
        }
        self.pending = None;
        let mut frame = frame;
        if self.speed.is_some_and(|s| s < 1.0 || self.stamp_now) {
            frame.time_us = (tolomeo_core::unix_now() * 1e6) as i64;
        }
        Ok(frame)
    }

    async fn recv_batch(&mut self, out: &mut Vec<Frame>, max: usize) -> Result<(), SourceError> {
        if self.speed.is_some() {
            let f = self.recv().await?;
            out.push(f);
            return Ok(());
        }
        for _ in 0..max {
            match self.next_frame() {
                Ok(f) => out.push(f),
                Err(e) if out.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        Ok(())
    }

    async fn send(&mut self, _frame: Frame) -> Result<(), SourceError> {
        Err(SourceError::CannotSend("a replayed log cannot send frames".into()))
    }

    fn take_malformed(&mut self) -> u64 {
        std::mem::take(&mut self.malformed)
    }

    fn describe(&self) -> String {
        format!("replay of {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stamped_now_publishes_the_replay_time_not_the_logs() {
        let path = std::env::temp_dir().join(format!("can-engine-now-{}.log", std::process::id()));
        // Recorded in November 2023, 50 ms apart.
        std::fs::write(
            &path,
            "(1700000000.000000) can0 123#01\n(1700000000.050000) can0 123#02\n",
        )
        .unwrap();
        let before = (tolomeo_core::unix_now() * 1e6) as i64;
        let mut live = ReplaySource::open(&path, Some(1.0), false).unwrap().stamped_now(true);
        let (a, b) = (live.recv().await.unwrap().time_us, live.recv().await.unwrap().time_us);
        let after = (tolomeo_core::unix_now() * 1e6) as i64;
        assert!(before <= a && a <= b && b <= after, "{before} <= {a} <= {b} <= {after}");
        // Paced as recorded: the second frame 50 ms after the first.
        assert!(b - a >= 45_000, "{a} then {b}");
        // Without it, the log's own times.
        let mut log = ReplaySource::open(&path, Some(1.0), false).unwrap();
        assert_eq!(log.recv().await.unwrap().time_us, 1_700_000_000_000_000);
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test]
    async fn looping_shifts_time_forward() {
        let path = std::env::temp_dir().join(format!("can-engine-loop-{}.log", std::process::id()));
        std::fs::write(
            &path,
            "(10.000000) can0 123#01\nnot a frame\n(10.100000) can0 123#02\n(10.300000) can0 123#03\n",
        )
        .unwrap();
        let mut src = ReplaySource::open(&path, None, true).unwrap();
        let mut times = Vec::new();
        for _ in 0..7 {
            times.push(src.recv().await.unwrap().time_us);
        }
        // Pass length 0.3 s + last interval 0.2 s = 0.5 s shift per pass.
        assert_eq!(
            times,
            [
                10_000_000, 10_100_000, 10_300_000, 10_500_000, 10_600_000, 10_800_000, 11_000_000
            ]
        );
        assert_eq!(src.take_malformed(), 2); // read twice; the third pass has not reached it
        let mut once = ReplaySource::open(&path, None, false).unwrap();
        for _ in 0..3 {
            once.recv().await.unwrap();
        }
        assert_eq!(once.recv().await, Err(SourceError::End));
        assert!(once.send(Frame::data(0, 0x7DF, false, &[])).await.is_err());
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            ReplaySource::open(&path, None, false),
            Err(SourceError::Unavailable(m)) if m.contains("can-engine-loop")
        ));
    }
}
