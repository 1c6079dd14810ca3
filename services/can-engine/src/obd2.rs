//! OBD-II (ISO 15765-4, 11-bit): mode 01 requests on the functional address 0x7DF and the
//! replies of ECUs on 0x7E8 to 0x7EF.

use crate::frame::Frame;

/// The functional request identifier.
pub const REQUEST_ID: u32 = 0x7DF;

/// A supported mode 01 PID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pid {
    /// 0x04 calculated engine load: A × 100 / 255 %.
    Load,
    /// 0x05 engine coolant temperature: A − 40 °C.
    CoolantTemp,
    /// 0x0C engine speed: (256 A + B) / 4 rpm.
    Rpm,
    /// 0x0D vehicle speed: A km/h.
    VehicleSpeed,
}

impl Pid {
    /// Every supported PID.
    pub const ALL: [Pid; 4] = [Pid::Load, Pid::CoolantTemp, Pid::Rpm, Pid::VehicleSpeed];

    /// From its number.
    pub fn from_code(code: u8) -> Option<Pid> {
        Pid::ALL.into_iter().find(|p| p.code() == code)
    }
    /// Its number.
    pub fn code(self) -> u8 {
        match self {
            Pid::Load => 0x04,
            Pid::CoolantTemp => 0x05,
            Pid::Rpm => 0x0C,
            Pid::VehicleSpeed => 0x0D,
        }
    }
    /// The metric it is published as, and its unit.
    pub fn metric(self) -> (&'static str, &'static str) {
        match self {
            Pid::Load => ("engine:load", "%"),
            Pid::CoolantTemp => ("engine:coolant_temp", "Cel"),
            Pid::Rpm => ("engine:rpm", "rpm"),
            Pid::VehicleSpeed => ("vehicle:speed", "km/h"),
        }
    }
    fn data_bytes(self) -> usize {
        match self {
            Pid::Rpm => 2,
            _ => 1,
        }
    }
    fn decode(self, d: &[u8]) -> Option<f64> {
        let a = f64::from(*d.first()?);
        Some(match self {
            Pid::Load => a * 100.0 / 255.0,
            Pid::CoolantTemp => a - 40.0,
            Pid::Rpm => (256.0 * a + f64::from(*d.get(1)?)) / 4.0,
            Pid::VehicleSpeed => a,
        })
    }
}

/// The request frame for `pid`: `02 01 <pid> 00 00 00 00 00` on 0x7DF.
pub fn request(pid: u8, time_us: i64) -> Frame {
    Frame::data(time_us, REQUEST_ID, false, &[0x02, 0x01, pid, 0, 0, 0, 0, 0])
}

/// What a frame on 0x7E8 to 0x7EF says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reply {
    /// A mode 01 reply for a supported PID.
    Value(Pid, f64),
    /// A mode 01 reply for a PID this service does not decode.
    Unsupported(u8),
    /// Too short for what it claims, or not a mode 01 positive reply.
    Malformed,
}

/// Is this frame an ECU reply (0x7E8 to 0x7EF, 11-bit)?
pub fn is_reply(frame: &Frame) -> bool {
    !frame.extended && (0x7E8..=0x7EF).contains(&frame.id)
}

/// Decode a reply frame: `<len> 41 <pid> A [B ..]`.
pub fn decode_reply(data: &[u8]) -> Reply {
    let (Some(&len), Some(&mode), Some(&code)) = (data.first(), data.get(1), data.get(2)) else {
        return Reply::Malformed;
    };
    if mode != 0x41 {
        return Reply::Malformed;
    }
    let Some(pid) = Pid::from_code(code) else {
        return Reply::Unsupported(code);
    };
    let need = 2 + pid.data_bytes();
    if (len as usize) < need || data.len() < 1 + need {
        return Reply::Malformed;
    }
    match pid.decode(&data[3..]) {
        Some(v) => Reply::Value(pid, v),
        None => Reply::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_by_the_sae_formulas() {
        // (256 * 0x1A + 0xF8) / 4 = 1726
        assert_eq!(
            decode_reply(&[4, 0x41, 0x0C, 0x1A, 0xF8, 0, 0, 0]),
            Reply::Value(Pid::Rpm, 1726.0)
        );
        assert_eq!(
            decode_reply(&[3, 0x41, 0x05, 130, 0, 0, 0, 0]),
            Reply::Value(Pid::CoolantTemp, 90.0)
        );
        assert_eq!(
            decode_reply(&[3, 0x41, 0x0D, 88]),
            Reply::Value(Pid::VehicleSpeed, 88.0)
        );
        assert_eq!(decode_reply(&[3, 0x41, 0x04, 255]), Reply::Value(Pid::Load, 100.0));
        assert_eq!(decode_reply(&[3, 0x41, 0x0C, 0x1A]), Reply::Malformed);
        assert_eq!(decode_reply(&[4, 0x41, 0x0C, 0x1A]), Reply::Malformed);
        assert_eq!(decode_reply(&[3, 0x7F, 0x01, 0x12]), Reply::Malformed);
        assert_eq!(decode_reply(&[3, 0x41, 0x2F, 0x12]), Reply::Unsupported(0x2F));
        assert_eq!(decode_reply(&[]), Reply::Malformed);
        assert_eq!(request(0x0C, 0).payload(), &[2, 1, 0x0C, 0, 0, 0, 0, 0]);
    }
}
