//! J1939: parameter group numbers from 29-bit identifiers, EEC1 (PGN 61444), and the common
//! engine parameters of J1939-71 that can-engine decodes without a DBC ([`PARAMETERS`]).
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

/// An EEC1 parameter, placed and scaled like the built-in ones ([`PARAMETERS`]), so that the
/// same code reads it and its not-available range.
const fn eec1(
    metric: &'static str,
    unit: &'static str,
    spn: u32,
    start: usize,
    len: usize,
    scale: f64,
    offset: f64,
) -> Parameter {
    Parameter {
        metric,
        unit,
        spn,
        pgn: PGN_EEC1,
        group: "EEC1",
        start,
        len,
        scale,
        offset,
        label: "",
    }
}
/// SPN 512, byte 2: 1 %/bit, -125.
const EEC1_DEMAND: Parameter = eec1("engine:demand_torque_pct", "%", 512, 1, 1, 1.0, -125.0);
/// SPN 513, byte 3: 1 %/bit, -125.
const EEC1_TORQUE: Parameter = eec1("engine:torque_pct", "%", 513, 2, 1, 1.0, -125.0);
/// SPN 190, bytes 4-5: 0.125 rpm/bit.
const EEC1_RPM: Parameter = eec1("engine:rpm", "rpm", 190, 3, 2, 0.125, 0.0);

/// Decode EEC1 from its 8 data bytes. `None` when the frame is shorter than 8 bytes.
pub fn decode_eec1(data: &[u8]) -> Option<Eec1> {
    if data.len() < 8 {
        return None;
    }
    // Eight bytes hold all three: `decode` cannot miss.
    let spn = |p: &Parameter| p.decode(data).unwrap_or(Spn::NotAvailable);
    Some(Eec1 {
        demand_torque_pct: spn(&EEC1_DEMAND),
        torque_pct: spn(&EEC1_TORQUE),
        rpm: spn(&EEC1_RPM),
    })
}

/// A parameter of SAE J1939-71 that can-engine decodes by name, without a DBC: where it is
/// in its parameter group, and its scaling (`value = raw * scale + offset`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parameter {
    /// The metric it is published as, `<group>:<field>`; also its name in `[can] parameters`.
    pub metric: &'static str,
    /// The unit of the metric (SenML's symbol; `l/h` is documented in PROTOCOL.md).
    pub unit: &'static str,
    /// The suspect parameter number.
    pub spn: u32,
    /// The parameter group: its number and acronym.
    pub pgn: u32,
    /// The group's acronym (ET1, CCVS...).
    pub group: &'static str,
    /// First byte (0-based) of the value in the group's data, little endian.
    pub start: usize,
    /// Its length in bytes (1, 2 or 4).
    pub len: usize,
    /// Value of one bit.
    pub scale: f64,
    /// Added after scaling.
    pub offset: f64,
    /// What it is, for `events.params`.
    pub label: &'static str,
}

/// The engine parameters every engine broadcasts, with SAE J1939-71's scaling. Byte positions
/// are 0-based here (J1939-71 counts from 1).
pub const PARAMETERS: [Parameter; 9] = [
    Parameter {
        metric: "engine:coolant_temp",
        unit: "Cel",
        spn: 110,
        pgn: 0xFEEE,
        group: "ET1",
        start: 0,
        len: 1,
        scale: 1.0,
        offset: -40.0,
        label: "Engine coolant temperature",
    },
    Parameter {
        metric: "engine:oil_pressure",
        unit: "Pa",
        spn: 100,
        pgn: 0xFEEF,
        group: "EFL/P1",
        start: 3,
        len: 1,
        scale: 4000.0,
        offset: 0.0,
        label: "Engine oil pressure",
    },
    Parameter {
        metric: "engine:fuel_rate",
        unit: "l/h",
        spn: 183,
        pgn: 0xFEF2,
        group: "LFE",
        start: 0,
        len: 2,
        scale: 0.05,
        offset: 0.0,
        label: "Engine fuel rate",
    },
    Parameter {
        metric: "vehicle:speed",
        unit: "km/h",
        spn: 84,
        pgn: 0xFEF1,
        group: "CCVS",
        start: 1,
        len: 2,
        scale: 1.0 / 256.0,
        offset: 0.0,
        label: "Wheel-based vehicle speed",
    },
    Parameter {
        metric: "engine:accelerator_pedal",
        unit: "%",
        spn: 91,
        pgn: 0xF003,
        group: "EEC2",
        start: 1,
        len: 1,
        scale: 0.4,
        offset: 0.0,
        label: "Accelerator pedal position 1",
    },
    Parameter {
        metric: "engine:load",
        unit: "%",
        spn: 92,
        pgn: 0xF003,
        group: "EEC2",
        start: 2,
        len: 1,
        scale: 1.0,
        offset: 0.0,
        label: "Engine percent load at current speed",
    },
    Parameter {
        metric: "engine:total_hours",
        unit: "h",
        spn: 247,
        pgn: 0xFEE5,
        group: "HOURS",
        start: 0,
        len: 4,
        scale: 0.05,
        offset: 0.0,
        label: "Engine total hours of operation",
    },
    Parameter {
        metric: "electrical:battery_voltage",
        unit: "V",
        spn: 168,
        pgn: 0xFEF7,
        group: "VEP1",
        start: 4,
        len: 2,
        scale: 0.05,
        offset: 0.0,
        label: "Battery potential / power input 1",
    },
    Parameter {
        metric: "ambient:air_temp",
        unit: "Cel",
        spn: 171,
        pgn: 0xFEF5,
        group: "AMB",
        start: 3,
        len: 2,
        scale: 0.03125,
        offset: -273.0,
        label: "Ambient air temperature",
    },
];

impl Parameter {
    /// The parameter published as `metric`.
    pub fn by_metric(metric: &str) -> Option<&'static Parameter> {
        PARAMETERS.iter().find(|p| p.metric == metric)
    }

    /// Its value in `data` (the group's bytes); `None` when `data` is too short. Raw values
    /// above J1939-71's valid range (0xFA, 0xFAFF, 0xFAFFFFFF for 1, 2, 4 bytes) are error,
    /// not-available or reserved indicators, never values.
    pub fn decode(&self, data: &[u8]) -> Option<Spn> {
        let bytes = data.get(self.start..self.start + self.len)?;
        let raw = bytes.iter().rev().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let max_valid = (0xFBu64 << (8 * (self.len - 1))) - 1;
        Some(if raw > max_valid {
            Spn::NotAvailable
        } else {
            Spn::Value(raw as f64 * self.scale + self.offset)
        })
    }
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

    /// One frame per group, values chosen by hand; each expected value is J1939-71's scaling
    /// written out (bytes are 1-based in the comments, as the standard counts them).
    #[test]
    fn common_parameters_by_the_standards_scaling() {
        let value = |metric: &str, data: &[u8]| Parameter::by_metric(metric).unwrap().decode(data).unwrap();
        // ET1 byte 1 = 0x7B = 123: 123 x 1 - 40 = 83 degC.
        assert_eq!(
            value("engine:coolant_temp", &[0x7B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            Spn::Value(83.0)
        );
        // EFL/P1 byte 4 = 0x64 = 100: 100 x 4 kPa = 400 kPa = 400,000 Pa.
        assert_eq!(
            value("engine:oil_pressure", &[0xFF, 0xFF, 0xFF, 0x64, 0xFF, 0xFF, 0xFF, 0xFF]),
            Spn::Value(400_000.0)
        );
        // LFE bytes 1-2 = 0x01F4 = 500 (F4 01 little endian): 500 x 0.05 = 25 l/h.
        assert_eq!(
            value("engine:fuel_rate", &[0xF4, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            Spn::Value(25.0)
        );
        // CCVS bytes 2-3 = 0x5800 = 22528: 22528 / 256 = 88 km/h.
        assert_eq!(
            value("vehicle:speed", &[0xFF, 0x00, 0x58, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            Spn::Value(88.0)
        );
        // EEC2 byte 2 = 0xFA = 250: 250 x 0.4 = 100 %; byte 3 = 0x2D = 45: 45 %.
        let eec2 = [0xFF, 0xFA, 0x2D, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        assert_eq!(value("engine:accelerator_pedal", &eec2), Spn::Value(100.0));
        assert_eq!(value("engine:load", &eec2), Spn::Value(45.0));
        // HOURS bytes 1-4 = 0x000186A0 = 100000: 100000 x 0.05 = 5000 h.
        assert_eq!(
            value("engine:total_hours", &[0xA0, 0x86, 0x01, 0x00, 0xFF, 0xFF, 0xFF, 0xFF]),
            Spn::Value(5000.0)
        );
        // VEP1 bytes 5-6 = 0x0230 = 560: 560 x 0.05 = 28 V.
        assert_eq!(
            value(
                "electrical:battery_voltage",
                &[0xFF, 0xFF, 0xFF, 0xFF, 0x30, 0x02, 0xFF, 0xFF]
            ),
            Spn::Value(28.0)
        );
        // AMB bytes 4-5 = 0x2320 = 8992: 8992 x 0.03125 - 273 = 281 - 273 = 8 degC.
        assert_eq!(
            value("ambient:air_temp", &[0xFF, 0xFF, 0xFF, 0x20, 0x23, 0xFF, 0xFF, 0xFF]),
            Spn::Value(8.0)
        );
    }

    #[test]
    fn parameters_respect_the_not_available_ranges() {
        let p = |m: &str| Parameter::by_metric(m).unwrap();
        // 1 byte: 0xFA is the last value, 0xFB..=0xFF are indicators (0xFE error, 0xFF n/a).
        assert_eq!(p("engine:coolant_temp").decode(&[0xFA]), Some(Spn::Value(210.0)));
        for raw in [0xFB, 0xFE, 0xFF] {
            assert_eq!(p("engine:coolant_temp").decode(&[raw]), Some(Spn::NotAvailable));
        }
        // 2 bytes: 0xFAFF is the last value; 0xFB00 and above are not.
        assert_eq!(
            p("engine:fuel_rate").decode(&[0xFF, 0xFA]),
            Some(Spn::Value(f64::from(0xFAFFu16) * 0.05))
        );
        assert_eq!(p("engine:fuel_rate").decode(&[0x00, 0xFB]), Some(Spn::NotAvailable));
        assert_eq!(p("engine:fuel_rate").decode(&[0xFF, 0xFF]), Some(Spn::NotAvailable));
        // 4 bytes: 0xFAFFFFFF is the last value.
        assert_eq!(
            p("engine:total_hours").decode(&[0xFF, 0xFF, 0xFF, 0xFA]),
            Some(Spn::Value(f64::from(0xFAFF_FFFFu32) * 0.05))
        );
        assert_eq!(
            p("engine:total_hours").decode(&[0x00, 0x00, 0x00, 0xFB]),
            Some(Spn::NotAvailable)
        );
        // Too short for the parameter: no value, not a not-available one.
        assert_eq!(p("electrical:battery_voltage").decode(&[0; 5]), None);
        // Every metric name is unique and every group is a PDU2 broadcast (PF >= 240).
        for (i, a) in PARAMETERS.iter().enumerate() {
            assert!(PARAMETERS[i + 1..].iter().all(|b| b.metric != a.metric), "{}", a.metric);
            assert!((a.pgn >> 8) & 0xFF >= 240, "{}", a.group);
        }
    }
}
