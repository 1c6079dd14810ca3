//! One point per poll period from a 10 to 100 Hz signal.
//!
//! Windows are aligned to the frames' own clock: a value at time `t` belongs to window
//! `floor(t / period)`. A window closes when the first value of a later window arrives (or on
//! [`Aggregator::flush`], when the bus is quiet), and is published at the timestamp of its last
//! value. The same frames thus give the same points whatever the replay speed.

use std::time::Duration;

use tolomeo_core::Reading;

use crate::config::{Aggregate, Stat};

#[derive(Debug, Clone, Copy)]
struct Window {
    key: i64,
    sum: f64,
    count: u64,
    min: f64,
    max: f64,
    last: f64,
    last_t: f64,
}

/// The aggregation state of one metric.
#[derive(Debug)]
pub struct Aggregator {
    mode: Aggregate,
    min: bool,
    max: bool,
    period_s: f64,
    window: Option<Window>,
}

impl Aggregator {
    /// An aggregator publishing `mode` and the extra `stats` every `period`.
    pub fn new(mode: Aggregate, stats: &[Stat], period: Duration) -> Self {
        let none = mode == Aggregate::None;
        Aggregator {
            mode,
            min: !none && stats.contains(&Stat::Min),
            max: !none && stats.contains(&Stat::Max),
            period_s: period.as_secs_f64().max(0.001),
            window: None,
        }
    }

    /// Every value is published as it comes.
    pub fn is_none(&self) -> bool {
        self.mode == Aggregate::None
    }

    /// Suffixes of the extra metrics (`max`, `min`).
    pub fn stat_suffixes(&self) -> impl Iterator<Item = &'static str> {
        [(self.max, "max"), (self.min, "min")]
            .into_iter()
            .filter_map(|(on, s)| on.then_some(s))
    }

    /// New window length; the open window is closed first.
    pub fn set_period(&mut self, period: Duration, name: &str, out: &mut Vec<Reading>) {
        self.flush(name, out);
        self.period_s = period.as_secs_f64().max(0.001);
    }

    /// Add a value at `t`; a finished window goes to `out`.
    pub fn push(&mut self, t: f64, v: f64, name: &str, out: &mut Vec<Reading>) {
        let key = (t / self.period_s).floor() as i64;
        match &mut self.window {
            Some(w) if w.key == key => {
                w.sum += v;
                w.count += 1;
                w.min = w.min.min(v);
                w.max = w.max.max(v);
                w.last = v;
                w.last_t = w.last_t.max(t);
            }
            _ => {
                self.flush(name, out);
                self.window = Some(Window {
                    key,
                    sum: v,
                    count: 1,
                    min: v,
                    max: v,
                    last: v,
                    last_t: t,
                });
            }
        }
    }

    /// Close the open window, if any.
    pub fn flush(&mut self, name: &str, out: &mut Vec<Reading>) {
        let Some(w) = self.window.take() else { return };
        let value = match self.mode {
            Aggregate::Mean => w.sum / w.count as f64,
            Aggregate::Last | Aggregate::None => w.last,
            Aggregate::Min => w.min,
            Aggregate::Max => w.max,
        };
        let mut r = Reading::at(w.last_t).with(name, value);
        if self.max {
            r.push(format!("{name}:max"), w.max);
        }
        if self.min {
            r.push(format!("{name}:min"), w.min);
        }
        out.push(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_the_frame_clock() {
        let mut a = Aggregator::new(Aggregate::Mean, &[Stat::Min, Stat::Max], Duration::from_secs(1));
        let mut out = Vec::new();
        for (t, v) in [(10.0, 1.0), (10.5, 3.0), (10.99, 5.0), (11.0, 100.0)] {
            a.push(t, v, "m", &mut out);
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].time(), 10.99);
        let vals: Vec<f64> = out[0]
            .values()
            .iter()
            .map(|(_, v)| match v {
                tolomeo_core::Value::Number(x) => *x,
                _ => f64::NAN,
            })
            .collect();
        assert_eq!(vals, [3.0, 5.0, 1.0]); // mean, max, min
        a.flush("m", &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].time(), 11.0);
    }
}
