//! Kernel receive filters for SocketCAN: only the frames some decoder needs reach the process.

use crate::config::{CanConfig, Mode};
use crate::dm1::PGN_DM1;
pub use crate::frame::Filter;
use crate::frame::{CAN_EFF_FLAG, CAN_RTR_FLAG};
use crate::j1939::PGN_EEC1;
use crate::pipeline::Pipeline;
use crate::tp::{PGN_TP_CM, PGN_TP_DT};

/// Mask bits of the PGN of a 29-bit identifier (EDP, DP, PF, PS).
const PGN_MASK_PDU2: u32 = 0x03FF_FF00;
/// For PDU1 (PF < 240) the PS byte is a destination address.
const PGN_MASK_PDU1: u32 = 0x03FF_0000;

/// The filters the configuration needs.
pub fn kernel_filters(cfg: &CanConfig, pipeline: &Pipeline) -> Vec<Filter> {
    let mut out = Vec::new();
    let ext = |id: u32, source: Option<u8>| {
        let pdu1 = (id >> 16) & 0xFF < 240;
        let mut mask = if pdu1 { PGN_MASK_PDU1 } else { PGN_MASK_PDU2 };
        let mut id = id & 0x1FFF_FFFF;
        if let Some(sa) = source {
            mask |= 0xFF;
            id = (id & !0xFF) | u32::from(sa);
        }
        Filter {
            id: id | CAN_EFF_FLAG,
            mask: mask | CAN_EFF_FLAG | CAN_RTR_FLAG,
        }
    };
    match cfg.mode {
        Mode::J1939 => {
            out.push(ext(PGN_EEC1 << 8, cfg.source_address));
            for pgn in pipeline.parameter_groups() {
                let f = ext(pgn << 8, cfg.source_address);
                if !out.contains(&f) {
                    out.push(f);
                }
            }
        }
        Mode::Obd2 => out.push(Filter {
            id: 0x7E8,
            mask: 0x7F8 | CAN_EFF_FLAG | CAN_RTR_FLAG,
        }),
    }
    let dm1: Vec<u8> = pipeline.faults().keys().copied().collect();
    for &sa in &dm1 {
        out.push(ext(PGN_DM1 << 8, Some(sa)));
    }
    if pipeline.reads_tp() {
        // Every TP.CM and TP.DT, to any destination: a session between two other nodes counts.
        // From the senders read: `source_address` (any when unset) and the DM1 sources.
        let mut senders: Vec<Option<u8>> = Vec::new();
        if pipeline.reads_long_dbc() {
            senders.push(cfg.source_address);
        }
        if !senders.contains(&None) {
            senders.extend(dm1.iter().map(|&sa| Some(sa)));
        }
        for sa in senders {
            for pgn in [PGN_TP_CM, PGN_TP_DT] {
                let f = ext(pgn << 8, sa);
                if !out.contains(&f) {
                    out.push(f);
                }
            }
        }
    }
    for (id, extended) in pipeline.dbc_ids() {
        let f = if extended {
            ext(id, None)
        } else {
            Filter {
                id,
                mask: 0x7FF | CAN_EFF_FLAG | CAN_RTR_FLAG,
            }
        };
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

/// Would this filter let `id` through? (What the kernel computes.)
pub fn passes(f: &Filter, id: u32, extended: bool) -> bool {
    let word = if extended { id | CAN_EFF_FLAG } else { id };
    word & f.mask == f.id & f.mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eec1_from_any_source_only() {
        let cfg = CanConfig::default();
        let p = Pipeline::new(&cfg, None, std::time::Duration::from_secs(1)).unwrap();
        let f = kernel_filters(&cfg, &p);
        assert_eq!(f.len(), 1);
        assert!(passes(&f[0], 0x0CF0_0400, true));
        assert!(passes(&f[0], 0x18F0_04EE, true));
        assert!(!passes(&f[0], 0x0CF0_0300, true));
        assert!(!passes(&f[0], 0x400, false));
        let cfg = CanConfig {
            source_address: Some(0x17),
            ..CanConfig::default()
        };
        let f = kernel_filters(&cfg, &p);
        assert!(passes(&f[0], 0x0CF0_0417, true) && !passes(&f[0], 0x0CF0_0400, true));
    }

    /// The built-in parameters add their groups: EEC2 (PGN 61443 = 0xF003) once for its two
    /// parameters, ET1 (65262 = 0xFEEE); nothing else gets through.
    #[test]
    fn parameters_add_their_groups() {
        let cfg: CanConfig =
            toml::from_str("parameters = [\"engine:load\", \"engine:accelerator_pedal\", \"engine:coolant_temp\"]")
                .unwrap();
        let p = Pipeline::new(&cfg, None, std::time::Duration::from_secs(1)).unwrap();
        let f = kernel_filters(&cfg, &p);
        assert_eq!(f.len(), 3, "{f:?}");
        let any = |id: u32| f.iter().any(|x| passes(x, id, true));
        // Priority 3 and 6, any source address.
        assert!(any(0x0CF0_0300) && any(0x18F0_0321));
        assert!(any(0x18FE_EE00) && any(0x18FE_EE31));
        assert!(any(0x0CF0_0400));
        // CCVS (0xFEF1) was not asked for.
        assert!(!any(0x18FE_F100));
    }

    /// A DBC message over 8 bytes needs the transport protocol: TP.CM (PGN 0xEC00) and TP.DT
    /// (0xEB00) to any destination, besides the message's own PGN.
    #[test]
    fn long_dbc_messages_let_the_transport_protocol_through() {
        let dbc = crate::dbc::Dbc::parse("BO_ 2566852608 LONG: 20 E\n SG_ S : 144|16@1+ (1,0) [0|0] \"\" X\n").unwrap();
        let cfg: CanConfig = toml::from_str("signals = [\"S\"]").unwrap();
        let p = Pipeline::new(&cfg, Some(&dbc), std::time::Duration::from_secs(1)).unwrap();
        assert!(p.reads_tp());
        let f = kernel_filters(&cfg, &p);
        let any = |id: u32| f.iter().any(|x| passes(x, id, true));
        // BAM from 0x00, RTS to 0x17, CTS from 0x17, and the data packets.
        assert!(any(0x1CEC_FF00) && any(0x1CEC_1700) && any(0x1CEC_0017));
        assert!(any(0x1CEB_FF00) && any(0x1CEB_1703));
        assert!(any(0x18FF_1000));
        // An 8-byte message does not.
        let dbc = crate::dbc::Dbc::parse("BO_ 2566852608 SHORT: 8 E\n SG_ S : 0|16@1+ (1,0) [0|0] \"\" X\n").unwrap();
        let p = Pipeline::new(&cfg, Some(&dbc), std::time::Duration::from_secs(1)).unwrap();
        assert!(!p.reads_tp());
        assert!(!kernel_filters(&cfg, &p).iter().any(|x| passes(x, 0x1CEC_FF00, true)));
    }

    /// DM1 sources: their DM1 (PGN 65226 = 0xFECA) and their transport protocol sessions, from
    /// them only, besides EEC1 from any source.
    #[test]
    fn dm1_sources_let_their_dm1_and_sessions_through() {
        let cfg: CanConfig = toml::from_str("dm1_sources = [0, 3]").unwrap();
        let p = Pipeline::new(&cfg, None, std::time::Duration::from_secs(1)).unwrap();
        let f = kernel_filters(&cfg, &p);
        let any = |id: u32| f.iter().any(|x| passes(x, id, true));
        assert!(any(0x18FE_CA00) && any(0x18FE_CA03) && !any(0x18FE_CA17));
        assert!(any(0x1CEC_FF00) && any(0x1CEB_FF03) && !any(0x1CEC_FF17));
        assert!(any(0x0CF0_0417));
    }
}
