//! Request planning: the registers of one device and kind merged into as few reads as the
//! protocol allows. A pure function, [`plan`].

use std::fmt;

use serde::Serialize;

/// The four Modbus tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Read/write 16-bit registers (function 3).
    Holding,
    /// Read-only 16-bit registers (function 4).
    Input,
    /// Read/write bits (function 1).
    Coil,
    /// Read-only bits (function 2).
    Discrete,
}

impl Kind {
    /// `holding`, `input`, `coil` or `discrete` (Telegraf's plural forms too).
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s.to_ascii_lowercase().as_str() {
            "holding" | "holding_register" | "holding_registers" => Kind::Holding,
            "input" | "input_register" | "input_registers" => Kind::Input,
            "coil" | "coils" => Kind::Coil,
            "discrete" | "discrete_input" | "discrete_inputs" => Kind::Discrete,
            _ => return None,
        })
    }
    /// True for coils and discrete inputs.
    pub fn is_bits(self) -> bool {
        matches!(self, Kind::Coil | Kind::Discrete)
    }
    /// The most items one read may ask for: 125 registers or 2000 bits.
    pub fn max_per_read(self) -> u16 {
        if self.is_bits() { 2000 } else { 125 }
    }
    /// Our spelling.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Holding => "holding",
            Kind::Input => "input",
            Kind::Coil => "coil",
            Kind::Discrete => "discrete",
        }
    }
}

/// One read request and the registers it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Request {
    /// Which table.
    pub kind: Kind,
    /// First address read.
    pub start: u16,
    /// Registers (or bits) read.
    pub count: u16,
    /// Indexes (into the span list given to [`plan`]) of the values this request serves.
    pub items: Vec<usize>,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = if self.kind.is_bits() { "bits" } else { "registers" };
        write!(
            f,
            "read {} {} {}..={} ({} {unit}, {} values)",
            self.kind.name(),
            unit,
            self.start,
            u32::from(self.start) + u32::from(self.count) - 1,
            self.count,
            self.items.len()
        )
    }
}

/// A value to read: its table, first address and width (registers, or 1 for a bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub kind: Kind,
    pub address: u16,
    pub width: u16,
}

/// Merge `spans` into reads: per kind, in address order, a value joins the current read when
/// the gap before it is at most `max_gap` and the read stays within the protocol's limit
/// (at most `max_registers` registers, at most 2000 bits). Spans wider than the limit, or
/// running past address 65535, are refused by the configuration check before this runs;
/// here they get a read of their own.
pub fn plan(spans: &[Span], max_gap: u16, max_registers: u16) -> Vec<Request> {
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| spans.get(i).map(|s| (s.kind, s.address, s.width)));
    let mut out: Vec<Request> = Vec::new();
    // Current read: kind, start, exclusive end (u32: an end of 65536 is fine).
    let mut cur: Option<(Kind, u32, u32, Vec<usize>)> = None;
    for i in order {
        let Some(s) = spans.get(i) else { continue };
        let limit = if s.kind.is_bits() {
            2000
        } else {
            max_registers.clamp(1, 125)
        };
        let (start, end) = (u32::from(s.address), u32::from(s.address) + u32::from(s.width.max(1)));
        if let Some((kind, cstart, cend, items)) = cur.as_mut()
            && *kind == s.kind
            && start <= *cend + u32::from(max_gap)
            && end.max(*cend) - *cstart <= u32::from(limit)
        {
            *cend = end.max(*cend);
            items.push(i);
            continue;
        }
        if let Some(done) = cur.take() {
            out.push(finish(done));
        }
        cur = Some((s.kind, start, end, vec![i]));
    }
    if let Some(done) = cur.take() {
        out.push(finish(done));
    }
    out
}

fn finish((kind, start, end, items): (Kind, u32, u32, Vec<usize>)) -> Request {
    Request {
        kind,
        start: u16::try_from(start).unwrap_or(u16::MAX),
        count: u16::try_from(end - start).unwrap_or(u16::MAX),
        items,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(address: u16, width: u16) -> Span {
        Span {
            kind: Kind::Holding,
            address,
            width,
        }
    }

    #[test]
    fn two_hundred_registers_over_four_hundred_addresses_take_four_reads() {
        let spans: Vec<Span> = (0..200).map(|i| h(i * 2, 1)).collect();
        let p = plan(&spans, 10, 125);
        assert_eq!(p.len(), 4, "{p:#?}");
        assert!(p.iter().all(|r| r.count <= 125));
        assert_eq!(p.iter().map(|r| r.items.len()).sum::<usize>(), 200);
        // Every span lies inside the read that serves it.
        for r in &p {
            for &i in &r.items {
                assert!(spans[i].address >= r.start && spans[i].address < r.start + r.count);
            }
        }
        assert_eq!((p[0].start, p[0].count), (0, 125));
    }

    #[test]
    fn gaps_kinds_and_limits_split_reads() {
        let spans = [
            h(100, 2),
            h(0, 1),
            h(5, 4),  // gap of 4 after 0: merged
            h(20, 1), // gap of 11 after 9: new read
            Span {
                kind: Kind::Coil,
                address: 3,
                width: 1,
            },
            Span {
                kind: Kind::Coil,
                address: 1990,
                width: 1,
            },
            Span {
                kind: Kind::Input,
                address: 5,
                width: 1,
            },
        ];
        let p = plan(&spans, 10, 125);
        let summary: Vec<_> = p.iter().map(|r| (r.kind, r.start, r.count, r.items.clone())).collect();
        assert_eq!(
            summary,
            vec![
                (Kind::Holding, 0, 9, vec![1, 2]),
                (Kind::Holding, 20, 1, vec![3]),
                (Kind::Holding, 100, 2, vec![0]),
                (Kind::Input, 5, 1, vec![6]),
                (Kind::Coil, 3, 1, vec![4]),
                (Kind::Coil, 1990, 1, vec![5]),
            ]
        );
        // With a large gap the coils merge: 3..=1990 is 1988 bits, under 2000.
        let p = plan(&spans[4..6], 2000, 125);
        assert_eq!((p.len(), p[0].count), (1, 1988));
        // A smaller per-device limit.
        let spans: Vec<Span> = (0..10).map(|i| h(i, 1)).collect();
        assert_eq!(
            plan(&spans, 0, 4).iter().map(|r| r.count).collect::<Vec<_>>(),
            [4, 4, 2]
        );
    }

    #[test]
    fn overlapping_and_top_of_range_values() {
        let p = plan(&[h(0, 4), h(2, 2), h(65534, 2)], 10, 125);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].start, p[0].count), (0, 4));
        assert_eq!((p[1].start, p[1].count), (65534, 2));
        assert_eq!(
            p[1].to_string(),
            "read holding registers 65534..=65535 (2 registers, 1 values)"
        );
        assert!(plan(&[], 10, 125).is_empty());
    }
}
