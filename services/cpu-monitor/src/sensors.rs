//! Temperature sensors: every thermal zone and hwmon `temp*_input` the kernel exposes.
//!
//! Labels (the `<sensor>` in `temp:<sensor>`), mapped by the rule of [`crate::names`]:
//! - thermal zone `N`: its `type` (`/sys/class/thermal/thermal_zoneN/type`, e.g. `cpu-thermal`);
//! - hwmon chip: `<name>_<label>` from `hwmonN/name` and `tempM_label` (e.g. `coretemp_Core 0`
//!   becomes `coretemp_Core_0`), or `<name>_tempM` when the chip gives no label.
//!
//! Thermal zones come first (by zone number), then hwmon chips (by number, then input number).
//! Values are millidegrees Celsius in sysfs and published in `Cel`.

use std::io;
use std::path::{Path, PathBuf};

use crate::config::TempConfig;
use crate::names::{Labeler, selected};
use crate::procfs::read_into;

/// One sensor: its label and the sysfs file holding millidegrees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sensor {
    /// The `<sensor>` in `temp:<sensor>`.
    pub label: String,
    /// The sysfs file to read.
    pub path: String,
}

/// The selected sensors under `sys` (normally `/sys`).
pub fn discover(sys: &Path, cfg: &TempConfig) -> Vec<Sensor> {
    let mut labels = Labeler::new();
    let mut out = Vec::new();
    let mut buf = String::new();
    for (_, zone) in numbered(&sys.join("class/thermal"), "thermal_zone") {
        let input = zone.join("temp");
        if !input.exists() {
            continue;
        }
        let kind = read_trimmed(&zone.join("type"), &mut buf).unwrap_or_else(|| file_name(&zone));
        out.push((labels.label(&kind), input));
    }
    for (_, chip) in numbered(&sys.join("class/hwmon"), "hwmon") {
        let chip_name = read_trimmed(&chip.join("name"), &mut buf).unwrap_or_else(|| file_name(&chip));
        let mut inputs: Vec<(u64, PathBuf)> = std::fs::read_dir(&chip)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let n = name.strip_prefix("temp")?.strip_suffix("_input")?.parse().ok()?;
                Some((n, e.path()))
            })
            .collect();
        inputs.sort();
        for (n, input) in inputs {
            let label = read_trimmed(&chip.join(format!("temp{n}_label")), &mut buf).unwrap_or(format!("temp{n}"));
            out.push((labels.label(&format!("{chip_name}_{label}")), input));
        }
    }
    out.into_iter()
        .filter(|(label, _)| selected(&cfg.sensors, &cfg.exclude, label))
        .map(|(label, path)| Sensor {
            label,
            path: path.display().to_string(),
        })
        .collect()
}

/// Read a sensor file (millidegrees Celsius) and give degrees Celsius.
pub fn read_celsius(path: &str, buf: &mut String) -> io::Result<f64> {
    read_into(path, buf)?;
    parse_millidegrees(buf).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: {:?} is not a temperature in millidegrees", buf.trim()),
        )
    })
}

/// `"45000\n"` -> 45.0.
pub fn parse_millidegrees(text: &str) -> Option<f64> {
    text.trim().parse::<i64>().ok().map(|m| m as f64 / 1000.0)
}

/// Entries `<prefix><N>` of `dir`, sorted by N.
fn numbered(dir: &Path, prefix: &str) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.strip_prefix(prefix)?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    v.sort();
    v
}

fn read_trimmed(path: &Path, buf: &mut String) -> Option<String> {
    read_into(path.to_str()?, buf).ok()?;
    let t = buf.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A sysfs-shaped tree in a temp dir.
    fn fake_sys() -> PathBuf {
        let root = std::env::temp_dir().join(format!(
            "cpu-monitor-sys-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&root);
        let w = |p: &str, text: &str| {
            let p = root.join(p);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        };
        w("class/thermal/thermal_zone10/type", "gpu-thermal\n");
        w("class/thermal/thermal_zone10/temp", "51000\n");
        w("class/thermal/thermal_zone2/type", "cpu-thermal\n");
        w("class/thermal/thermal_zone2/temp", "45500\n");
        w("class/thermal/cooling_device0/type", "fan\n");
        w("class/hwmon/hwmon0/name", "coretemp\n");
        w("class/hwmon/hwmon0/temp1_input", "40000\n");
        w("class/hwmon/hwmon0/temp1_label", "Package id 0\n");
        w("class/hwmon/hwmon0/temp2_input", "-5000\n");
        w("class/hwmon/hwmon1/name", "cpu-thermal\n");
        w("class/hwmon/hwmon1/temp1_input", "45500\n");
        root
    }

    #[test]
    fn zones_and_hwmon_inputs_are_found_and_labelled() {
        let sys = fake_sys();
        let found = discover(&sys, &TempConfig::default());
        let labels: Vec<_> = found.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "cpu-thermal",
                "gpu-thermal",
                "coretemp_Package_id_0",
                "coretemp_temp2",
                "cpu-thermal_temp1"
            ]
        );
        let mut buf = String::new();
        assert_eq!(read_celsius(&found[0].path, &mut buf).unwrap(), 45.5);
        assert_eq!(read_celsius(&found[3].path, &mut buf).unwrap(), -5.0);
        fs::remove_dir_all(sys).unwrap();
    }

    #[test]
    fn selection_applies_to_labels() {
        let sys = fake_sys();
        let cfg = TempConfig {
            sensors: vec!["coretemp*".into()],
            exclude: vec!["coretemp_temp2".into()],
            ..TempConfig::default()
        };
        let labels: Vec<_> = discover(&sys, &cfg).into_iter().map(|s| s.label).collect();
        assert_eq!(labels, ["coretemp_Package_id_0"]);
        fs::remove_dir_all(sys).unwrap();
    }

    #[test]
    fn no_sysfs_means_no_sensor() {
        assert!(discover(Path::new("/no/such/sys"), &TempConfig::default()).is_empty());
    }

    #[test]
    fn millidegrees_parse() {
        assert_eq!(parse_millidegrees("45000\n"), Some(45.0));
        assert_eq!(parse_millidegrees("x"), None);
    }
}
