//! J1939: parameter group numbers from 29-bit identifiers, and EEC1 (PGN 61444).
//!
//! PGN extraction follows J1939-21: `EDP DP PF PS`; when PF < 240 (PDU1, destination
//! specific) the PS byte is a destination address and not part of the PGN.

/// PGN of EEC1, Electronic Engine Controller 1.
pub const PGN_EEC1: u32 = 0xF004;

/// The parts of a 29-bit J1939 identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct J1939Id {
    /// Priority (0 highest to 7).
    pub priority: u8,
    /// Parameter group number (18 bits).
    pub pgn: u32,
    /// Source address.
    pub source: u8,
    /// Destination address (PDU1), 0xFF (global) for PDU2.
    pub destination: u8,
}

/// Split a 29-bit identifier.
pub fn split_id(id: u32) -> J1939Id {
    let id = id & 0x1FFF_FFFF;
    let priority = ((id >> 26) & 0x7) as u8;
    let edp_dp = (id >> 24) & 0x3;
    let pf = (id >> 16) & 0xFF;
    let ps = (id >> 8) & 0xFF;
    let source = (id & 0xFF) as u8;
    let (pgn, destination) = if pf < 240 {
        ((edp_dp << 16) | (pf << 8), ps as u8)
    } else {
        ((edp_dp << 16) | (pf << 8) | ps, 0xFF)
    };
    J1939Id {
        priority,
        pgn,
        source,
        destination,
    }
}

/// One SPN of a frame: its value, or why there is none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Spn {
    /// A valid physical value.
    Value(f64),
    /// Raw value in the not-available / error / reserved range.
    NotAvailable,
}

/// The decoded EEC1 parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Eec1 {
    /// SPN 512, driver's demand engine percent torque, %.
    pub demand_torque_pct: Spn,
    /// SPN 513, actual engine percent torque, %.
    pub torque_pct: Spn,
    /// SPN 190, engine speed, rpm.
    pub rpm: Spn,
}

/// Decode EEC1 from its 8 data bytes. `None` when the frame is shorter than 8 bytes.
pub fn decode_eec1(data: &[u8]) -> Option<Eec1> {
    let d: &[u8; 8] = data.get(..8)?.try_into().ok()?;
    let pct = |raw: u8| {
        if raw > 0xFA {
            Spn::NotAvailable
        } else {
            Spn::Value(f64::from(raw) - 125.0)
        }
    };
    let raw_rpm = u16::from_le_bytes([d[3], d[4]]);
    Some(Eec1 {
        demand_torque_pct: pct(d[1]),
        torque_pct: pct(d[2]),
        rpm: if raw_rpm > 0xFAFF {
            Spn::NotAvailable
        } else {
            Spn::Value(f64::from(raw_rpm) * 0.125)
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_example() {
        let id = split_id(0x0CF0_0400);
        assert_eq!((id.pgn, id.source, id.priority), (61444, 0x00, 3));
        let e = decode_eec1(&[0xFF, 0x7D, 0x7D, 0xE0, 0x15, 0xFF, 0xF0, 0xFF]).unwrap();
        assert_eq!(e.rpm, Spn::Value(700.0));
        assert_eq!(e.torque_pct, Spn::Value(0.0)); // 0x7D = 125, offset -125
        assert_eq!(e.demand_torque_pct, Spn::Value(0.0));
    }

    #[test]
    fn pdu1_drops_the_destination() {
        // TP.CM (PF 0xEC = 236 < 240) to destination 0x17 from 0xF9: PGN 0xEC00.
        let id = split_id(0x18EC_17F9);
        assert_eq!((id.pgn, id.destination, id.source), (0xEC00, 0x17, 0xF9));
        // Data page bit set: PGN 0x1F004.
        assert_eq!(split_id(0x0DF0_0400).pgn, 0x1_F004);
    }

    #[test]
    fn not_available_and_short() {
        let e = decode_eec1(&[0xFF, 0xFB, 0xFA, 0x00, 0xFB, 0xFF, 0xFF, 0xFF]).unwrap();
        assert_eq!(e.demand_torque_pct, Spn::NotAvailable);
        assert_eq!(e.torque_pct, Spn::Value(125.0));
        assert_eq!(e.rpm, Spn::NotAvailable); // 0xFB00 > 0xFAFF
        let e = decode_eec1(&[0, 0, 0, 0xFF, 0xFA, 0, 0, 0]).unwrap();
        assert_eq!(e.rpm, Spn::Value(f64::from(0xFAFFu16) * 0.125));
        assert_eq!(decode_eec1(&[0xFF, 0x7D, 0x7D, 0xE0, 0x15, 0xFF, 0xF0]), None);
    }
}
