//! The real binary against a private nats-server; every value is checked against the same
//! kernel source read here, independently of the service.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tolomeo_testkit::{NatsServer, Recorder, call};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_values_match_the_kernel() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let data = Recorder::start(&client, "events.data").await;
    let params = Recorder::start(&client, "events.params").await;
    let ifaces_before = interfaces();
    // Keep one core busy through the first sample: the first cpu:total must show it, which a
    // value taken without the minimum interval (0, or the average since boot) would not.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spin = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        })
    };
    let (mut svc, _c) = start(&nats, "values", "", &["--poll-time-ms", "300"]).await;
    let msgs = data
        .wait_until("3 data packs", Duration::from_secs(10), |m| m.len() >= 3)
        .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    spin.join().unwrap();

    let first = pack_values(&msgs[0]);
    let cpu_total = first["cpu:total"].0;
    assert!(
        (25.0..=100.0).contains(&cpu_total),
        "first cpu:total {cpu_total} shows the core kept busy by the test"
    );

    let last = pack_values(msgs.last().unwrap());
    let declared = announced(params.messages().last().expect("an events.params announcement"));
    for name in last.keys() {
        assert!(declared.contains_key(name), "{name} is published and declared");
    }
    let unit = |n: &str| last[n].1.as_deref();
    let value = |n: &str| last.get(n).unwrap_or_else(|| panic!("{n} is published: {last:?}")).0;

    // CPU: one cpu:core<N> per online CPU, percentages.
    let cores: Vec<_> = last.keys().filter(|n| n.starts_with("cpu:core")).collect();
    assert_eq!(cores.len(), online_cpus(), "{cores:?}");
    for n in cores.iter().map(|s| s.as_str()).chain(["cpu:total"]) {
        assert_eq!(unit(n), Some("%"));
        assert!((0.0..=100.0).contains(&value(n)), "{n} = {}", value(n));
    }
    for n in ["cpu:load1", "cpu:load5", "cpu:load15"] {
        assert_eq!(unit(n), None, "load has no unit");
        assert!(value(n) >= 0.0);
    }

    // Memory: MemTotal x 1024, used = total - available.
    assert_eq!(value("mem:total"), meminfo("MemTotal") as f64);
    assert_eq!(value("mem:used"), value("mem:total") - value("mem:available"));
    let avail_now = meminfo("MemAvailable") as f64;
    assert!((value("mem:available") - avail_now).abs() < 512.0 * 1024.0 * 1024.0);
    let pct = value("mem:used") / value("mem:total") * 100.0;
    assert!((value("mem:percent") - pct).abs() <= 0.01, "mem:percent is used/total");
    for n in ["mem:total", "mem:used", "mem:available"] {
        assert_eq!(unit(n), Some("B"));
    }
    let has_swap = meminfo("SwapTotal") > 0;
    assert_eq!(last.contains_key("swap:used"), has_swap, "swap:* only when swap exists");
    assert_eq!(last.contains_key("swap:percent"), has_swap);

    // Disk: the root file system against df.
    assert_eq!(value("disk:root:total"), df("size", "/"));
    assert!((value("disk:root:used") - df("used", "/")).abs() < 1024.0 * 1024.0 * 1024.0);
    assert_eq!(unit("disk:root:percent"), Some("%"));

    // Network: every interface but lo, counters that only grew since the test read them.
    let net: Vec<_> = last.keys().filter(|n| n.starts_with("net:")).cloned().collect();
    assert_eq!(net.len(), 2 * ifaces_before.len(), "{net:?} vs {ifaces_before:?}");
    for (name, (rx, tx)) in &ifaces_before {
        assert!(value(&format!("net:{name}:rx_bytes")) >= *rx);
        assert!(value(&format!("net:{name}:tx_bytes")) >= *tx);
        assert_eq!(declared[&format!("net:{name}:rx_bytes")], 1, "INCREMENTAL");
    }
    assert!(!last.keys().any(|n| n.starts_with("net:lo:")));

    // The rest.
    assert!((value("sys:uptime") - uptime()).abs() < 10.0);
    assert_eq!(unit("sys:uptime"), Some("s"));
    assert_eq!(declared["sys:uptime"], 1, "INCREMENTAL");
    assert!((value("proc:count") - proc_count()).abs() <= 30.0);
    let temps = last.keys().filter(|n| n.starts_with("temp:")).count();
    assert_eq!(temps, temperature_inputs(), "one temp:<sensor> per kernel sensor");

    assert_eq!(svc.terminate(Duration::from_secs(10)), Some(0), "log:\n{}", svc.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_reads_now_and_health_follows_proc() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let hb = Recorder::start(&client, "heartbeat.cpu-monitor.service").await;
    let data = Recorder::start(&client, "events.data").await;
    // A poll period of an hour: whatever GetSnapshot answers was read for it.
    let (mut svc, client) = start(
        &nats,
        "snapshot",
        "[service]\nheartbeat_interval_ms = 200\n",
        &["--poll-time-ms", "3600000"],
    )
    .await;
    let snap = call(&client, SERVICE, "GetSnapshot", json!({})).await;
    let metrics = snap["metrics"]
        .as_object()
        .unwrap_or_else(|| panic!("metrics object: {snap}"));
    assert_eq!(
        metrics["mem:total"],
        json!({"value": meminfo("MemTotal") as f64, "unit": "B"})
    );
    assert_eq!(metrics["disk:root:total"]["value"].as_f64(), Some(df("size", "/")));
    let cores = metrics.keys().filter(|k| k.starts_with("cpu:core")).count();
    assert_eq!(cores, online_cpus());
    assert_eq!(metrics["cpu:load1"]["unit"], "");
    assert!(
        data.is_empty(),
        "nothing was published: the snapshot did not wait for a poll"
    );

    let declared = call(&client, SERVICE, "GetMetrics", json!({})).await;
    let ids: Vec<&str> = declared["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for k in metrics.keys() {
        assert!(ids.contains(&k.as_str()), "{k} is declared");
    }

    let status = call(&client, SERVICE, "GetStatus", json!({})).await;
    assert_eq!(status["healthy"], true, "{status}");
    hb.wait_until("heartbeats", Duration::from_secs(5), |m| m.len() >= 2)
        .await;
    assert_eq!(svc.terminate(Duration::from_secs(10)), Some(0), "log:\n{}", svc.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_switch_off_and_missing_sources_warn_once() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let data = Recorder::start(&client, "events.data").await;
    let config = "[cpu]\nper_core = false\nload = false\nproc = false\n\
                  [cpu.disk]\nmounts = [{ path = \"/\", label = \"root\" }, { path = \"/no/such/mount\", label = \"gone\" }]\n\
                  [cpu.net]\ninterfaces = [\"nosuch0\"]\n[cpu.temp]\nenabled = false\n";
    let (mut svc, _c) = start(&nats, "groups", config, &["--poll-time-ms", "200"]).await;
    let msgs = data
        .wait_until("4 data packs", Duration::from_secs(10), |m| m.len() >= 4)
        .await;
    let names: Vec<String> = pack_values(msgs.last().unwrap()).into_keys().collect();
    let expected = [
        "cpu:total",
        "disk:root:percent",
        "disk:root:total",
        "disk:root:used",
        "mem:available",
        "mem:percent",
        "mem:total",
        "mem:used",
        "sys:uptime",
    ];
    let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    if meminfo("SwapTotal") > 0 {
        expected.extend(["swap:percent".to_string(), "swap:used".to_string()]);
        expected.sort();
    }
    assert_eq!(names, expected);
    let log = svc.log();
    assert_eq!(
        log.matches("/no/such/mount: is not a mount point (").count(),
        1,
        "warned once:\n{log}"
    );
    assert_eq!(
        log.matches("interface nosuch0: is not present").count(),
        1,
        "warned once:\n{log}"
    );
    assert_eq!(svc.terminate(Duration::from_secs(10)), Some(0), "log:\n{log}");
}

/// Unmounts on drop, whatever the test did.
struct TmpMount(std::path::PathBuf);
impl Drop for TmpMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.0)
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn mount_tmpfs(dir: &std::path::Path) -> bool {
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A mount point that appears and disappears at run time: announced and published while
/// mounted, gone from both (with one warning) when unmounted. Needs permission to mount a
/// tmpfs (root); skipped otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_that_comes_and_goes_is_announced_and_published() {
    let dir = std::env::temp_dir().join(format!("cpu-monitor-mnt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let guard = TmpMount(dir.clone());
    if !mount_tmpfs(&dir) {
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
        return;
    }
    let _ = std::process::Command::new("umount").arg(&dir).status();

    let nats = NatsServer::start();
    let client = nats.client().await;
    let data = Recorder::start(&client, "events.data").await;
    let params = Recorder::start(&client, "events.params").await;
    let config = format!(
        "[cpu]\nper_core = false\n[cpu.disk]\nmounts = [{{ path = \"{}\", label = \"scratch\" }}]\n\
         [cpu.net]\nenabled = false\n[cpu.temp]\nenabled = false\n",
        dir.display()
    );
    let (mut svc, _c) = start(&nats, "mount", &config, &["--poll-time-ms", "200"]).await;
    data.wait_until("2 packs", Duration::from_secs(10), |m| m.len() >= 2)
        .await;
    let has = |m: &tolomeo_testkit::Received| pack_values(m).contains_key("disk:scratch:total");
    assert!(!data.messages().iter().any(has), "not mounted: not published");

    assert!(mount_tmpfs(&dir), "mount again");
    let t0 = Instant::now();
    let msgs = data
        .wait_until("disk:scratch published", Duration::from_secs(10), |m| m.iter().any(has))
        .await;
    let pack = pack_values(msgs.iter().find(|m| has(m)).unwrap());
    // size=1m: 1 MiB, written out.
    assert_eq!(pack["disk:scratch:total"].0, 1024.0 * 1024.0);
    let last_params = params.messages().last().map(announced).unwrap_or_default();
    assert!(
        last_params.contains_key("disk:scratch:used"),
        "re-announced: {last_params:?}"
    );
    let _ = std::process::Command::new("umount").arg(&dir).status();
    let n = data.len();
    data.wait_until("3 packs after the unmount", Duration::from_secs(10), |m| {
        m.len() >= n + 3
    })
    .await;
    let after: Vec<BTreeMap<_, _>> = data.messages()[n + 1..].iter().map(pack_values).collect();
    assert!(
        after.iter().all(|p| !p.contains_key("disk:scratch:total")),
        "gone after unmount"
    );
    let last_params = announced(params.messages().last().unwrap());
    assert!(
        !last_params.contains_key("disk:scratch:used"),
        "re-announced without it"
    );
    let log = svc.log();
    assert_eq!(log.matches("is back;").count(), 1, "back once: {log}");
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert_eq!(svc.terminate(Duration::from_secs(10)), Some(0), "log:\n{log}");
    drop(guard);
}
