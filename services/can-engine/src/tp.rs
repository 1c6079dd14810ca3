//! The J1939-21 transport protocol, listened to: multi-packet messages (9 to 1785 bytes) sent
//! as a broadcast announce message (BAM: TP.CM control 32, then TP.DT packets) or in an
//! RTS/CTS session between two other nodes (control 16, 17, 19, abort 255), reassembled per
//! sender and destination, so that they go through the same decoders as single frames.
//!
//! What real buses do is accepted: BAM packets closer than Tr (50 to 200 ms) are taken. What
//! cannot give a correct message is dropped and counted, never passed on: a packet out of
//! order or missing, an announcement whose size and packet count disagree, a session that
//! falls silent beyond T1 (750 ms, BAM) or T2/T3 (1250 ms, RTS/CTS), one replaced by a new
//! announcement before it finished, an abort. Duplicates of the packet just received are
//! ignored and counted. At most [`MAX_SESSIONS`] sessions are open at once (each at most
//! 1785 bytes); beyond that the oldest is dropped and counted.

use crate::j1939::J1939Id;

/// TP.CM, connection management.
pub const PGN_TP_CM: u32 = 0xEC00;
/// TP.DT, data transfer.
pub const PGN_TP_DT: u32 = 0xEB00;
/// Sessions open at once, at most (two per node pair is already generous).
pub const MAX_SESSIONS: usize = 64;
/// T1: a BAM receiver waits this long for the next packet, in µs.
const T1_US: i64 = 750_000;
/// T2/T3: an RTS/CTS session falls silent beyond this, in µs.
const T3_US: i64 = 1_250_000;
/// The largest message: 255 packets of 7 bytes.
const MAX_SIZE: usize = 1785;

/// What was dropped, and why. `complete` is what was reassembled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TpCounters {
    /// Messages reassembled and decoded.
    pub complete: u64,
    /// Sessions dropped: a packet out of order or missing.
    pub out_of_order: u64,
    /// Packets that repeated the one just received (ignored).
    pub duplicates: u64,
    /// Sessions that fell silent beyond T1 (BAM) or T3 (RTS/CTS).
    pub timeouts: u64,
    /// Sessions replaced by a new announcement before they finished.
    pub replaced: u64,
    /// Sessions aborted by a node (control 255).
    pub aborted: u64,
    /// Announcements refused: size beyond 9..=1785, or a packet count that disagrees with it.
    pub bad_announcements: u64,
    /// Data packets of no open session, or too short.
    pub stray_packets: u64,
    /// Sessions dropped because [`MAX_SESSIONS`] were open.
    pub overflow: u64,
}

/// A reassembled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its parameter group number.
    pub pgn: u32,
    /// Who sent it.
    pub source: u8,
    /// To whom: 0xFF for a broadcast (BAM).
    pub destination: u8,
    /// Priority of its announcement.
    pub priority: u8,
    /// Its bytes, exactly the announced size.
    pub data: Vec<u8>,
}

#[derive(Debug)]
struct Session {
    source: u8,
    destination: u8,
    priority: u8,
    pgn: u32,
    size: usize,
    packets: u8,
    data: Vec<u8>,
    /// Sequence number of the last packet taken (0 before the first).
    last_seq: u8,
    last_us: i64,
    bam: bool,
}

/// The open sessions and the counters.
#[derive(Debug, Default)]
pub struct Reassembler {
    sessions: Vec<Session>,
    /// What was reassembled and what was dropped.
    pub counters: TpCounters,
}

impl Reassembler {
    /// Take one TP.CM or TP.DT frame (other PGNs are not this module's: `None`). Returns the
    /// message it completed, if any.
    pub fn handle(&mut self, id: J1939Id, data: &[u8], t_us: i64) -> Option<Message> {
        self.expire(t_us);
        match id.pgn {
            PGN_TP_CM => {
                self.control(id, data, t_us);
                None
            }
            PGN_TP_DT => self.packet(id, data, t_us),
            _ => None,
        }
    }

    /// Whether a PGN is the transport protocol's.
    pub fn is_tp(pgn: u32) -> bool {
        pgn == PGN_TP_CM || pgn == PGN_TP_DT
    }

    /// Drop the sessions silent for longer than their timeout.
    fn expire(&mut self, t_us: i64) {
        let before = self.sessions.len();
        self.sessions
            .retain(|s| t_us - s.last_us <= if s.bam { T1_US } else { T3_US });
        self.counters.timeouts += (before - self.sessions.len()) as u64;
    }

    fn find(&self, source: u8, destination: u8) -> Option<usize> {
        self.sessions
            .iter()
            .position(|s| s.source == source && s.destination == destination)
    }

    fn control(&mut self, id: J1939Id, d: &[u8], t_us: i64) {
        let Some(&control) = d.first() else {
            self.counters.stray_packets += 1;
            return;
        };
        let pgn_at = |d: &[u8]| d.get(5..8).map(|b| u32::from_le_bytes([b[0], b[1], b[2], 0]));
        match control {
            // BAM (to 0xFF) and RTS (to one node): a new session from the sender.
            32 | 16 => {
                let (Some(size), Some(&packets), Some(pgn)) = (
                    d.get(1..3).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]]))),
                    d.get(3),
                    pgn_at(d),
                ) else {
                    self.counters.bad_announcements += 1;
                    return;
                };
                let bam = control == 32;
                if !(9..=MAX_SIZE).contains(&size)
                    || usize::from(packets) != size.div_ceil(7)
                    || (bam && id.destination != 0xFF)
                {
                    self.counters.bad_announcements += 1;
                    return;
                }
                if let Some(i) = self.find(id.source, id.destination) {
                    self.sessions.remove(i);
                    self.counters.replaced += 1;
                }
                if self.sessions.len() >= MAX_SESSIONS {
                    self.sessions.remove(0);
                    self.counters.overflow += 1;
                }
                self.sessions.push(Session {
                    source: id.source,
                    destination: id.destination,
                    priority: id.priority,
                    pgn,
                    size,
                    packets,
                    data: Vec::with_capacity(usize::from(packets) * 7),
                    last_seq: 0,
                    last_us: t_us,
                    bam,
                });
            }
            // CTS from the receiver: the session from its destination to it is alive.
            17 => {
                if let Some(i) = self.find(id.destination, id.source) {
                    self.sessions[i].last_us = t_us;
                }
            }
            // End of message acknowledgement: nothing left to wait for.
            19 => {
                if let Some(i) = self.find(id.destination, id.source) {
                    self.sessions.remove(i);
                    self.counters.out_of_order += 1;
                }
            }
            // Abort, by either side.
            255 => {
                for (a, b) in [(id.source, id.destination), (id.destination, id.source)] {
                    if let Some(i) = self.find(a, b) {
                        self.sessions.remove(i);
                        self.counters.aborted += 1;
                    }
                }
            }
            _ => self.counters.stray_packets += 1,
        }
    }

    fn packet(&mut self, id: J1939Id, d: &[u8], t_us: i64) -> Option<Message> {
        let Some(i) = self.find(id.source, id.destination) else {
            self.counters.stray_packets += 1;
            return None;
        };
        let (Some(&seq), Some(bytes)) = (d.first(), d.get(1..8)) else {
            self.counters.stray_packets += 1;
            return None;
        };
        let s = &mut self.sessions[i];
        if seq == s.last_seq && seq != 0 {
            self.counters.duplicates += 1;
            return None;
        }
        if seq != s.last_seq.wrapping_add(1) || seq > s.packets {
            self.sessions.remove(i);
            self.counters.out_of_order += 1;
            return None;
        }
        s.data.extend_from_slice(bytes);
        s.last_seq = seq;
        s.last_us = t_us;
        if seq < s.packets {
            return None;
        }
        let mut s = self.sessions.remove(i);
        s.data.truncate(s.size);
        self.counters.complete += 1;
        Some(Message {
            pgn: s.pgn,
            source: s.source,
            destination: s.destination,
            priority: s.priority,
            data: s.data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::j1939::split_id;

    /// The frames of a BAM of `data` for `pgn` from `source`, 50 ms apart, as J1939-21 lays
    /// them out: TP.CM (0x1CECFF<sa>) control 32, size LE, packets, 0xFF, PGN LE; then TP.DT
    /// (0x1CEBFF<sa>) sequence 1.. with 7 bytes each, the last padded with 0xFF.
    fn bam(source: u8, pgn: u32, data: &[u8], t0: i64) -> Vec<(u32, Vec<u8>, i64)> {
        let size = data.len() as u16;
        let packets = data.len().div_ceil(7) as u8;
        let p = pgn.to_le_bytes();
        let mut out = vec![(
            0x1CEC_FF00 | u32::from(source),
            vec![32, size as u8, (size >> 8) as u8, packets, 0xFF, p[0], p[1], p[2]],
            t0,
        )];
        for (k, chunk) in data.chunks(7).enumerate() {
            let mut d = vec![k as u8 + 1];
            d.extend_from_slice(chunk);
            d.resize(8, 0xFF);
            out.push((0x1CEB_FF00 | u32::from(source), d, t0 + (k as i64 + 1) * 50_000));
        }
        out
    }

    fn feed(r: &mut Reassembler, frames: &[(u32, Vec<u8>, i64)]) -> Vec<Message> {
        frames
            .iter()
            .filter_map(|(id, d, t)| r.handle(split_id(*id), d, *t))
            .collect()
    }

    #[test]
    fn a_bam_is_reassembled_to_its_announced_size() {
        // DM1 (PGN 65226 = 0xFECA) of 10 bytes from address 0x00: 2 packets, 4 bytes of padding cut.
        let data: Vec<u8> = (1..=10).collect();
        let mut r = Reassembler::default();
        let got = feed(&mut r, &bam(0x00, 0xFECA, &data, 0));
        assert_eq!(
            got,
            [Message {
                pgn: 0xFECA,
                source: 0,
                destination: 0xFF,
                priority: 7,
                data
            }]
        );
        assert_eq!(r.counters.complete, 1);
        assert!(r.sessions.is_empty());
    }

    #[test]
    fn the_largest_message_and_two_senders_at_once() {
        let big: Vec<u8> = (0..1785u32).map(|i| (i * 7 % 251) as u8).collect();
        let small: Vec<u8> = (0..20).collect();
        let (a, b) = (bam(0x17, 0xFEE3, &big, 0), bam(0x21, 0xFECA, &small, 10_000));
        // Interleaved, as two ECUs on one bus would send them.
        let mut frames = a.clone();
        frames.extend(b);
        frames.sort_by_key(|f| f.2);
        let mut r = Reassembler::default();
        let got = feed(&mut r, &frames);
        assert_eq!(got.len(), 2);
        let by = |sa: u8| got.iter().find(|m| m.source == sa).unwrap();
        assert_eq!(by(0x17).data, big);
        assert_eq!(by(0x21).data, small);
    }

    #[test]
    fn faults_are_counted_and_never_give_a_message() {
        let data: Vec<u8> = (0..30).collect(); // 5 packets
        let ok = bam(0x00, 0xFECA, &data, 0);
        // Each case on a fresh reassembler: (frames, messages, counters after).
        let run = |f: &[(u32, Vec<u8>, i64)]| {
            let mut r = Reassembler::default();
            let n = feed(&mut r, f).len();
            (n, r.counters)
        };

        // A missing packet (3): the session is dropped when 4 arrives; 5 belongs to nothing.
        let mut f = ok.clone();
        f.remove(3);
        let (n, c) = run(&f);
        assert_eq!((n, c.out_of_order, c.stray_packets), (0, 1, 1));

        // A duplicate of the packet just received is ignored; the message still completes.
        let mut f = ok.clone();
        f.insert(3, f[2].clone());
        let (n, c) = run(&f);
        assert_eq!((n, c.duplicates), (1, 1));

        // A new announcement before the last one finished replaces it.
        let mut f = ok[..3].to_vec();
        f.extend(bam(0x00, 0xFECA, &data, 200_000));
        let (n, c) = run(&f);
        assert_eq!((n, c.replaced), (1, 1));

        // Silence beyond T1 (750 ms) between packets 2 and 3: 3, 4 and 5 belong to nothing.
        let mut f = ok.clone();
        for p in &mut f[3..] {
            p.2 += 800_000;
        }
        let (n, c) = run(&f);
        assert_eq!((n, c.timeouts, c.stray_packets), (0, 1, 3));

        // Size and packet count that disagree (30 bytes need 5 packets, 4 announced).
        let mut f = ok.clone();
        f[0].1[3] = 4;
        let (n, c) = run(&f);
        assert_eq!((n, c.bad_announcements, c.stray_packets), (0, 1, 5));

        // Sizes outside 9..=1785, and a BAM addressed to one node, are not announcements.
        for (k, v) in [(1, 8u8), (2, 0x07)] {
            let mut f = ok.clone();
            f[0].1[k] = v;
            f[0].1[3] = if k == 1 { 2 } else { 255 };
            assert_eq!(run(&f[..1]).1.bad_announcements, 1, "{:?}", f[0]);
        }
        let mut f = ok.clone();
        f[0].0 = 0x1CEC_1700;
        assert_eq!(run(&f[..1]).1.bad_announcements, 1);
    }

    #[test]
    fn bam_packets_closer_than_tr_are_taken() {
        // Real ECUs send BAM packets faster than J1939-21's 50 ms: 1 ms apart here.
        let data: Vec<u8> = (0..40).collect();
        let mut f = bam(0x00, 0xFECA, &data, 0);
        for (k, p) in f.iter_mut().enumerate() {
            p.2 = k as i64 * 1_000;
        }
        let mut r = Reassembler::default();
        assert_eq!(feed(&mut r, &f)[0].data, data);
    }

    #[test]
    fn an_rts_cts_session_between_two_other_nodes() {
        // 0x00 sends 16 bytes of PGN 0xFEE3 to 0x17: RTS (0x1CEC1700), CTS from 0x17
        // (0x1CEC0017) for 2 packets from 1, TP.DT 0x1CEB1700, end of message ack from 0x17.
        let frames = [
            (0x1CEC_1700, vec![16, 16, 0, 3, 2, 0xE3, 0xFE, 0x00], 0),
            (0x1CEC_0017, vec![17, 2, 1, 0xFF, 0xFF, 0xE3, 0xFE, 0x00], 10_000),
            (0x1CEB_1700, vec![1, 1, 2, 3, 4, 5, 6, 7], 20_000),
            (0x1CEB_1700, vec![2, 8, 9, 10, 11, 12, 13, 14], 30_000),
            // Waiting for the next CTS beyond 750 ms is fine in a session (T3 is 1250 ms).
            (0x1CEC_0017, vec![17, 1, 3, 0xFF, 0xFF, 0xE3, 0xFE, 0x00], 1_000_000),
            (0x1CEB_1700, vec![3, 15, 16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], 1_010_000),
            (0x1CEC_0017, vec![19, 16, 0, 3, 0xFF, 0xE3, 0xFE, 0x00], 1_020_000),
        ];
        let mut r = Reassembler::default();
        let got = feed(&mut r, &frames);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].pgn, got[0].source, got[0].destination), (0xFEE3, 0x00, 0x17));
        assert_eq!(got[0].data, (1..=16).collect::<Vec<u8>>());
        // The acknowledgement came after the message: nothing left open, nothing dropped.
        assert!(r.sessions.is_empty());
        assert_eq!(r.counters.out_of_order, 0);

        // An abort from the receiver ends the session.
        let mut r = Reassembler::default();
        feed(&mut r, &frames[..3]);
        feed(
            &mut r,
            &[(0x1CEC_0017, vec![255, 1, 0xFF, 0xFF, 0xFF, 0xE3, 0xFE, 0x00], 40_000)],
        );
        assert_eq!(feed(&mut r, &frames[3..4]).len(), 0);
        assert_eq!((r.counters.aborted, r.counters.stray_packets), (1, 1));
    }

    #[test]
    fn arbitrary_frames_never_panic_and_memory_stays_bounded() {
        let mut r = Reassembler::default();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for t in 0..200_000i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            let pgn = if x & 1 == 0 { PGN_TP_CM } else { PGN_TP_DT };
            let id = 0x1800_0000 | (pgn << 8) | ((x >> 8) as u32 & 0xFFFF);
            let mut d = b.to_vec();
            if x & 2 == 0 {
                d[0] = [16, 32, 17, 19, 255][(x >> 40) as usize % 5];
            }
            d.truncate((x >> 60) as usize % 9);
            r.handle(split_id(id), &d, t * 100);
            assert!(r.sessions.len() <= MAX_SESSIONS);
            assert!(r.sessions.iter().all(|s| s.data.len() <= MAX_SIZE + 7));
        }
    }
}
