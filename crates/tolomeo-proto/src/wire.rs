//! The subject layout and the identities that appear on the wire (PROTOCOL.md sections 0 to 4).
//!
//! [`ServiceName`] and [`DeviceSerial`] can only hold valid values, so every subject and base
//! name built from them is valid too. Payloads are encoded in [`crate::senml`]; this module
//! says where they go.

use std::fmt;

/// The data subject: one SenML pack per poll period.
pub const DATA_SUBJECT: &str = "events.data";
/// The metric announcement subject.
pub const PARAMS_SUBJECT: &str = "events.params";

/// A service name: one NATS subject token, `^[a-z0-9][a-z0-9_-]{0,63}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceName(String);

impl ServiceName {
    /// Check and wrap a service name.
    pub fn new(name: &str) -> Result<Self, String> {
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if first_ok && rest_ok && name.len() <= 64 {
            Ok(ServiceName(name.to_string()))
        } else {
            Err(format!(
                "service name {name:?} is invalid: expected 1 to 64 of a-z 0-9 _ -, starting with a letter or digit"
            ))
        }
    }
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// `heartbeat.<service>.service`.
    pub fn heartbeat_subject(&self) -> String {
        format!("heartbeat.{}.service", self.0)
    }
    /// `commands.<service>.req`.
    pub fn request_subject(&self) -> String {
        format!("commands.{}.req", self.0)
    }
    /// `commands.<service>.res`.
    pub fn response_subject(&self) -> String {
        format!("commands.{}.res", self.0)
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A device serial number, `^[A-Za-z0-9._-]{1,64}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceSerial(String);

impl DeviceSerial {
    /// Check and wrap a serial.
    pub fn new(serial: &str) -> Result<Self, String> {
        let ok = (1..=64).contains(&serial.len())
            && serial
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(DeviceSerial(serial.to_string()))
        } else {
            Err(format!(
                "{serial:?} is not a valid serial number: expected 1 to 64 of A-Z a-z 0-9 . _ -"
            ))
        }
    }
    /// The serial.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The SenML base name: `urn:cpt:device:sn:<serial>:`.
    pub fn base_name(&self) -> String {
        format!("urn:cpt:device:sn:{}:", self.0)
    }
}

impl fmt::Display for DeviceSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        for ok in [
            "cpu-monitor",
            "can-engine",
            "modbus_sensors",
            "a",
            "0x",
            &"a".repeat(64),
        ] {
            assert!(ServiceName::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "_a", "Cpu", "a.b", "a b", "a*", "a>", &"a".repeat(65)] {
            assert!(ServiceName::new(bad).is_err(), "{bad}");
        }
        let s = ServiceName::new("cpu-monitor").unwrap();
        assert_eq!(s.heartbeat_subject(), "heartbeat.cpu-monitor.service");
        assert_eq!(s.request_subject(), "commands.cpu-monitor.req");
        assert_eq!(s.response_subject(), "commands.cpu-monitor.res");
    }

    #[test]
    fn serials() {
        assert_eq!(
            DeviceSerial::new("SN123456").unwrap().base_name(),
            "urn:cpt:device:sn:SN123456:"
        );
        for ok in ["a.b_c-D9", &"x".repeat(64)] {
            assert!(DeviceSerial::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a:b", "a b", "sn/1", "\u{e9}", &"x".repeat(65)] {
            assert!(DeviceSerial::new(bad).is_err(), "{bad}");
        }
    }
}
