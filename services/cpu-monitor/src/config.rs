//! The `[cpu]` configuration section: which metric groups are published, and which mounts,
//! interfaces and sensors. Defaults are defined here, once, in the `Default` impls.
//!
//! The section is named after the service's first group (`cpu`, as in `cpu-monitor`); it
//! holds every group, with `[cpu.disk]`, `[cpu.net]` and `[cpu.temp]` for the groups that
//! take a list.

use serde::{Deserialize, Serialize};
use tolomeo_core::config::{PluginConfig, Problem};

use crate::names::is_valid_label;

/// `[cpu]`: the metric groups. Every group is on by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpuConfig {
    /// `cpu:total`: use of all cores, 0 to 100 %.
    pub total: bool,
    /// `cpu:core<N>`: use of each core, 0 to 100 %.
    pub per_core: bool,
    /// `cpu:load1`, `cpu:load5`, `cpu:load15`: load averages.
    pub load: bool,
    /// `mem:total`, `mem:used`, `mem:available` (bytes), `mem:percent`.
    pub mem: bool,
    /// `swap:used` (bytes), `swap:percent`; published only while the system has swap.
    pub swap: bool,
    /// `sys:uptime` in seconds.
    pub uptime: bool,
    /// `proc:count`: number of processes.
    pub proc: bool,
    /// `[cpu.disk]`: `disk:<label>:used|total|percent`.
    pub disk: DiskConfig,
    /// `[cpu.net]`: `net:<iface>:rx_bytes|tx_bytes`.
    pub net: NetConfig,
    /// `[cpu.temp]`: `temp:<sensor>`.
    pub temp: TempConfig,
}

impl Default for CpuConfig {
    fn default() -> Self {
        CpuConfig {
            total: true,
            per_core: true,
            load: true,
            mem: true,
            swap: true,
            uptime: true,
            proc: true,
            disk: DiskConfig::default(),
            net: NetConfig::default(),
            temp: TempConfig::default(),
        }
    }
}

/// `[cpu.disk]`: file systems, by mount point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskConfig {
    /// Publish the disk group at all.
    pub enabled: bool,
    /// The mount points to publish. Setting this replaces the default list
    /// (`/` as `root`, and `/data` as `data` when it is a mount point).
    pub mounts: Vec<Mount>,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            enabled: true,
            mounts: vec![
                Mount {
                    path: "/".into(),
                    label: "root".into(),
                    optional: false,
                },
                Mount {
                    path: "/data".into(),
                    label: "data".into(),
                    optional: true,
                },
            ],
        }
    }
}

/// One mount point: `{ path = "/data", label = "data" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// An absolute path; it is measured while it is a mount point (the root of a mounted file system).
    pub path: String,
    /// The `<label>` in `disk:<label>:...`: 1 to 64 of `A-Z a-z 0-9 _ . -`.
    pub label: String,
    /// When true, its absence is normal and logged at debug level, not as a warning.
    #[serde(default)]
    pub optional: bool,
}

/// `[cpu.net]`: network interfaces, by kernel name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetConfig {
    /// Publish the net group at all.
    pub enabled: bool,
    /// Interfaces to publish (kernel names; `eth*` matches a prefix). Empty: all of them.
    pub interfaces: Vec<String>,
    /// Interfaces never published, even when listed in `interfaces`.
    pub exclude: Vec<String>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            enabled: true,
            interfaces: Vec::new(),
            exclude: vec!["lo".into()],
        }
    }
}

/// `[cpu.temp]`: temperature sensors, by their label as published (`temp:<label>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TempConfig {
    /// Publish the temp group at all.
    pub enabled: bool,
    /// Sensors to publish (labels as published; `cpu*` matches a prefix). Empty: all of them.
    pub sensors: Vec<String>,
    /// Sensors never published, even when listed in `sensors`.
    pub exclude: Vec<String>,
}

impl Default for TempConfig {
    fn default() -> Self {
        TempConfig {
            enabled: true,
            sensors: Vec::new(),
            exclude: Vec::new(),
        }
    }
}

impl PluginConfig for CpuConfig {
    const SECTION: &'static str = "cpu";
}

impl CpuConfig {
    /// Every problem beyond types (paths, labels, name patterns), keys relative to `[cpu]`.
    /// [`crate::build`] checks with it before it constructs the plugin.
    pub(crate) fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for (i, m) in self.disk.mounts.iter().enumerate() {
            if !m.path.starts_with('/') {
                out.push(Problem::new(
                    format!("disk.mounts[{i}].path"),
                    format!(
                        "{:?} is not an absolute path; expected a mount point such as \"/data\"",
                        m.path
                    ),
                ));
            }
            if !is_valid_label(&m.label) {
                out.push(Problem::new(
                    format!("disk.mounts[{i}].label"),
                    format!(
                        "{:?} is not a valid label; expected 1 to 64 of A-Z a-z 0-9 _ . - (it becomes disk:<label>:used)",
                        m.label
                    ),
                ));
            }
            if self.disk.mounts[..i].iter().any(|o| o.label == m.label) {
                out.push(Problem::new(
                    format!("disk.mounts[{i}].label"),
                    format!("{:?} is used by an earlier mount; expected a unique label", m.label),
                ));
            }
        }
        let lists = [
            ("net.interfaces", &self.net.interfaces),
            ("net.exclude", &self.net.exclude),
            ("temp.sensors", &self.temp.sensors),
            ("temp.exclude", &self.temp.exclude),
        ];
        for (key, list) in lists {
            for (i, p) in list.iter().enumerate() {
                if p.is_empty() || p.trim() != p || p[..p.len() - 1].contains('*') {
                    out.push(Problem::new(
                        format!("{key}[{i}]"),
                        format!("{p:?} is not a name pattern; expected a name, or a prefix followed by one `*`"),
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tolomeo_core::Config;

    fn parse(text: &str) -> Result<Config<CpuConfig>, tolomeo_core::ConfigError> {
        Config::<CpuConfig>::from_toml(text, "test.toml")
    }

    /// Read, check and build, as the service does; the error.
    fn refused(text: &str) -> tolomeo_core::ConfigError {
        let ctx = tolomeo_core::BuildContext::new(std::time::Duration::from_secs(10));
        match parse(text).and_then(|c| c.build("test.toml", &ctx, crate::build)) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e,
        }
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.plugin, CpuConfig::default());
        assert_eq!(c.plugin.disk.mounts[0].path, "/");
        assert_eq!(c.plugin.net.exclude, ["lo"]);
    }

    #[test]
    fn groups_and_lists_are_read() {
        let c = parse(
            "[cpu]\nper_core = false\n[cpu.disk]\nmounts = [{ path = \"/var\", label = \"var\" }]\n\
             [cpu.net]\ninterfaces = [\"eth*\"]\n[cpu.temp]\nenabled = false\n",
        )
        .unwrap()
        .plugin;
        assert!(!c.per_core && c.total && !c.temp.enabled);
        assert_eq!(c.disk.mounts.len(), 1);
        assert_eq!(c.disk.mounts[0].label, "var");
        assert_eq!(c.net.interfaces, ["eth*"]);
        assert_eq!(c.net.exclude, ["lo"], "other keys keep their defaults");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let e = refused(
            "[cpu.disk]\nmounts = [{ path = \"data\", label = \"my data\" }, { path = \"/x\", label = \"my data\" }]\n\
             [cpu.net]\nexclude = [\"\"]\n",
        );
        assert_eq!(e.source, "test.toml");
        let keys: Vec<_> = e.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "cpu.disk.mounts[0].path",
                "cpu.disk.mounts[0].label",
                "cpu.disk.mounts[1].label",
                "cpu.disk.mounts[1].label",
                "cpu.net.exclude[0]"
            ]
        );
    }

    #[test]
    fn unknown_keys_and_bad_types_name_the_key() {
        let e = parse("[cpu]\npercore = false\n").unwrap_err();
        assert!(e.to_string().contains("percore"), "{e}");
        let e = parse("[cpu.net]\nenabled = \"yes\"\n").unwrap_err();
        assert_eq!(e.problems[0].key, "cpu.net.enabled", "{e}");
    }
}
