//! The latest value of every (device, metric) and how it is drawn: a plain text table whose
//! rows are sorted by device and metric, with a sparkline of the recent numeric values.

use std::collections::{BTreeMap, VecDeque};

use tolomeo_proto::senml::{Resolved, ResolvedValue};

use crate::text;

/// How many recent values a sparkline shows.
pub(crate) const HISTORY: usize = 24;

/// One row: the latest reading of one metric of one device.
#[derive(Debug, Clone)]
struct Row {
    unit: Option<String>,
    value: Option<ResolvedValue>,
    time: f64,
    history: VecDeque<f64>,
}

/// Latest values, keyed by (device serial, metric id).
#[derive(Debug, Default)]
pub(crate) struct Latest {
    rows: BTreeMap<(String, String), Row>,
}

impl Latest {
    /// Takes one resolved record. An older reading than the one shown does not replace it.
    pub(crate) fn update(&mut self, r: &Resolved) {
        let (device, metric) = text::split_name(&r.name);
        let row = self
            .rows
            .entry((device.to_string(), metric.to_string()))
            .or_insert_with(|| Row {
                unit: None,
                value: None,
                time: f64::NEG_INFINITY,
                history: VecDeque::new(),
            });
        if let Some(ResolvedValue::Number(x)) = r.value {
            if row.history.len() == HISTORY {
                row.history.pop_front();
            }
            row.history.push_back(x);
        }
        if r.time >= row.time {
            row.unit.clone_from(&r.unit);
            row.value.clone_from(&r.value);
            row.time = r.time;
        }
    }

    /// How many rows.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// The table as lines (header first), ages computed against `now` (Unix seconds).
    pub(crate) fn render(&self, now: f64) -> Vec<String> {
        let header = ["DEVICE", "METRIC", "VALUE", "UNIT", "AGE", "TREND"].map(String::from);
        let mut cells = vec![header];
        for ((device, metric), row) in &self.rows {
            let history: Vec<f64> = row.history.iter().copied().collect();
            cells.push([
                if device.is_empty() { "-".into() } else { device.clone() },
                metric.clone(),
                text::value_text(row.value.as_ref()),
                row.unit.clone().unwrap_or_default(),
                text::age(now - row.time),
                text::sparkline(&history),
            ]);
        }
        let mut widths = [0usize; 6];
        for line in &cells {
            for (w, c) in widths.iter_mut().zip(line) {
                *w = (*w).max(c.chars().count());
            }
        }
        cells
            .iter()
            .map(|line| {
                let mut out = String::new();
                for (i, (c, w)) in line.iter().zip(widths).enumerate() {
                    let pad = w.saturating_sub(c.chars().count());
                    match i {
                        // Values and ages are right-aligned, like `top`.
                        2 | 4 => out.push_str(&format!("{}{c}  ", " ".repeat(pad))),
                        5 => out.push_str(c),
                        _ => out.push_str(&format!("{c}{}  ", " ".repeat(pad))),
                    }
                }
                out.trim_end().to_string()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(name: &str, unit: &str, v: f64, time: f64) -> Resolved {
        Resolved {
            name: name.into(),
            unit: Some(unit.into()),
            value: Some(ResolvedValue::Number(v)),
            sum: None,
            time,
            update_time: None,
        }
    }

    #[test]
    fn keeps_the_latest_value_and_a_history() {
        let mut t = Latest::default();
        let name = "urn:cpt:device:sn:SN1:cpu:total";
        for (i, v) in [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0].into_iter().enumerate() {
            t.update(&num(name, "%", v, 100.0 + i as f64));
        }
        t.update(&num("urn:cpt:device:sn:SN1:mem:used", "B", 523_190_272.0, 105.0));
        let lines = t.render(110.0);
        assert_eq!(t.len(), 2);
        assert_eq!(lines[0], "DEVICE  METRIC         VALUE  UNIT   AGE  TREND");
        assert_eq!(lines[1], "SN1     cpu:total          8  %     3.0s  ▁▂▃▄▅▆▇█");
        assert_eq!(lines[2], "SN1     mem:used   523190272  B     5.0s  ▄");
    }

    #[test]
    fn an_older_reading_does_not_replace_a_newer_one() {
        let mut t = Latest::default();
        t.update(&num("urn:cpt:device:sn:SN1:a:b", "", 2.0, 200.0));
        t.update(&num("urn:cpt:device:sn:SN1:a:b", "", 1.0, 100.0));
        assert!(t.render(200.0)[1].contains("  2  "));
    }
}
