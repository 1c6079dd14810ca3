//! The `candump -L` log format: `(seconds.micros) iface ID#DATA`.
//!
//! Handles standard (3 hex digits) and extended (8 hex digits) identifiers, remote frames
//! (`ID#R`, `ID#R<len>`), classic data with the optional `_<dlc>` suffix, CAN FD
//! (`ID##<flags><data>`), and error frames (`CAN_ERR_FLAG` 0x20000000 in the identifier).
//! Data bytes may be separated by `.`. Never panics: a line that is not a frame is an
//! [`LineError`] that says what was wrong.

use crate::frame::{CAN_EFF_MASK, CAN_ERR_FLAG, Frame, FrameKind};

/// Why a line is not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LineError(pub &'static str);

/// Valid CAN FD payload lengths.
const FD_LENGTHS: [usize; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64];

/// Parse one line. `Ok(None)` for a blank line or a `#` comment.
pub fn parse_line(line: &[u8]) -> Result<Option<Frame>, LineError> {
    let line = trim(line);
    if line.is_empty() || line[0] == b'#' {
        return Ok(None);
    }
    let mut fields = line.split(|b| *b == b' ' || *b == b'\t').filter(|f| !f.is_empty());
    let ts = fields.next().ok_or(LineError("empty line"))?;
    let _iface = fields
        .next()
        .ok_or(LineError("no interface name after the timestamp"))?;
    let frame = fields.next().ok_or(LineError("no frame after the interface name"))?;
    let time_us = parse_timestamp(ts)?;
    parse_frame(time_us, frame).map(Some)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// `(1436509052.249713)` into microseconds.
fn parse_timestamp(ts: &[u8]) -> Result<i64, LineError> {
    let inner = ts
        .strip_prefix(b"(")
        .and_then(|t| t.strip_suffix(b")"))
        .ok_or(LineError("timestamp is not `(seconds.micros)`"))?;
    let dot = inner
        .iter()
        .position(|b| *b == b'.')
        .ok_or(LineError("timestamp has no `.`"))?;
    let (secs, frac) = (&inner[..dot], &inner[dot + 1..]);
    if secs.is_empty() || secs.len() > 12 || frac.is_empty() || frac.len() > 9 {
        return Err(LineError("timestamp is not `(seconds.micros)`"));
    }
    let mut s: i64 = 0;
    for &c in secs {
        if !c.is_ascii_digit() {
            return Err(LineError("timestamp seconds are not decimal digits"));
        }
        s = s * 10 + i64::from(c - b'0');
    }
    let mut us: i64 = 0;
    for i in 0..6 {
        us *= 10;
        match frac.get(i) {
            Some(c) if c.is_ascii_digit() => us += i64::from(c - b'0'),
            Some(_) => return Err(LineError("timestamp fraction is not decimal digits")),
            None => {}
        }
    }
    if frac.iter().skip(6).any(|c| !c.is_ascii_digit()) {
        return Err(LineError("timestamp fraction is not decimal digits"));
    }
    Ok(s * 1_000_000 + us)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `123#DEADBEEF`, `12345678#R`, `123##1DEADBEEF`.
fn parse_frame(time_us: i64, text: &[u8]) -> Result<Frame, LineError> {
    let hash = text
        .iter()
        .position(|b| *b == b'#')
        .ok_or(LineError("frame has no `#` between identifier and data"))?;
    let (id_text, rest) = (&text[..hash], &text[hash + 1..]);
    let extended = match id_text.len() {
        3 => false,
        8 => true,
        _ => {
            return Err(LineError(
                "identifier is neither 3 (standard) nor 8 (extended) hex digits",
            ));
        }
    };
    let mut raw: u32 = 0;
    for &c in id_text {
        raw = (raw << 4) | u32::from(hex(c).ok_or(LineError("identifier is not hexadecimal"))?);
    }
    if extended && raw & CAN_ERR_FLAG != 0 {
        let data = parse_data(rest, 8)?;
        return Ok(Frame::new(
            time_us,
            raw & CAN_EFF_MASK,
            true,
            FrameKind::Error,
            &data.bytes[..data.len],
        ));
    }
    if extended && raw > CAN_EFF_MASK {
        return Err(LineError("extended identifier has flag bits other than the error flag"));
    }
    if !extended && raw > 0x7FF {
        return Err(LineError("standard identifier is above 0x7FF"));
    }
    match rest.first() {
        Some(b'#') => {
            // CAN FD: one flags digit, then up to 64 data bytes.
            let flags = rest
                .get(1)
                .ok_or(LineError("CAN FD frame has no flags digit after `##`"))?;
            hex(*flags).ok_or(LineError("CAN FD flags digit is not hexadecimal"))?;
            let data = parse_data(&rest[2..], 64)?;
            if !FD_LENGTHS.contains(&data.len) {
                return Err(LineError("CAN FD data length is not a valid FD length"));
            }
            Ok(Frame::new(
                time_us,
                raw,
                extended,
                FrameKind::Fd,
                &data.bytes[..data.len],
            ))
        }
        Some(b'R') | Some(b'r') => {
            let tail = &rest[1..];
            if tail.len() > 1 || tail.first().is_some_and(|c| !matches!(c, b'0'..=b'8')) {
                return Err(LineError("remote frame length is not one digit 0 to 8"));
            }
            Ok(Frame::new(time_us, raw, extended, FrameKind::Remote, &[]))
        }
        _ => {
            // Optional `_<dlc>` suffix (len8_dlc, 9 to F) on 8-byte frames.
            let (body, dlc) = match rest.iter().position(|b| *b == b'_') {
                Some(u) => (&rest[..u], Some(&rest[u + 1..])),
                None => (rest, None),
            };
            let data = parse_data(body, 8)?;
            if let Some(d) = dlc {
                let ok = d.len() == 1 && hex(d[0]).is_some_and(|v| v > 8) && data.len == 8;
                if !ok {
                    return Err(LineError(
                        "`_<dlc>` suffix must be one hex digit 9 to F after 8 data bytes",
                    ));
                }
            }
            Ok(Frame::new(
                time_us,
                raw,
                extended,
                FrameKind::Data,
                &data.bytes[..data.len],
            ))
        }
    }
}

struct Data {
    bytes: [u8; 64],
    len: usize,
}

fn parse_data(text: &[u8], max: usize) -> Result<Data, LineError> {
    let mut d = Data { bytes: [0; 64], len: 0 };
    let mut high: Option<u8> = None;
    for &c in text {
        if c == b'.' {
            if high.is_some() {
                return Err(LineError("data has an odd number of hex digits before a `.`"));
            }
            continue;
        }
        let v = hex(c).ok_or(LineError("data is not hexadecimal"))?;
        match high.take() {
            None => high = Some(v),
            Some(h) => {
                if d.len >= max.min(64) {
                    return Err(LineError("too many data bytes for the frame type"));
                }
                d.bytes[d.len] = (h << 4) | v;
                d.len += 1;
            }
        }
    }
    if high.is_some() {
        return Err(LineError("data has an odd number of hex digits"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(line: &str) -> Frame {
        match parse_line(line.as_bytes()) {
            Ok(Some(f)) => f,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn standard_extended_remote_fd_error() {
        let f = frame("(1436509052.249713) vcan0 044#2A366C2BBA");
        assert_eq!((f.id, f.extended, f.kind), (0x44, false, FrameKind::Data));
        assert_eq!(f.payload(), &[0x2A, 0x36, 0x6C, 0x2B, 0xBA]);
        assert_eq!(f.time_us, 1_436_509_052_249_713);
        let f = frame("(1.5) can0 0CF00400#FF7D7DE015FFF0FF");
        assert_eq!((f.id, f.extended, f.payload().len()), (0x0CF0_0400, true, 8));
        assert_eq!(f.time_us, 1_500_000);
        let f = frame("(1.000001) can0 7DF#R");
        assert_eq!(f.kind, FrameKind::Remote);
        let f = frame("(1.000001) can0 7DF#R8");
        assert_eq!(f.kind, FrameKind::Remote);
        let f = frame("(1.0) can0 123##1112233445566778899AABBCC");
        assert_eq!((f.kind, f.payload().len()), (FrameKind::Fd, 12));
        let f = frame("(1.0) can0 20000080#0000000000000000");
        assert_eq!((f.kind, f.id), (FrameKind::Error, 0x80));
        let f = frame("(1.0) can0 123#11.22.33");
        assert_eq!(f.payload(), &[0x11, 0x22, 0x33]);
        let f = frame("(1.0) can0 123#1122334455667788_E");
        assert_eq!(f.payload().len(), 8);
        let f = frame("(1.0) can0 123#");
        assert!(f.payload().is_empty());
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        for bad in [
            "garbage",
            "(1.0)",
            "(1.0) can0",
            "(abc) can0 123#00",
            "1.0 can0 123#00",
            "(1.0 can0 123#00",
            "(1) can0 123#00",
            "(.5) can0 123#00",
            "(1.0) can0 12#00",
            "(1.0) can0 1234#00",
            "(1.0) can0 800#00",
            "(1.0) can0 G23#00",
            "(1.0) can0 123#0",
            "(1.0) can0 123#001122334455667788",
            "(1.0) can0 123#ZZ",
            "(1.0) can0 123",
            "(1.0) can0 123##",
            "(1.0) can0 123##X00",
            "(1.0) can0 123##1001122334455667788",
            "(1.0) can0 123#R9",
            "(1.0) can0 123#0011_E",
            "(1.0) can0 C0000000#00",
            "(99999999999999999999.0) can0 123#00",
            "(1.0) can0 123#\u{e9}",
        ] {
            assert!(parse_line(bad.as_bytes()).is_err(), "{bad} should be refused");
        }
        assert_eq!(parse_line(b""), Ok(None));
        assert_eq!(parse_line(b"# comment"), Ok(None));
        // Arbitrary bytes never panic.
        let mut x: u32 = 12345;
        for _ in 0..20_000 {
            let mut line = Vec::new();
            for _ in 0..(x % 40) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                line.push(b"(0123.)# RrF_xa9 \n"[(x % 18) as usize]);
            }
            let _ = parse_line(&line);
        }
    }
}
