//! J1939-73 DM1, active diagnostic trouble codes (PGN 65226): the lamp status and each DTC,
//! from a single frame or a multi-packet message (through [`crate::tp`]).
//!
//! Layout (bytes counted from 1, as J1939-73 does): byte 1 is the lamp status, two bits each
//! from the top: malfunction indicator (MIL), red stop, amber warning, protect (00 off, 01 on,
//! 10 reserved, 11 not available); byte 2 their flash status. Then 4 bytes per DTC: the SPN's
//! low 8 bits, its next 8 bits, then its top 3 bits in bits 8-6 with the FMI in bits 5-1, then
//! the SPN conversion method in bit 8 and the occurrence count in bits 7-1. "No active DTC" is
//! sent as one DTC of all zeros (or all ones, by some ECUs).

/// PGN of DM1.
pub const PGN_DM1: u32 = 0xFECA;

/// The four lamps of byte 1: `Some(true)` on, `Some(false)` off, `None` not available or
/// reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Lamps {
    /// Malfunction indicator lamp (SPN 1213).
    pub mil: Option<bool>,
    /// Red stop lamp (SPN 623).
    pub red_stop: Option<bool>,
    /// Amber warning lamp (SPN 624).
    pub amber_warning: Option<bool>,
    /// Protect lamp (SPN 987).
    pub protect: Option<bool>,
}

impl Lamps {
    /// The lamps with their metric field names, in byte order.
    pub fn fields(&self) -> [(&'static str, Option<bool>); 4] {
        [
            ("mil", self.mil),
            ("red_stop", self.red_stop),
            ("amber_warning", self.amber_warning),
            ("protect", self.protect),
        ]
    }
}

/// One diagnostic trouble code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Dtc {
    /// Suspect parameter number (19 bits).
    pub spn: u32,
    /// Failure mode identifier (5 bits).
    pub fmi: u8,
    /// Occurrence count (7 bits; 127 when not available).
    pub oc: u8,
    /// SPN conversion method bit (0: the layout above, J1939-73 version 4).
    pub cm: u8,
}

/// A decoded DM1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dm1 {
    /// The lamp status.
    pub lamps: Lamps,
    /// The active DTCs (none when the ECU reports none).
    pub dtcs: Vec<Dtc>,
}

/// Decode a DM1 payload; `None` when it is shorter than 6 bytes (lamps and one DTC). Bytes
/// after the last whole DTC (padding) are ignored.
pub fn decode(data: &[u8]) -> Option<Dm1> {
    if data.len() < 6 {
        return None;
    }
    let lamp = |shift: u8| match (data[0] >> shift) & 0b11 {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    };
    let lamps = Lamps {
        mil: lamp(6),
        red_stop: lamp(4),
        amber_warning: lamp(2),
        protect: lamp(0),
    };
    let dtcs = data[2..]
        .chunks_exact(4)
        .map(|b| Dtc {
            spn: u32::from(b[0]) | (u32::from(b[1]) << 8) | (u32::from(b[2] >> 5) << 16),
            fmi: b[2] & 0x1F,
            oc: b[3] & 0x7F,
            cm: b[3] >> 7,
        })
        // No DTC: all zeros, or all ones (SPN 0x7FFFF, FMI 31).
        .filter(|d| d.spn != 0 && d.spn != 0x7_FFFF)
        .collect();
    Some(Dm1 { lamps, dtcs })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 4 bytes of a DTC, laid out by hand as J1939-73 (version 4) says.
    fn dtc_bytes(spn: u32, fmi: u8, oc: u8) -> [u8; 4] {
        [spn as u8, (spn >> 8) as u8, (((spn >> 16) as u8) << 5) | fmi, oc]
    }

    #[test]
    fn one_dtc_in_a_single_frame() {
        // Lamps 0b01_00_01_11: MIL on, red stop off, amber warning on, protect n/a.
        // SPN 110 (coolant temperature) FMI 0 (above normal, most severe), seen 3 times:
        // 110 = 0x00006E -> 6E 00, top bits 0, FMI 0 -> 00, OC 3 -> 03.
        let data = [0b0100_0111, 0xFF, 0x6E, 0x00, 0x00, 0x03, 0xFF, 0xFF];
        let dm1 = decode(&data).unwrap();
        assert_eq!(
            dm1.lamps,
            Lamps {
                mil: Some(true),
                red_stop: Some(false),
                amber_warning: Some(true),
                protect: None
            }
        );
        assert_eq!(
            dm1.dtcs,
            [Dtc {
                spn: 110,
                fmi: 0,
                oc: 3,
                cm: 0
            }]
        );
    }

    #[test]
    fn the_19_bit_spn_and_several_dtcs() {
        // SPN 524287 - 1 = 0x7FFFE: FE FF, top 3 bits 0b111 -> 0xE0 | FMI 31 = 0xFF; CM 1, OC 126.
        let mut data = vec![0x00, 0x00];
        data.extend(dtc_bytes(0x7_FFFE, 31, 0x80 | 126));
        // SPN 520192 = 0x7F000 (proprietary range): 00 F0, top bits 0b111, FMI 2.
        data.extend(dtc_bytes(0x7_F000, 2, 1));
        // SPN 100 (oil pressure) FMI 1 (below normal, most severe), OC 127 (not available).
        data.extend(dtc_bytes(100, 1, 127));
        let dm1 = decode(&data).unwrap();
        assert_eq!(
            dm1.dtcs,
            [
                Dtc {
                    spn: 0x7_FFFE,
                    fmi: 31,
                    oc: 126,
                    cm: 1
                },
                Dtc {
                    spn: 0x7_F000,
                    fmi: 2,
                    oc: 1,
                    cm: 0
                },
                Dtc {
                    spn: 100,
                    fmi: 1,
                    oc: 127,
                    cm: 0
                },
            ]
        );
        assert_eq!(dm1.lamps.fields().map(|(_, v)| v), [Some(false); 4]);
    }

    #[test]
    fn no_dtc_padding_and_short_frames() {
        // "No active DTC": all zeros, or all ones; lamps all not available.
        for fill in [0x00, 0xFF] {
            let dm1 = decode(&[0xFF, 0xFF, fill, fill, fill, fill, 0xFF, 0xFF]).unwrap();
            assert!(dm1.dtcs.is_empty(), "{fill:#x}");
            assert_eq!(dm1.lamps, Lamps::default());
        }
        // Reserved lamp value 0b10 is not a state.
        assert_eq!(decode(&[0b1000_0000, 0, 0, 0, 0, 0]).unwrap().lamps.mil, None);
        // Padding after the last whole DTC is ignored; under 6 bytes is not a DM1.
        assert_eq!(decode(&[0, 0, 0x6E, 0, 0, 1, 0xFF, 0xFF, 0xFF]).unwrap().dtcs.len(), 1);
        assert_eq!(decode(&[0, 0, 0x6E, 0, 0]), None);
    }
}
