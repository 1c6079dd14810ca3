//! A small DBC reader: `BO_` (messages) and `SG_` (signals) lines, enough to decode the
//! signals a configuration names. Everything else in the file (`CM_`, `VAL_`, `BA_`, ...) is
//! skipped. Multiplexed signals (`M`, `m<n>`) are read but refused by [`Dbc::find`].
//!
//! Decoding follows the DBC conventions: Intel (`@1`) start bit is the least significant bit;
//! Motorola (`@0`) start bit is the most significant bit in the sawtooth numbering
//! (bit 7 of byte 0 is 7, bit 0 of byte 1 is 8, ...); `+` unsigned, `-` two's complement;
//! physical = raw × factor + offset.

use crate::j1939::split_id;

/// One message (`BO_`).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The identifier without the extended flag.
    pub id: u32,
    /// 29-bit identifier (DBC id with bit 31 set).
    pub extended: bool,
    /// Its name.
    pub name: String,
    /// Declared length in bytes.
    pub dlc: usize,
    /// Its signals.
    pub signals: Vec<Signal>,
}

/// One signal (`SG_`).
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// Its name.
    pub name: String,
    /// DBC start bit.
    pub start: u16,
    /// Length in bits (1 to 64).
    pub len: u16,
    /// Intel (little endian) or Motorola (big endian).
    pub little_endian: bool,
    /// Two's complement.
    pub signed: bool,
    /// Scale.
    pub factor: f64,
    /// Offset.
    pub offset: f64,
    /// Unit, as in the file.
    pub unit: String,
    /// Part of a multiplexed message.
    pub multiplexed: bool,
}

/// A parsed DBC file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dbc {
    /// Its messages.
    pub messages: Vec<Message>,
}

/// A problem in a DBC file, with its line number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct DbcError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong and what was expected.
    pub message: String,
}

impl Dbc {
    /// Parse DBC text. `BO_` and `SG_` lines must be well formed; other lines are skipped.
    pub fn parse(text: &str) -> Result<Dbc, DbcError> {
        let mut dbc = Dbc::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let err = |message: String| DbcError { line: i + 1, message };
            if let Some(rest) = line.strip_prefix("BO_ ") {
                dbc.messages.push(parse_message(rest).map_err(err)?);
            } else if let Some(rest) = line.strip_prefix("SG_ ") {
                let sig = parse_signal(rest).map_err(err)?;
                match dbc.messages.last_mut() {
                    Some(m) => m.signals.push(sig),
                    None => return Err(err("SG_ line before any BO_ line".into())),
                }
            }
        }
        Ok(dbc)
    }

    /// Find a signal by `Signal` or `Message.Signal`.
    pub fn find(&self, spec: &str) -> Result<(&Message, &Signal), String> {
        let (msg_name, sig_name) = match spec.split_once('.') {
            Some((m, s)) => (Some(m), s),
            None => (None, spec),
        };
        let mut found = self
            .messages
            .iter()
            .filter(|m| msg_name.is_none_or(|n| n == m.name))
            .flat_map(|m| m.signals.iter().map(move |s| (m, s)))
            .filter(|(_, s)| s.name == sig_name);
        let first = found
            .next()
            .ok_or_else(|| format!("signal {spec:?} is not in the DBC file"))?;
        if found.next().is_some() {
            return Err(format!(
                "signal {spec:?} is in several messages; name it as \"Message.Signal\""
            ));
        }
        if first.1.multiplexed {
            return Err(format!("signal {spec:?} is multiplexed, which is not supported"));
        }
        Ok(first)
    }
}

fn parse_message(rest: &str) -> Result<Message, String> {
    // BO_ <id> <name>: <dlc> <transmitter>
    let mut it = rest.split_whitespace();
    let id: u32 = it
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("BO_: expected a decimal message id")?;
    let name = it.next().ok_or("BO_: expected a message name after the id")?;
    let name = name
        .strip_suffix(':')
        .ok_or("BO_: expected `:` after the message name")?;
    let dlc: usize = it
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|d| *d <= 64)
        .ok_or("BO_: expected a length 0 to 64 after the name")?;
    let extended = id & 0x8000_0000 != 0;
    Ok(Message {
        id: id & 0x1FFF_FFFF,
        extended,
        name: name.to_string(),
        dlc,
        signals: Vec::new(),
    })
}

fn parse_signal(rest: &str) -> Result<Signal, String> {
    // SG_ <name> [M|m<n>] : <start>|<len>@<order><sign> (<factor>,<offset>) [<min>|<max>] "<unit>" <receivers>
    let (head, tail) = rest.split_once(':').ok_or("SG_: expected `:` after the signal name")?;
    let mut head = head.split_whitespace();
    let name = head.next().ok_or("SG_: expected a signal name")?.to_string();
    let multiplexed = head.next().is_some();
    let tail = tail.trim_start();
    let (layout, tail) = tail
        .split_once(' ')
        .ok_or("SG_: expected `start|len@order sign` then the scale")?;
    let (start, rest) = layout.split_once('|').ok_or("SG_: expected `start|len`")?;
    let (len, order) = rest.split_once('@').ok_or("SG_: expected `@` after the length")?;
    let start: u16 = start.parse().map_err(|_| "SG_: start bit is not a number")?;
    let len: u16 = len.parse().map_err(|_| "SG_: length is not a number")?;
    if !(1..=64).contains(&len) || start >= 512 {
        return Err("SG_: length must be 1 to 64 bits and the start bit below 512".into());
    }
    let little_endian = match order.as_bytes().first() {
        Some(b'1') => true,
        Some(b'0') => false,
        _ => return Err("SG_: byte order must be 0 (Motorola) or 1 (Intel)".into()),
    };
    let signed = match order.as_bytes().get(1) {
        Some(b'+') => false,
        Some(b'-') => true,
        _ => return Err("SG_: sign must be + or -".into()),
    };
    let tail = tail.trim_start();
    let scale = tail
        .strip_prefix('(')
        .and_then(|t| t.split_once(')'))
        .ok_or("SG_: expected `(factor,offset)`")?;
    let (factor, offset) = scale.0.split_once(',').ok_or("SG_: expected `(factor,offset)`")?;
    let factor: f64 = factor.trim().parse().map_err(|_| "SG_: factor is not a number")?;
    let offset: f64 = offset.trim().parse().map_err(|_| "SG_: offset is not a number")?;
    if !factor.is_finite() || !offset.is_finite() {
        return Err("SG_: factor and offset must be finite".into());
    }
    let unit = match scale.1.split_once('"') {
        Some((_, after)) => after.split_once('"').map(|(u, _)| u.to_string()).unwrap_or_default(),
        None => String::new(),
    };
    Ok(Signal {
        name,
        start,
        len,
        little_endian,
        signed,
        factor,
        offset,
        unit,
        multiplexed,
    })
}

impl Message {
    /// Does this frame carry this message? Extended (J1939) messages match by PGN, whatever
    /// the source (and destination) address.
    pub fn matches(&self, id: u32, extended: bool) -> bool {
        if self.extended != extended {
            return false;
        }
        if extended {
            split_id(id).pgn == split_id(self.id).pgn
        } else {
            id == self.id
        }
    }
}

impl Signal {
    /// The physical value from a frame's data; `None` when the data is too short.
    pub fn decode(&self, data: &[u8]) -> Option<f64> {
        let raw = self.raw(data)?;
        let len = u32::from(self.len);
        let value = if self.signed && len < 64 {
            let shift = 64 - len;
            (((raw << shift) as i64) >> shift) as f64
        } else if self.signed {
            raw as i64 as f64
        } else {
            raw as f64
        };
        Some(value * self.factor + self.offset)
    }

    fn raw(&self, data: &[u8]) -> Option<u64> {
        let mut raw: u64 = 0;
        if self.little_endian {
            for i in 0..self.len as usize {
                let bit = self.start as usize + i;
                let byte = data.get(bit / 8)?;
                raw |= u64::from((byte >> (bit % 8)) & 1) << i;
            }
        } else {
            let mut byte = self.start as usize / 8;
            let mut bit = self.start as usize % 8;
            for _ in 0..self.len {
                let b = data.get(byte)?;
                raw = (raw << 1) | u64::from((b >> bit) & 1);
                if bit == 0 {
                    byte += 1;
                    bit = 7;
                } else {
                    bit -= 1;
                }
            }
        }
        Some(raw)
    }
}

/// A metric name from a group and a signal: characters outside `A-Za-z0-9-:._/` become `_`,
/// and a name that does not start with a letter or digit gets an `x` in front.
pub fn metric_name(group: &str, signal: &str) -> String {
    let clean = |s: &str| -> String {
        let mut out: String = s
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-._/".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if !out.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            out.insert(0, 'x');
        }
        out
    };
    format!("{}:{}", clean(group), clean(signal))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DBC: &str = r#"
VERSION ""
BO_ 2364540158 EEC1: 8 Vector__XXX
 SG_ EngineSpeed : 24|16@1+ (0.125,0) [0|8031.875] "rpm" Vector__XXX
 SG_ ActualTorque : 16|8@1+ (1,-125) [-125|125] "%" Vector__XXX
BO_ 100 Motor: 8 ECU
 SG_ Temp : 7|12@0- (0.5,-10) [0|0] "Cel" ECU
CM_ SG_ 100 Temp "comment";
"#;

    #[test]
    fn parses_and_decodes_by_hand() {
        let dbc = Dbc::parse(DBC).unwrap();
        let (m, s) = dbc.find("EngineSpeed").unwrap();
        assert!(m.extended && m.matches(0x0CF0_0400, true) && m.matches(0x18F0_04EE, true));
        assert!(!m.matches(0x0CF0_0300, true) && !m.matches(0x400, false));
        assert_eq!(s.decode(&[0xFF, 0x7D, 0x7D, 0xE0, 0x15, 0xFF, 0xF0, 0xFF]), Some(700.0));
        // Motorola 12-bit signed starting at bit 7: byte0 = 0xFF, high nibble of byte1 = 0xE
        // -> 0xFFE = -2 -> -2 * 0.5 - 10 = -11.
        let (_, t) = dbc.find("Motor.Temp").unwrap();
        assert_eq!(t.unit, "Cel");
        assert_eq!(t.decode(&[0xFF, 0xE0]), Some(-11.0));
        assert_eq!(t.decode(&[0xFF]), None);
        assert!(dbc.find("Nope").is_err());
        assert_eq!(metric_name("EEC1", "Engine Speed"), "EEC1:Engine_Speed");
        assert_eq!(metric_name("_x", "y"), "x_x:y");
    }

    #[test]
    fn bad_lines_name_the_line() {
        let e = Dbc::parse("BO_ 1 M: 8 X\n SG_ S : 0|99@1+ (1,0) [0|0] \"\" X\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(Dbc::parse(" SG_ S : 0|8@1+ (1,0) [0|0] \"\" X").is_err());
        assert!(Dbc::parse("BO_ x M: 8 X").is_err());
    }
}
