//! What the benchmarks measure of a running cpu-monitor: heartbeat intervals and `Ping` round
//! trips, and how they are printed. Numbers for BENCHMARKS.md, never assertions.

use std::time::{Duration, Instant};

use tolomeo_testkit::Recorder;

/// The `p`th percentile (0 to 100) of `xs`, nearest rank.
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// What one service showed: heartbeat intervals and Ping round trips, in ms.
pub struct Seen {
    pub intervals: Vec<f64>,
    pub pings: Vec<f64>,
    pub ping_timeouts: usize,
    /// Requests refused at once: nobody subscribed (the service not connected).
    pub no_responders: usize,
}

/// Ping `client`'s cpu-monitor every 200 ms until `until`, and keep its heartbeats' intervals.
pub async fn measure(client: async_nats::Client, until: Instant) -> Seen {
    let beats = Recorder::start(&client, "heartbeat.cpu-monitor.service").await;
    let mut pings = Vec::new();
    let mut ping_timeouts = 0;
    let mut no_responders = 0;
    while Instant::now() < until {
        let sent = Instant::now();
        let req = client.request(
            "commands.cpu-monitor.req",
            bytes::Bytes::from_static(br#"[{"n":"Ping"}]"#),
        );
        match tokio::time::timeout(Duration::from_secs(5), req).await {
            Ok(Ok(_)) => pings.push(sent.elapsed().as_secs_f64() * 1e3),
            Ok(Err(_)) => no_responders += 1,
            Err(_) => ping_timeouts += 1,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let at: Vec<Instant> = beats.messages().iter().map(|m| m.at).collect();
    let intervals = at.windows(2).map(|w| (w[1] - w[0]).as_secs_f64() * 1e3).collect();
    Seen {
        intervals,
        pings,
        ping_timeouts,
        no_responders,
    }
}

/// p50 / p99 / max, or "none" when nothing arrived.
fn spread(xs: &[f64], digits: usize) -> String {
    if xs.is_empty() {
        return "none".to_string();
    }
    let max = xs.iter().copied().fold(f64::MIN, f64::max);
    format!(
        "{:.digits$} / {:.digits$} / {max:.digits$}",
        percentile(xs, 50.0),
        percentile(xs, 99.0)
    )
}

/// A Markdown table, one row per service.
pub fn print_table(rows: &[(&str, &Seen)]) {
    println!(
        "| cpu-monitor | heartbeat interval p50 / p99 / max (ms) | Ping p50 / p99 / max (ms) | Ping timeouts (5 s) | Pings answered | refused (not connected) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, s) in rows {
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            spread(&s.intervals, 0),
            spread(&s.pings, 1),
            s.ping_timeouts,
            s.pings.len(),
            s.no_responders
        );
    }
}
