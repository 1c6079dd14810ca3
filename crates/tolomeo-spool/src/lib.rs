//! Crash-safe, bounded, append-only on-disk spool for records the broker has
//! not confirmed yet.
//!
//! # Purpose
//!
//! The telemetry service writes every record it could not (yet) publish to
//! this spool, in its state directory. After a crash (SIGKILL) or a power cut
//! the service reopens the spool and gets back, oldest first, every intact
//! entry that was not acknowledged. The spool knows nothing about the broker:
//! it stores opaque byte entries in order and forgets them when told, through
//! [`Spool::ack`], that they were delivered.
//!
//! # On-disk format
//!
//! All files live in [`SpoolConfig::dir`]:
//!
//! * `spool-<16 lowercase hex digits>.log`: a segment. The number is the
//!   [`EntryId`] of the first entry written to it; the *i*-th intact entry of
//!   the segment (counting from 0) has id `number + i`. Ids are a global
//!   counter: they increase across segments and across restarts (there may be
//!   gaps, never reuse within a run nor going backwards after a restart while
//!   the ack file is intact).
//! * `spool.ack`: the acknowledgement state, 16 bytes: `b"SPAK"`, the u64
//!   little-endian *first id that is not acknowledged*, and a u32
//!   little-endian CRC-32 of those 8 bytes. Missing or invalid means "nothing
//!   acknowledged" (everything on disk is replayed: at-least-once).
//! * `spool.ack.tmp`: the ack file being written; removed on open.
//!
//! Any other file in the directory is ignored.
//!
//! A segment is a sequence of entries, each a 10-byte header then the payload:
//!
//! ```text
//! offset 0  2 bytes  magic 0xE5 0x01 (the second byte is the format version)
//! offset 2  4 bytes  payload length, u32 little-endian (at most MAX_ENTRY_LEN)
//! offset 6  4 bytes  CRC-32 (IEEE, as zlib) over the 4 length bytes + payload
//! offset 10 N bytes  payload
//! ```
//!
//! Reading ([`read_segment`]) stops trusting a segment at the first entry
//! whose magic is wrong, whose length is above [`MAX_ENTRY_LEN`] or above
//! what is left of the file, or whose CRC does not match. That entry counts
//! as one corrupt entry and everything from its first byte to the end of the
//! segment counts as skipped bytes. **There is no resync**: entries after a
//! corruption in the middle of a segment are lost (later segments are read
//! normally). Lengths are never trusted for allocation: a payload is only
//! copied out after it was found inside the bytes actually read, and a
//! segment is read at most `max_bytes` bytes far (the rest counts as
//! skipped; a segment can only be longer if `max_bytes` was lowered).
//!
//! After recovery new entries always go to a **new** segment: nothing is ever
//! appended after a torn tail or garbage. The same happens after a failed
//! write or fsync in the running process (the segment is "poisoned" and the
//! next append rolls). Segment files are opened with `O_APPEND` and each
//! batch is encoded in memory and written with one `write_all`.
//!
//! # Bounds
//!
//! A new segment is started when the current one is non-empty and the batch
//! would take it past `segment_bytes` (a batch is never split, so a segment
//! may exceed `segment_bytes` by up to one batch). Before a batch is written,
//! while the segments plus the batch would exceed `max_bytes`, the **oldest
//! segment is deleted**, and its unacknowledged entries are added to
//! [`Spool::dropped_entries`]. An entry (header included) or a batch larger
//! than `max_bytes`, or an entry longer than [`MAX_ENTRY_LEN`], is refused
//! with [`io::ErrorKind::InvalidInput`] and nothing is written. `max_bytes`
//! bounds the segment files; the 16-byte ack file comes on top.
//!
//! # Durability guarantees
//!
//! * Data: with [`FsyncPolicy::Always`] an entry whose `append` returned `Ok`
//!   survives a power cut. With `EveryBatches(n)` up to `n - 1` batches
//!   whose `append` returned `Ok` may be lost by a power cut (none by a
//!   process crash: the data is in the kernel's page cache). With `Never`,
//!   whatever the kernel had not written back is lost on a power cut. A new
//!   segment's directory entry is fsynced when created (unless `Never`).
//! * A torn or corrupt entry is never returned; entries before it are.
//! * Acks: [`Spool::ack`] rewrites `spool.ack` atomically (write temp file,
//!   rename). It is fsynced (file and directory) according to the same
//!   policy, counting ack calls instead of batches. **At-least-once window**:
//!   after a power cut, entries acknowledged since the last *durable* ack
//!   file may be replayed once more (with `Always`: none; with
//!   `EveryBatches(n)`: those acked by up to the last `n - 1` ack calls; with
//!   `Never`: anything since the kernel last wrote the file back; and if the
//!   ack file itself is found corrupt, everything still on disk). After a
//!   process crash without power loss, nothing acknowledged is replayed.
//!   An ack never loses unacknowledged data: segments are deleted only after
//!   the ack file was written.
//! * Whole non-active segments holding only acknowledged entries are deleted
//!   at ack time; the segment being appended to is kept (to avoid file
//!   create/delete churn) and deleted when it is rolled or at the next open.
//! * If an fsync fails, `append` returns the error although the batch may be
//!   on disk: it may then be replayed after a restart (a duplicate if the
//!   caller retries; never a loss). The segment is not appended to again.
//! * Deleting segments (acked or evicted) does not fsync the directory: after
//!   a power cut a deleted segment may reappear; its acknowledged entries are
//!   filtered out, evicted ones are replayed (duplicates, not loss).
//! * [`Recovery::entries`] holds every unacknowledged entry in memory (at
//!   most about `max_bytes` of payload).
//! * Dropping a [`Spool`] syncs pending batches and acks unless the policy is
//!   `Never`; [`Spool::sync`] does it explicitly.
//!
//! # fsync policy and flash wear
//!
//! [`Spool::bytes_written`] counts the logical bytes this module wrote
//! (segments plus ack files). What flash pays is more: NAND is programmed in
//! pages (typically 4–16 KiB) and erased in blocks (128 KiB–4 MiB), so every
//! fsync that lands in the middle of a page costs a whole page program, plus
//! the filesystem journal/metadata blocks (ext4: usually one or more 4 KiB
//! journal blocks per fsync; a new segment or an ack rename costs directory
//! and inode updates), and the FTL adds its own write amplification (often
//! 2–4x). As a rule of thumb, a small fsynced batch costs about 8–20 KiB of
//! flash writes regardless of its size, and each ack call (a file create +
//! rename) costs a few KiB of metadata. So: batch entries, prefer
//! `EveryBatches(n)` with `n > 1` when a few seconds of records may be lost
//! on a power cut, and ack the highest delivered id once per delivery burst
//! rather than per record. Large `segment_bytes` means fewer file creations;
//! small means acked data is freed sooner.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Bytes of the header in front of every payload.
pub const HEADER_LEN: usize = 10;
/// Largest payload accepted on append and trusted on read (16 MiB).
pub const MAX_ENTRY_LEN: u32 = 16 * 1024 * 1024;

const MAGIC: [u8; 2] = [0xE5, 0x01];
const ACK_FILE: &str = "spool.ack";
const ACK_TMP: &str = "spool.ack.tmp";
const ACK_MAGIC: [u8; 4] = *b"SPAK";
const ACK_LEN: usize = 16;
const SEGMENT_PREFIX: &str = "spool-";
const SEGMENT_SUFFIX: &str = ".log";

/// When to fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fsync after every batch (and every ack).
    Always,
    /// Never fsync; the kernel writes back when it likes.
    Never,
    /// fsync after every N appended batches (and every N acks); 0 means 1.
    EveryBatches(u32),
}

/// Spool settings.
///
/// Defaults: `dir` = `./spool` (relative to the working directory: set it to
/// the service's state directory), `max_bytes` = 64 MiB, `segment_bytes` =
/// 4 MiB, `fsync` = `EveryBatches(1)` (every batch is durable when `append`
/// returns; raise N to save flash wear).
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Directory holding the segment and ack files (created if needed).
    pub dir: PathBuf,
    /// Bound on the total size of the segment files.
    pub max_bytes: u64,
    /// A new segment file is started when a batch would take the current one past this.
    pub segment_bytes: u64,
    /// When to fsync.
    pub fsync: FsyncPolicy,
}

impl SpoolConfig {
    /// Defaults with the given directory.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SpoolConfig {
            dir: dir.into(),
            ..SpoolConfig::default()
        }
    }
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: PathBuf::from("spool"),
            max_bytes: 64 * 1024 * 1024,
            segment_bytes: 4 * 1024 * 1024,
            fsync: FsyncPolicy::EveryBatches(1),
        }
    }
}

/// Position of an entry: a global counter, increasing across segments and restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId(pub u64);

/// What opening found on disk.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Intact, not yet acknowledged entries, oldest first.
    pub entries: Vec<(EntryId, Vec<u8>)>,
    /// Entries skipped because their length or checksum was wrong (torn write, bit rot).
    pub corrupt_entries: u64,
    /// Bytes skipped (torn tails, garbage after a bad header).
    pub skipped_bytes: u64,
}

#[derive(Debug)]
struct Segment {
    /// Id of the first entry (also the number in the file name).
    first: u64,
    /// Intact entries; their ids are `first..first + count`.
    count: u64,
    /// File size.
    bytes: u64,
    path: PathBuf,
}

impl Segment {
    fn end(&self) -> u64 {
        self.first.saturating_add(self.count)
    }

    /// Entries of this segment with an id `>= ack_next`.
    fn unacked(&self, ack_next: u64) -> u64 {
        self.end().saturating_sub(ack_next.max(self.first))
    }
}

/// The spool. See the module documentation.
#[derive(Debug)]
pub struct Spool {
    config: SpoolConfig,
    /// Oldest first. When `active` is `Some`, the last one is the active segment.
    segments: VecDeque<Segment>,
    active: Option<File>,
    /// A write or fsync on the active segment failed: roll before the next write.
    active_poisoned: bool,
    next_id: u64,
    /// Every id below this is acknowledged.
    ack_next: u64,
    dropped: u64,
    disk_bytes: u64,
    bytes_written: u64,
    unsynced_batches: u32,
    unsynced_acks: u32,
}

impl Spool {
    /// Open (creating the directory if needed) and read back what is there.
    /// Never panics on any file content; unreadable segments are skipped and
    /// counted in `skipped_bytes`.
    pub fn open(config: SpoolConfig) -> io::Result<(Spool, Recovery)> {
        fs::create_dir_all(&config.dir)?;
        remove_if_exists(&config.dir.join(ACK_TMP))?;
        let ack_next = read_ack(&config.dir);
        let found = list_segments(&config.dir)?;
        let cap = config.max_bytes;

        let mut recovery = Recovery::default();
        let mut segments = VecDeque::new();
        let mut next_id = ack_next;
        let mut disk_bytes = 0u64;

        for (idx, (first, path, len)) in found.iter().enumerate() {
            let (payloads, mut corrupt, skipped) = match read_capped(path, cap) {
                Ok((bytes, beyond)) => {
                    let (p, c, s) = read_segment(&bytes);
                    (p, c, s.saturating_add(beyond))
                }
                Err(_) => (Vec::new(), 0, *len),
            };
            // Ids of a segment must stay below the next segment's first id
            // (only violated if files were renamed by hand).
            let room = match found.get(idx + 1) {
                Some((next_first, _, _)) => next_first.saturating_sub(*first),
                None => u64::MAX - *first,
            };
            let mut count = payloads.len() as u64;
            if count > room {
                corrupt = corrupt.saturating_add(count - room);
                count = room;
            }
            recovery.corrupt_entries = recovery.corrupt_entries.saturating_add(corrupt);
            recovery.skipped_bytes = recovery.skipped_bytes.saturating_add(skipped);
            for (id, payload) in (*first..first.saturating_add(count)).zip(payloads) {
                if id >= ack_next {
                    recovery.entries.push((EntryId(id), payload));
                }
            }
            next_id = next_id.max(first.saturating_add(count.max(1)));
            let seg = Segment {
                first: *first,
                count,
                bytes: *len,
                path: path.clone(),
            };
            // Nothing is active yet: fully acknowledged (or empty/garbage)
            // segments can go.
            if seg.unacked(ack_next) == 0 && remove_if_exists(&seg.path).is_ok() {
                continue;
            }
            disk_bytes = disk_bytes.saturating_add(seg.bytes);
            segments.push_back(seg);
        }

        let spool = Spool {
            config,
            segments,
            active: None,
            active_poisoned: false,
            next_id,
            ack_next,
            dropped: 0,
            disk_bytes,
            bytes_written: 0,
            unsynced_batches: 0,
            unsynced_acks: 0,
        };
        Ok((spool, recovery))
    }

    /// Append one batch of entries (one write per batch; fsync per policy).
    /// Returns their ids, in order. When the total would exceed `max_bytes`,
    /// the oldest segments are deleted first (their unacknowledged entries
    /// are counted in [`Spool::dropped_entries`]). An entry (with its 10-byte
    /// header) or a whole batch larger than `max_bytes`, or a payload longer
    /// than [`MAX_ENTRY_LEN`], is refused with `InvalidInput`.
    pub fn append(&mut self, entries: &[&[u8]]) -> io::Result<Vec<EntryId>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut total = 0u64;
        for entry in entries {
            if entry.len() > MAX_ENTRY_LEN as usize {
                return Err(invalid_input("entry longer than MAX_ENTRY_LEN"));
            }
            let encoded = (HEADER_LEN + entry.len()) as u64;
            if encoded > self.config.max_bytes {
                return Err(invalid_input("entry larger than max_bytes"));
            }
            total = total.saturating_add(encoded);
        }
        if total > self.config.max_bytes {
            return Err(invalid_input("batch larger than max_bytes; split it"));
        }
        let n = entries.len() as u64;
        let first_id = self.next_id;
        let end_id = first_id
            .checked_add(n)
            .ok_or_else(|| io::Error::other("entry ids exhausted"))?;
        let mut buf = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for entry in entries {
            encode_entry(&mut buf, entry);
        }

        if self.active.is_some() {
            let roll = self.active_poisoned
                || self
                    .segments
                    .back()
                    .is_some_and(|s| s.bytes > 0 && s.bytes.saturating_add(total) > self.config.segment_bytes);
            if roll {
                self.close_active()?;
            }
        }
        self.evict_for(total)?;
        if self.active.is_none() {
            self.create_segment()?;
        }

        let pending = self.unsynced_batches.saturating_add(1);
        let sync_now = self.sync_due(pending);
        let (Some(file), Some(seg)) = (self.active.as_mut(), self.segments.back_mut()) else {
            return Err(io::Error::other("no active segment"));
        };
        if let Err(e) = file.write_all(&buf) {
            self.active_poisoned = true;
            if let Ok(meta) = file.metadata() {
                self.disk_bytes = self.disk_bytes.saturating_sub(seg.bytes).saturating_add(meta.len());
                self.bytes_written = self.bytes_written.saturating_add(meta.len().saturating_sub(seg.bytes));
                seg.bytes = meta.len();
            }
            return Err(e);
        }
        seg.bytes = seg.bytes.saturating_add(total);
        seg.count = seg.count.saturating_add(n);
        self.disk_bytes = self.disk_bytes.saturating_add(total);
        self.bytes_written = self.bytes_written.saturating_add(total);
        self.next_id = end_id;
        self.unsynced_batches = pending;
        if sync_now {
            if let Err(e) = file.sync_data() {
                self.active_poisoned = true;
                return Err(e);
            }
            self.unsynced_batches = 0;
        }
        Ok((first_id..end_id).map(EntryId).collect())
    }

    /// Everything up to and including `id` was delivered: forget it.
    ///
    /// Persists the acknowledgement (ack file rewritten via temp + rename,
    /// fsynced per policy), then deletes the non-active segments that hold
    /// only acknowledged entries. An `id` beyond the last issued id is
    /// clamped to it; an `id` at or below an earlier ack is a no-op.
    pub fn ack(&mut self, id: EntryId) -> io::Result<()> {
        let new_next = id.0.saturating_add(1).min(self.next_id);
        if new_next <= self.ack_next {
            return Ok(());
        }
        let pending = self.unsynced_acks.saturating_add(1);
        let durable = self.sync_due(pending);
        write_ack(&self.config.dir, new_next, durable)?;
        self.unsynced_acks = if durable { 0 } else { pending };
        self.bytes_written = self.bytes_written.saturating_add(ACK_LEN as u64);
        self.ack_next = new_next;
        self.delete_acked_front()
    }

    /// fsync the active segment and the ack file now, whatever the policy.
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some(file) = &self.active
            && self.unsynced_batches > 0
        {
            file.sync_data()?;
            self.unsynced_batches = 0;
        }
        if self.unsynced_acks > 0 {
            File::open(self.config.dir.join(ACK_FILE))?.sync_all()?;
            sync_dir(&self.config.dir)?;
            self.unsynced_acks = 0;
        }
        Ok(())
    }

    /// Entries dropped because the spool was full, since open.
    pub fn dropped_entries(&self) -> u64 {
        self.dropped
    }

    /// Bytes of segment files on disk now (the 16-byte ack file not included).
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes
    }

    /// Bytes written since open (segments and ack files; for the flash-wear estimate).
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// The id the next appended entry will get.
    pub fn next_id(&self) -> EntryId {
        EntryId(self.next_id)
    }

    /// Entries on disk that are not acknowledged (intact ones, as far as known).
    pub fn pending_entries(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.unacked(self.ack_next))
            .fold(0u64, u64::saturating_add)
    }

    fn sync_due(&self, pending: u32) -> bool {
        match self.config.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Never => false,
            FsyncPolicy::EveryBatches(n) => pending >= n.max(1),
        }
    }

    fn create_segment(&mut self) -> io::Result<()> {
        let first = self.next_id;
        let path = self.config.dir.join(segment_name(first));
        let file = OpenOptions::new().append(true).create_new(true).open(&path)?;
        if self.config.fsync != FsyncPolicy::Never {
            sync_dir(&self.config.dir)?;
        }
        self.segments.push_back(Segment {
            first,
            count: 0,
            bytes: 0,
            path,
        });
        self.active = Some(file);
        self.active_poisoned = false;
        self.unsynced_batches = 0;
        Ok(())
    }

    /// Stop appending to the active segment (sync it if batches are pending).
    fn close_active(&mut self) -> io::Result<()> {
        let Some(file) = self.active.take() else {
            return Ok(());
        };
        let pending = self.unsynced_batches > 0 && self.config.fsync != FsyncPolicy::Never;
        self.unsynced_batches = 0;
        self.active_poisoned = false;
        if let Some(seg) = self.segments.back() {
            // Never create a segment with the same name again.
            self.next_id = self.next_id.max(seg.first.saturating_add(1));
        }
        if pending {
            file.sync_data()?;
        }
        drop(file);
        self.delete_acked_front()
    }

    /// Delete the oldest segments until `incoming` more bytes fit in `max_bytes`.
    fn evict_for(&mut self, incoming: u64) -> io::Result<()> {
        while self.disk_bytes.saturating_add(incoming) > self.config.max_bytes {
            let Some(seg) = self.segments.front() else {
                break;
            };
            remove_if_exists(&seg.path)?;
            let was_active = self.active.is_some() && self.segments.len() == 1;
            if was_active {
                self.active = None;
                self.active_poisoned = false;
                self.unsynced_batches = 0;
            }
            if let Some(seg) = self.segments.pop_front() {
                self.next_id = self.next_id.max(seg.first.saturating_add(1));
                self.dropped = self.dropped.saturating_add(seg.unacked(self.ack_next));
                self.disk_bytes = self.disk_bytes.saturating_sub(seg.bytes);
            }
        }
        Ok(())
    }

    /// Delete the oldest non-active segments that hold only acknowledged entries.
    fn delete_acked_front(&mut self) -> io::Result<()> {
        while let Some(seg) = self.segments.front() {
            let is_active = self.active.is_some() && self.segments.len() == 1;
            if is_active || seg.unacked(self.ack_next) > 0 {
                break;
            }
            remove_if_exists(&seg.path)?;
            if let Some(seg) = self.segments.pop_front() {
                self.disk_bytes = self.disk_bytes.saturating_sub(seg.bytes);
            }
        }
        Ok(())
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if self.config.fsync != FsyncPolicy::Never {
            let _ = self.sync();
        }
    }
}

/// Decode a whole segment's bytes: the intact entries from the start, the
/// number of corrupt entries (0 or 1: reading stops at the first bad one)
/// and the bytes skipped from that entry to the end. Pure; never panics.
pub fn read_segment(bytes: &[u8]) -> (Vec<Vec<u8>>, u64, u64) {
    let mut entries = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        match decode_entry(rest) {
            Some((payload, used)) => {
                entries.push(payload.to_vec());
                rest = rest.get(used..).unwrap_or(&[]);
            }
            None => return (entries, 1, rest.len() as u64),
        }
    }
    (entries, 0, 0)
}

/// One entry at the start of `rest`: its payload and the bytes it takes.
fn decode_entry(rest: &[u8]) -> Option<(&[u8], usize)> {
    let header = rest.get(..HEADER_LEN)?;
    if header.get(..2)? != MAGIC {
        return None;
    }
    let len_bytes: [u8; 4] = header.get(2..6)?.try_into().ok()?;
    let crc_bytes: [u8; 4] = header.get(6..10)?.try_into().ok()?;
    let len = u32::from_le_bytes(len_bytes);
    if len > MAX_ENTRY_LEN {
        return None;
    }
    let end = HEADER_LEN.checked_add(usize::try_from(len).ok()?)?;
    let payload = rest.get(HEADER_LEN..end)?;
    let mut crc = Crc32::new();
    crc.update(&len_bytes);
    crc.update(payload);
    if crc.finish() != u32::from_le_bytes(crc_bytes) {
        return None;
    }
    Some((payload, end))
}

/// Append one encoded entry to `buf`. The caller checked `payload.len() <= MAX_ENTRY_LEN`.
fn encode_entry(buf: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let len_bytes = len.to_le_bytes();
    let mut crc = Crc32::new();
    crc.update(&len_bytes);
    crc.update(payload);
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&len_bytes);
    buf.extend_from_slice(&crc.finish().to_le_bytes());
    buf.extend_from_slice(payload);
}

fn invalid_input(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn segment_name(first: u64) -> String {
    format!("{SEGMENT_PREFIX}{first:016x}{SEGMENT_SUFFIX}")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix(SEGMENT_PREFIX)?.strip_suffix(SEGMENT_SUFFIX)?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Segment files in `dir`: (first id, path, size), sorted by first id.
fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf, u64)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(first) = entry.file_name().to_str().and_then(parse_segment_name) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_file() {
            found.push((first, entry.path(), meta.len()));
        }
    }
    found.sort_by_key(|(first, _, _)| *first);
    Ok(found)
}

/// Read at most `cap` bytes of a file; also returns how many bytes were left unread.
fn read_capped(path: &Path, cap: u64) -> io::Result<(Vec<u8>, u64)> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut bytes = Vec::with_capacity(usize::try_from(len.min(cap)).unwrap_or(0));
    file.take(cap).read_to_end(&mut bytes)?;
    let beyond = len.saturating_sub(bytes.len() as u64);
    Ok((bytes, beyond))
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn encode_ack(ack_next: u64) -> [u8; ACK_LEN] {
    let mut out = [0u8; ACK_LEN];
    let value = ack_next.to_le_bytes();
    let mut crc = Crc32::new();
    crc.update(&value);
    for (dst, src) in out
        .iter_mut()
        .zip(ACK_MAGIC.iter().chain(&value).chain(&crc.finish().to_le_bytes()))
    {
        *dst = *src;
    }
    out
}

fn decode_ack(bytes: &[u8]) -> Option<u64> {
    if bytes.len() != ACK_LEN || bytes.get(..4)? != ACK_MAGIC {
        return None;
    }
    let value: [u8; 8] = bytes.get(4..12)?.try_into().ok()?;
    let stored: [u8; 4] = bytes.get(12..16)?.try_into().ok()?;
    let mut crc = Crc32::new();
    crc.update(&value);
    (crc.finish() == u32::from_le_bytes(stored)).then(|| u64::from_le_bytes(value))
}

/// First unacknowledged id from the ack file; 0 when missing or invalid.
fn read_ack(dir: &Path) -> u64 {
    let Ok(file) = File::open(dir.join(ACK_FILE)) else {
        return 0;
    };
    let mut bytes = Vec::with_capacity(ACK_LEN);
    if file.take(ACK_LEN as u64 + 1).read_to_end(&mut bytes).is_err() {
        return 0;
    }
    decode_ack(&bytes).unwrap_or(0)
}

fn write_ack(dir: &Path, ack_next: u64, durable: bool) -> io::Result<()> {
    let tmp = dir.join(ACK_TMP);
    let mut file = File::create(&tmp)?;
    file.write_all(&encode_ack(ack_next))?;
    if durable {
        file.sync_data()?;
    }
    drop(file);
    fs::rename(&tmp, dir.join(ACK_FILE))?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// CRC-32 (IEEE 802.3, reflected: zlib's, crc32fast's), from the `crc` crate.
struct Crc32(crc::Digest<'static, u32>);

static CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

impl Crc32 {
    fn new() -> Self {
        Crc32(CRC32.digest())
    }

    fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(self) -> u32 {
        self.0.finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let path = std::env::temp_dir().join(format!(
                "spool-test-{tag}-{}-{}-{nanos}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&path);
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn cfg(dir: &Path, max_bytes: u64, segment_bytes: u64, fsync: FsyncPolicy) -> SpoolConfig {
        SpoolConfig {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes,
            fsync,
        }
    }

    fn payload(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
    }

    fn segment_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
        Ok(list_segments(dir)?.into_iter().map(|(_, p, _)| p).collect())
    }

    fn payloads(rec: &Recovery) -> Vec<Vec<u8>> {
        rec.entries.iter().map(|(_, p)| p.clone()).collect()
    }

    fn encoded(entries: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for e in entries {
            encode_entry(&mut buf, e);
        }
        buf
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u8 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 24) as u8
        }
    }

    #[test]
    fn crc32_matches_reference_vector() {
        let mut c = Crc32::new();
        c.update(b"123456789");
        assert_eq!(c.finish(), 0xCBF4_3926);
    }

    #[test]
    fn default_config_is_documented_values() {
        let c = SpoolConfig::new("/x");
        assert_eq!(c.dir, PathBuf::from("/x"));
        assert_eq!(c.max_bytes, 64 << 20);
        assert_eq!(c.segment_bytes, 4 << 20);
        assert_eq!(c.fsync, FsyncPolicy::EveryBatches(1));
    }

    #[test]
    fn append_reopen_replays_in_order() -> io::Result<()> {
        let tmp = TempDir::new("replay");
        let config = cfg(&tmp.0, 1 << 20, 1 << 16, FsyncPolicy::Always);
        let mut all_ids = Vec::new();
        {
            let (mut spool, rec) = Spool::open(config.clone())?;
            assert!(rec.entries.is_empty());
            all_ids.extend(spool.append(&[b"one", b"two"])?);
            all_ids.extend(spool.append(&[b"three"])?);
            all_ids.extend(spool.append(&[b""])?);
            assert!(spool.append(&[])?.is_empty());
            assert_eq!(spool.disk_bytes(), (4 * HEADER_LEN + 11) as u64);
            assert_eq!(spool.bytes_written(), spool.disk_bytes());
            assert_eq!(spool.pending_entries(), 4);
        }
        assert!(all_ids.windows(2).all(|w| w[0] < w[1]));
        let (spool, rec) = Spool::open(config.clone())?;
        assert_eq!(
            payloads(&rec),
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec(), vec![]]
        );
        let ids: Vec<EntryId> = rec.entries.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, all_ids);
        assert_eq!((rec.corrupt_entries, rec.skipped_bytes), (0, 0));
        assert_eq!(spool.bytes_written(), 0);
        assert_eq!(spool.disk_bytes(), (4 * HEADER_LEN + 11) as u64);
        drop(spool);
        // Reopening twice without acking replays the same entries, same ids.
        let (mut spool, rec2) = Spool::open(config.clone())?;
        assert_eq!(rec2.entries, rec.entries);
        // New appends get larger ids and go to a new segment.
        let new = spool.append(&[b"four"])?;
        assert!(new[0] > all_ids[3]);
        assert_eq!(segment_files(&tmp.0)?.len(), 2);
        Ok(())
    }

    #[test]
    fn ack_then_reopen_does_not_replay_acked() -> io::Result<()> {
        let tmp = TempDir::new("ack");
        let config = cfg(&tmp.0, 1 << 20, 1 << 16, FsyncPolicy::Never);
        let ids = {
            let (mut spool, _) = Spool::open(config.clone())?;
            let ids = spool.append(&[b"a", b"b", b"c", b"d"])?;
            spool.ack(ids[1])?;
            assert_eq!(spool.pending_entries(), 2);
            // Ack of an older id is a no-op.
            spool.ack(ids[0])?;
            // Simulate SIGKILL: no Drop.
            std::mem::forget(spool);
            ids
        };
        let (mut spool, rec) = Spool::open(config.clone())?;
        assert_eq!(rec.entries, vec![(ids[2], b"c".to_vec()), (ids[3], b"d".to_vec())]);
        spool.ack(ids[3])?;
        drop(spool);
        let (mut spool, rec) = Spool::open(config.clone())?;
        assert!(rec.entries.is_empty());
        // Fully acked segments are deleted at open; ids keep increasing.
        assert!(segment_files(&tmp.0)?.is_empty());
        assert_eq!(spool.disk_bytes(), 0);
        let new = spool.append(&[b"e"])?;
        assert!(new[0] > ids[3]);
        drop(spool);
        let (_, rec) = Spool::open(config)?;
        assert_eq!(rec.entries, vec![(new[0], b"e".to_vec())]);
        Ok(())
    }

    #[test]
    fn ack_beyond_issued_is_clamped() -> io::Result<()> {
        let tmp = TempDir::new("ackclamp");
        let config = cfg(&tmp.0, 1 << 20, 1 << 16, FsyncPolicy::Always);
        let (mut spool, _) = Spool::open(config.clone())?;
        let ids = spool.append(&[b"a"])?;
        spool.ack(EntryId(ids[0].0 + 1000))?;
        let later = spool.append(&[b"b"])?;
        assert_eq!(later[0].0, ids[0].0 + 1);
        drop(spool);
        let (_, rec) = Spool::open(config)?;
        assert_eq!(rec.entries, vec![(later[0], b"b".to_vec())]);
        Ok(())
    }

    #[test]
    fn corrupt_ack_file_replays_everything() -> io::Result<()> {
        let tmp = TempDir::new("badack");
        let config = cfg(&tmp.0, 1 << 20, 1 << 16, FsyncPolicy::Always);
        {
            let (mut spool, _) = Spool::open(config.clone())?;
            let ids = spool.append(&[b"a", b"b"])?;
            spool.ack(ids[0])?;
        }
        let ack_path = tmp.0.join(ACK_FILE);
        let mut bytes = fs::read(&ack_path)?;
        if let Some(b) = bytes.get_mut(5) {
            *b ^= 0x40;
        }
        fs::write(&ack_path, &bytes)?;
        fs::write(tmp.0.join(ACK_TMP), b"leftover")?;
        let (_, rec) = Spool::open(config)?;
        assert_eq!(payloads(&rec), vec![b"a".to_vec(), b"b".to_vec()]);
        assert!(!tmp.0.join(ACK_TMP).exists());
        Ok(())
    }

    #[test]
    fn segments_roll_and_are_deleted_after_ack() -> io::Result<()> {
        let tmp = TempDir::new("roll");
        // 40-byte payloads = 50 bytes encoded: two per 100-byte segment.
        let config = cfg(&tmp.0, 1 << 20, 100, FsyncPolicy::EveryBatches(3));
        let (mut spool, _) = Spool::open(config.clone())?;
        let mut ids = Vec::new();
        for i in 0..10 {
            ids.extend(spool.append(&[&payload(i, 40)])?);
        }
        assert_eq!(segment_files(&tmp.0)?.len(), 5);
        assert_eq!(spool.disk_bytes(), 500);
        spool.ack(ids[5])?;
        assert_eq!(segment_files(&tmp.0)?.len(), 2);
        assert_eq!(spool.disk_bytes(), 200);
        // The active segment is kept even when fully acknowledged...
        spool.ack(ids[9])?;
        assert_eq!(segment_files(&tmp.0)?.len(), 1);
        // ...and deleted when rolled (it is full: the next append rolls).
        let more = spool.append(&[&payload(10, 40)])?;
        assert_eq!(segment_files(&tmp.0)?.len(), 1);
        assert_eq!(spool.disk_bytes(), 50);
        spool.append(&[&payload(11, 40)])?;
        assert_eq!(segment_files(&tmp.0)?.len(), 1);
        spool.append(&[&payload(12, 40)])?;
        assert_eq!(segment_files(&tmp.0)?.len(), 2);
        assert_eq!(spool.disk_bytes(), 150);
        drop(spool);
        let (_, rec) = Spool::open(config)?;
        let got: Vec<u64> = rec.entries.iter().map(|(id, _)| id.0).collect();
        assert_eq!(got, vec![more[0].0, more[0].0 + 1, more[0].0 + 2]);
        assert_eq!(payloads(&rec), vec![payload(10, 40), payload(11, 40), payload(12, 40)]);
        Ok(())
    }

    #[test]
    fn bounded_drops_oldest_and_counts() -> io::Result<()> {
        let tmp = TempDir::new("bounded");
        let config = cfg(&tmp.0, 1000, 200, FsyncPolicy::Never);
        let (mut spool, _) = Spool::open(config.clone())?;
        let mut last = EntryId(0);
        for i in 0..100 {
            let ids = spool.append(&[&payload(i, 50)])?;
            assert_eq!(ids.len(), 1);
            last = ids[0];
            assert!(spool.disk_bytes() <= 1000);
            let on_disk: u64 = list_segments(&tmp.0)?.iter().map(|s| s.2).sum();
            assert_eq!(on_disk, spool.disk_bytes());
        }
        let dropped = spool.dropped_entries();
        assert!(dropped > 0);
        assert_eq!(spool.pending_entries() + dropped, 100);
        drop(spool);
        let (spool, rec) = Spool::open(config)?;
        assert_eq!(rec.entries.len() as u64, 100 - dropped);
        assert_eq!(rec.entries.last().map(|e| e.0), Some(last));
        let first = rec.entries.first().map(|e| e.0.0).unwrap_or(0);
        for (k, (id, p)) in rec.entries.iter().enumerate() {
            assert_eq!(id.0, first + k as u64);
            assert_eq!(*p, payload(first as usize + k, 50));
        }
        assert_eq!(spool.dropped_entries(), 0);
        Ok(())
    }

    #[test]
    fn acked_entries_are_not_counted_as_dropped() -> io::Result<()> {
        let tmp = TempDir::new("dropacked");
        let config = cfg(&tmp.0, 300, 100, FsyncPolicy::Never);
        let (mut spool, _) = Spool::open(config)?;
        let mut ids = Vec::new();
        for i in 0..6 {
            ids.extend(spool.append(&[&payload(i, 40)])?);
        }
        spool.ack(ids[5])?; // active segment (ids 4, 5) stays, fully acked
        for i in 6..8 {
            spool.append(&[&payload(i, 40)])?;
        }
        assert_eq!(spool.dropped_entries(), 0);
        Ok(())
    }

    #[test]
    fn oversized_entries_and_batches_are_refused() -> io::Result<()> {
        let tmp = TempDir::new("oversize");
        let config = cfg(&tmp.0, 100, 50, FsyncPolicy::Never);
        let (mut spool, _) = Spool::open(config)?;
        let err = spool.append(&[&[0u8; 91]]).err().map(|e| e.kind());
        assert_eq!(err, Some(io::ErrorKind::InvalidInput));
        let err = spool.append(&[&[0u8; 40], &[0u8; 41]]).err().map(|e| e.kind());
        assert_eq!(err, Some(io::ErrorKind::InvalidInput));
        assert_eq!(spool.disk_bytes(), 0);
        assert_eq!(spool.append(&[&[0u8; 90]])?.len(), 1);
        assert_eq!(spool.disk_bytes(), 100);
        // Fills the spool exactly, then the next one evicts the first.
        spool.append(&[&[1u8; 10]])?;
        assert_eq!(spool.dropped_entries(), 1);
        Ok(())
    }

    #[test]
    fn power_cut_at_every_offset_of_last_entry() -> io::Result<()> {
        let src = TempDir::new("cut-src");
        let n = 5;
        let last_len = 37;
        {
            let (mut spool, _) = Spool::open(cfg(&src.0, 1 << 20, 1 << 20, FsyncPolicy::Always))?;
            for i in 0..n {
                let len = if i == n - 1 { last_len } else { 20 + i };
                spool.append(&[&payload(i, len)])?;
            }
        }
        let files = segment_files(&src.0)?;
        assert_eq!(files.len(), 1);
        let seg_name = files[0].file_name().map(|n| n.to_os_string()).unwrap_or_default();
        let full = fs::read(&files[0])?;
        let start = full.len() - (HEADER_LEN + last_len);
        let expected: Vec<Vec<u8>> = (0..n - 1).map(|i| payload(i, 20 + i)).collect();
        for cut in start..full.len() {
            let tmp = TempDir::new("cut");
            fs::create_dir_all(&tmp.0)?;
            let path = tmp.0.join(&seg_name);
            fs::write(&path, &full[..cut])?;
            let config = cfg(&tmp.0, 1 << 20, 1 << 20, FsyncPolicy::Never);
            let (mut spool, rec) = Spool::open(config.clone())?;
            assert_eq!(payloads(&rec), expected, "cut at {cut}");
            let torn = (cut - start) as u64;
            assert_eq!(rec.corrupt_entries, u64::from(torn > 0), "cut at {cut}");
            assert_eq!(rec.skipped_bytes, torn, "cut at {cut}");
            let new = spool.append(&[b"after"])?;
            drop(spool);
            // The torn segment was not appended to.
            assert_eq!(fs::read(&path)?, &full[..cut]);
            let (_, rec) = Spool::open(config)?;
            let mut want = expected.clone();
            want.push(b"after".to_vec());
            assert_eq!(payloads(&rec), want, "cut at {cut}");
            assert_eq!(rec.entries.last().map(|e| e.0), Some(new[0]));
            let ids: Vec<EntryId> = rec.entries.iter().map(|e| e.0).collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]));
        }
        Ok(())
    }

    fn flip_and_open(full: &[u8], name: &std::ffi::OsStr, offset: usize) -> io::Result<(Recovery, Vec<u8>)> {
        let tmp = TempDir::new("flip");
        fs::create_dir_all(&tmp.0)?;
        let mut bytes = full.to_vec();
        if let Some(b) = bytes.get_mut(offset) {
            *b ^= 0x5A;
        }
        fs::write(tmp.0.join(name), &bytes)?;
        let (_, rec) = Spool::open(cfg(&tmp.0, 1 << 20, 1 << 20, FsyncPolicy::Never))?;
        Ok((rec, bytes))
    }

    #[test]
    fn flipped_bytes_in_payload_and_header() -> io::Result<()> {
        let src = TempDir::new("flip-src");
        let n = 6;
        let k = 3;
        let len = 24;
        {
            let (mut spool, _) = Spool::open(cfg(&src.0, 1 << 20, 1 << 20, FsyncPolicy::Never))?;
            for i in 0..n {
                spool.append(&[&payload(i, len)])?;
            }
        }
        let files = segment_files(&src.0)?;
        let name = files[0].file_name().map(|n| n.to_os_string()).unwrap_or_default();
        let full = fs::read(&files[0])?;
        let entry_start = k * (HEADER_LEN + len);
        let expected: Vec<Vec<u8>> = (0..k).map(|i| payload(i, len)).collect();
        let tail = (full.len() - entry_start) as u64;
        // Every header byte, then a few payload bytes.
        let offsets = (entry_start..entry_start + HEADER_LEN)
            .chain([entry_start + HEADER_LEN, entry_start + HEADER_LEN + len - 1]);
        for off in offsets {
            let (rec, _) = flip_and_open(&full, &name, off)?;
            assert_eq!(payloads(&rec), expected, "flip at {off}");
            assert_eq!(rec.corrupt_entries, 1, "flip at {off}");
            assert_eq!(rec.skipped_bytes, tail, "flip at {off}");
        }
        // The same through the pure function.
        let mut bytes = full.clone();
        bytes[entry_start + HEADER_LEN + 5] ^= 1;
        assert_eq!(read_segment(&bytes), (expected, 1, tail));
        Ok(())
    }

    #[test]
    fn garbage_files_open_without_bogus_entries() -> io::Result<()> {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let random: Vec<u8> = (0..4096).map(|_| rng.next()).collect();
        let mut huge_header = MAGIC.to_vec();
        huge_header.extend_from_slice(&u32::MAX.to_le_bytes());
        huge_header.extend_from_slice(&0u32.to_le_bytes());
        let mut just_above_cap = MAGIC.to_vec();
        just_above_cap.extend_from_slice(&(MAX_ENTRY_LEN + 1).to_le_bytes());
        just_above_cap.extend_from_slice(&[0; 4]);
        let zeros = vec![0u8; 512];
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("random", random),
            ("empty", Vec::new()),
            ("huge-header", huge_header),
            ("above-cap", just_above_cap),
            ("zeros", zeros),
            ("magic-only", MAGIC.to_vec()),
        ];
        for (label, content) in cases {
            let tmp = TempDir::new("garbage");
            fs::create_dir_all(&tmp.0)?;
            fs::write(tmp.0.join(segment_name(0)), &content)?;
            fs::write(tmp.0.join(segment_name(7)), &content)?;
            // Not ours: ignored.
            fs::write(tmp.0.join("spool-xyz.log"), b"junk")?;
            fs::create_dir_all(tmp.0.join(segment_name(3)))?;
            let config = cfg(&tmp.0, 1 << 20, 1 << 20, FsyncPolicy::Always);
            let (mut spool, rec) = Spool::open(config.clone())?;
            assert!(rec.entries.is_empty(), "{label}");
            let bad = u64::from(!content.is_empty());
            assert_eq!(rec.corrupt_entries, 2 * bad, "{label}");
            assert_eq!(rec.skipped_bytes, 2 * content.len() as u64, "{label}");
            let new = spool.append(&[b"fresh"])?;
            assert!(new[0].0 > 7, "{label}");
            drop(spool);
            let (_, rec) = Spool::open(config)?;
            assert_eq!(rec.entries, vec![(new[0], b"fresh".to_vec())], "{label}");
            assert!(tmp.0.join("spool-xyz.log").exists());
        }
        Ok(())
    }

    #[test]
    fn segment_longer_than_max_bytes_is_read_up_to_the_cap() -> io::Result<()> {
        let tmp = TempDir::new("cap");
        fs::create_dir_all(&tmp.0)?;
        let bytes = encoded(&[&[1u8; 40], &[2u8; 40], &[3u8; 40]]);
        fs::write(tmp.0.join(segment_name(0)), &bytes)?;
        let (_, rec) = Spool::open(cfg(&tmp.0, 110, 100, FsyncPolicy::Never))?;
        assert_eq!(payloads(&rec), vec![vec![1u8; 40], vec![2u8; 40]]);
        assert_eq!(rec.corrupt_entries, 1);
        assert_eq!(rec.skipped_bytes, 50);
        Ok(())
    }

    #[test]
    fn read_segment_direct() {
        assert_eq!(read_segment(&[]), (vec![], 0, 0));
        let good = encoded(&[b"alpha", b"", b"gamma"]);
        assert_eq!(
            read_segment(&good),
            (vec![b"alpha".to_vec(), vec![], b"gamma".to_vec()], 0, 0)
        );
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0xE5, 0x01, 0xFF]);
        let (entries, corrupt, skipped) = read_segment(&trailing);
        assert_eq!((entries.len(), corrupt, skipped), (3, 1, 3));
        // Every prefix of a valid stream is either clean or one torn entry.
        for cut in 0..good.len() {
            let (entries, corrupt, skipped) = read_segment(&good[..cut]);
            assert!(corrupt <= 1);
            assert_eq!(skipped == 0, corrupt == 0);
            assert!(entries.len() <= 3);
        }
        // Fuzz-ish: random inputs and random mutations never panic and never
        // return more payload bytes than the input holds.
        let mut rng = XorShift(12345);
        for round in 0..2000 {
            let mut input = if round % 2 == 0 {
                good.clone()
            } else {
                (0..(round % 97)).map(|_| rng.next()).collect()
            };
            let flips = usize::from(rng.next() % 4);
            for _ in 0..flips {
                if input.is_empty() {
                    break;
                }
                let at = usize::from(rng.next()) % input.len();
                input[at] ^= rng.next() | 1;
            }
            let (entries, corrupt, skipped) = read_segment(&input);
            let used: usize = entries.iter().map(|e| e.len() + HEADER_LEN).sum();
            assert_eq!(used as u64 + skipped, input.len() as u64);
            assert!(corrupt <= 1);
        }
    }

    #[test]
    fn corruption_in_older_segment_keeps_later_segments_and_ids() -> io::Result<()> {
        let tmp = TempDir::new("midseg");
        let config = cfg(&tmp.0, 1 << 20, 100, FsyncPolicy::Never);
        let mut ids = Vec::new();
        {
            let (mut spool, _) = Spool::open(config.clone())?;
            for i in 0..6 {
                ids.extend(spool.append(&[&payload(i, 40)])?);
            }
        }
        let files = segment_files(&tmp.0)?;
        assert_eq!(files.len(), 3);
        // Corrupt the first entry's payload of the middle segment (ids 2, 3).
        let mut bytes = fs::read(&files[1])?;
        bytes[HEADER_LEN + 1] ^= 0xFF;
        fs::write(&files[1], &bytes)?;
        let (_, rec) = Spool::open(config)?;
        let got: Vec<EntryId> = rec.entries.iter().map(|e| e.0).collect();
        assert_eq!(got, vec![ids[0], ids[1], ids[4], ids[5]]);
        assert_eq!(payloads(&rec)[2], payload(4, 40));
        assert_eq!((rec.corrupt_entries, rec.skipped_bytes), (1, 100));
        Ok(())
    }

    #[test]
    fn failed_write_poisons_segment_and_next_append_rolls() -> io::Result<()> {
        let tmp = TempDir::new("poison");
        let config = cfg(&tmp.0, 1 << 20, 1 << 20, FsyncPolicy::Never);
        let (mut spool, _) = Spool::open(config.clone())?;
        let a = spool.append(&[b"a"])?;
        // As after a failed write_all / fsync.
        spool.active_poisoned = true;
        let b = spool.append(&[b"b"])?;
        assert!(b[0] > a[0]);
        assert_eq!(segment_files(&tmp.0)?.len(), 2);
        // A poisoned empty segment is never reused by name either.
        spool.active_poisoned = true;
        spool.close_active()?;
        let c = spool.append(&[b"c"])?;
        assert!(c[0] > b[0]);
        drop(spool);
        let (_, rec) = Spool::open(config)?;
        let got: Vec<EntryId> = rec.entries.iter().map(|e| e.0).collect();
        assert_eq!(got, vec![a[0], b[0], c[0]]);
        Ok(())
    }

    #[test]
    fn ack_file_roundtrip_and_rejects_garbage() {
        assert_eq!(decode_ack(&encode_ack(0)), Some(0));
        assert_eq!(decode_ack(&encode_ack(u64::MAX)), Some(u64::MAX));
        assert_eq!(decode_ack(&encode_ack(42)), Some(42));
        assert_eq!(decode_ack(&[]), None);
        assert_eq!(decode_ack(&[0; ACK_LEN]), None);
        let mut long = encode_ack(42).to_vec();
        long.push(0);
        assert_eq!(decode_ack(&long), None);
    }

    #[test]
    fn segment_names_roundtrip() {
        assert_eq!(segment_name(0x1f), "spool-000000000000001f.log");
        assert_eq!(parse_segment_name("spool-000000000000001f.log"), Some(0x1f));
        assert_eq!(parse_segment_name("spool-00000000000001f.log"), None);
        assert_eq!(parse_segment_name("spool-+00000000000001f.log"), None);
        assert_eq!(parse_segment_name("spool-000000000000001f.tmp"), None);
    }

    #[test]
    fn all_fsync_policies_work() -> io::Result<()> {
        for policy in [
            FsyncPolicy::Always,
            FsyncPolicy::Never,
            FsyncPolicy::EveryBatches(0),
            FsyncPolicy::EveryBatches(2),
        ] {
            let tmp = TempDir::new("policy");
            let config = cfg(&tmp.0, 1 << 20, 64, policy);
            let (mut spool, _) = Spool::open(config.clone())?;
            let mut ids = Vec::new();
            for i in 0..7 {
                ids.extend(spool.append(&[&payload(i, 30), &payload(i + 100, 3)])?);
                spool.ack(ids[i])?;
            }
            spool.sync()?;
            drop(spool);
            let (_, rec) = Spool::open(config)?;
            let got: Vec<EntryId> = rec.entries.iter().map(|e| e.0).collect();
            assert_eq!(got, ids[7..].to_vec(), "{policy:?}");
        }
        Ok(())
    }
}
