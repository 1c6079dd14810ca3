//! The three services as the device runs them: their units from packaging/systemd under
//! systemd 252 in a Debian guest, installed the way the packages install them (users from
//! sysusers.d, /etc/default/tolomeo, /etc/tolomeo/*.toml), with Debian's nats-server in the
//! guest (see src/lib.rs). Run with `cargo xtask system-test`.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tolomeo_system_tests::{Vm, workspace};
use tolomeo_testkit::{Received, Recorder, free_port, records};

const SERIAL: &str = "SN-SYSTEMD";
/// cangen's arguments for an EEC1 frame: engine speed bytes 4-5 = 0x177C, 6012 x 0.125 rpm.
const EEC1: &str = "-e -I 0CF00400 -L 8 -D F188877C17FFF0FF";

/// A property of a unit (`systemctl show -p`).
async fn show(vm: &mut Vm, unit: &str, property: &str) -> String {
    vm.ok(&format!("systemctl show -p {property} --value {unit}"))
        .await
        .trim()
        .to_string()
}

/// The journal of a unit.
async fn journal(vm: &mut Vm, unit: &str) -> String {
    vm.ok(&format!("journalctl -q --no-pager -o cat -u {unit}")).await
}

/// Set the device's serial in /etc/default/tolomeo, as an integrator does.
async fn set_serial(vm: &mut Vm) {
    vm.ok(&format!(
        "sed -i 's/^DEVICE_SERIAL_NUMBER=.*/DEVICE_SERIAL_NUMBER={SERIAL}/' /etc/default/tolomeo"
    ))
    .await;
}

/// The broker in the guest, from this machine.
async fn client(vm: &Vm) -> async_nats::Client {
    let url = format!("nats://127.0.0.1:{}", vm.broker_port());
    for _ in 0..100 {
        if let Ok(c) = async_nats::connect(&url).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the guest's nats-server is not reachable at {url}");
}

/// Names of the records of `serial` so far.
fn names(msgs: &[Received], serial: &str) -> BTreeSet<String> {
    let bn = format!("urn:cpt:device:sn:{serial}:");
    msgs.iter()
        .flat_map(|m| m.json().as_array().cloned().unwrap_or_default())
        .filter(|r| r["bn"] == bn.as_str() || r["bn"].is_null())
        .filter_map(|r| r["n"].as_str().map(String::from))
        .collect()
}

fn values(msgs: &[Received], name: &str) -> Vec<f64> {
    records(msgs, name).into_iter().map(|(_, v)| v).collect()
}

/// `systemd-analyze security` gives `unit` in the guest the exposure level the offline check
/// (`cargo xtask lint`) gives its file here.
async fn same_exposure_as_offline(vm: &mut Vm, unit: &str) {
    let online = vm
        .ok(&format!("systemd-analyze security --no-pager {unit}.service"))
        .await;
    let offline = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(workspace().join(format!("packaging/systemd/{unit}.service")))
        .output()
        .expect("systemd-analyze on this machine");
    let offline = String::from_utf8_lossy(&offline.stdout);
    let level = |s: &str| {
        s.lines()
            .rfind(|l| l.contains("Overall exposure level"))
            .and_then(|l| l.split(':').nth(1))
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
    };
    let differ = |a: &str, b: &str| -> Vec<String> {
        let b: BTreeSet<&str> = b.lines().map(str::trim_end).collect();
        a.lines()
            .map(str::trim_end)
            .filter(|l| !b.contains(l))
            .map(String::from)
            .collect()
    };
    assert_eq!(
        level(&online),
        level(&offline),
        "{unit}: only in the guest:\n{}\nonly offline:\n{}",
        differ(&online, &offline).join("\n"),
        differ(&offline, &online).join("\n")
    );
    assert!(level(&online).is_some(), "{unit}: {online}");
}

/// pymodbus's server (tests of modbus-sensors), on a TCP port or a serial line.
struct Pymodbus(Child);

impl Pymodbus {
    fn start(args: &[&str]) -> Pymodbus {
        let script = workspace().join("services/modbus-sensors/tests/pymodbus_server.py");
        let control = free_port().to_string();
        let child = Command::new(tolomeo_testkit::python())
            .arg(script)
            .args(args)
            .args(["--control", &control])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start pymodbus_server.py");
        Pymodbus(child)
    }
}

impl Drop for Pymodbus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// 5. Each unit reaches active (running) through READY=1 under its full hardening and does its
///    job there; 8. `systemd-analyze security` in the guest gives the offline check's exposure;
///    6. `systemctl stop` delivers what is held and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "boots a VM: cargo xtask system-test"]
async fn the_three_units_run_hardened_and_do_their_job() {
    let mut vm = Vm::boot_systemd().await;
    let nats = client(&vm).await;
    let data = Recorder::start(&nats, "events.data").await;
    let beats = Recorder::start(&nats, "heartbeat.>").await;

    // The devices: pymodbus on this machine, over TCP (forwarded to the guest's loopback, the
    // only address the units may reach) and over the guest's second serial port.
    let tcp_port = free_port();
    let _tcp = Pymodbus::start(&["--tcp", &tcp_port.to_string(), "--ids", "1"]);
    let pty = vm.serial_pty().display().to_string();
    let _rtu = Pymodbus::start(&["--serial", &pty, "--baud", "19200", "--ids", "1"]);
    vm.ok(&format!(
        "systemd-run -q --unit=modbus-forward socat TCP-LISTEN:1502,bind=127.0.0.1,fork,reuseaddr TCP:10.0.2.2:{tcp_port}
         ip link add vcan0 type vcan && ip link set vcan0 up"
    ))
    .await;
    set_serial(&mut vm).await;
    let modbus = r#"
[service]
poll_time_ms = 1000
[[modbus.devices]]
name = "tcp"
host = "127.0.0.1"
port = 1502
unit_id = 1
timeout_ms = 1000
[[modbus.devices.registers]]
name = "u16"
address = 0
[[modbus.devices]]
name = "rtu"
path = "/dev/ttyS1"
baud = 19200
parity = "none"
unit_id = 1
timeout_ms = 1000
[[modbus.devices.registers]]
name = "u16"
address = 0
"#;
    std::fs::write(vm.shared_dir().join("modbus-sensors.toml"), modbus).expect("write the config");
    vm.ok(&format!(
        "cp {}/modbus-sensors.toml /etc/tolomeo/modbus-sensors.toml
         sed -i 's/^interface = \"can0\"/interface = \"vcan0\"/' /etc/tolomeo/can-engine.toml",
        vm.shared_dir().display()
    ))
    .await;

    let units = ["tlm-cpu-monitor", "tlm-can-engine", "tlm-modbus-sensors"];
    // Type=notify: `systemctl start` returns when the service sent READY=1 (or failed).
    vm.ok(&format!("systemctl start {}", units.join(" "))).await;
    for unit in units {
        let state = vm
            .ok(&format!("systemctl show -p Type,ActiveState,SubState,User {unit}"))
            .await;
        for want in ["Type=notify", "ActiveState=active", "SubState=running"] {
            assert!(
                state.contains(want),
                "{unit}: {state}\n{}",
                journal(&mut vm, unit).await
            );
        }
        assert!(state.contains(&format!("User={unit}")), "{unit}: {state}");
    }
    beats
        .wait_until("a heartbeat from each service", Duration::from_secs(30), |b| {
            ["cpu-monitor", "can-engine", "modbus-sensors"]
                .iter()
                .all(|s| b.iter().any(|m| m.subject == format!("heartbeat.{s}.service")))
        })
        .await;

    // can-engine reads vcan0: 0x177C x 0.125 rpm, the frame's engine speed.
    vm.ok(&format!("cangen vcan0 {EEC1} -n 100 -g 10")).await;
    data.wait_until("engine:rpm from vcan0", Duration::from_secs(20), |m| {
        values(m, "engine:rpm").contains(&751.5)
    })
    .await;
    // modbus-sensors reads both devices: 48879 is holding register 0 of pymodbus_server.py.
    data.wait_until("both Modbus devices", Duration::from_secs(30), |m| {
        ["tcp:u16", "rtu:u16"].iter().all(|n| values(m, n).contains(&48879.0))
    })
    .await;

    // cpu-monitor under its sandbox publishes what it publishes outside it, in the same guest
    // (two polls each: the first has no CPU use yet).
    let system_metrics = |serial: &'static str| {
        move |m: &[Received]| {
            // The device's other services publish with the same serial: count cpu-monitor's.
            let packs = m
                .iter()
                .filter(|p| names(std::slice::from_ref(p), serial).contains("mem:total"))
                .count();
            (packs >= 2).then(|| {
                names(m, serial)
                    .into_iter()
                    .filter(|n| ["cpu:", "mem:", "disk:", "net:"].iter().any(|g| n.starts_with(g)))
                    .collect::<BTreeSet<String>>()
            })
        }
    };
    let msgs = data
        .wait_until("two polls of cpu-monitor", Duration::from_secs(60), |m| {
            system_metrics(SERIAL)(m).is_some()
        })
        .await;
    let under_systemd = system_metrics(SERIAL)(&msgs).unwrap_or_default();
    vm.ok(
        "systemd-run -q --unit=plain-cpu-monitor -E DEVICE_SERIAL_NUMBER=SN-PLAIN \
         /usr/bin/tlm-cpu-monitor --config /etc/tolomeo/cpu-monitor.toml",
    )
    .await;
    let msgs = data
        .wait_until(
            "two polls of cpu-monitor outside its sandbox",
            Duration::from_secs(60),
            |m| system_metrics("SN-PLAIN")(m).is_some(),
        )
        .await;
    let plain = system_metrics("SN-PLAIN")(&msgs).unwrap_or_default();
    assert!(under_systemd.contains("cpu:total"), "{under_systemd:?}");
    assert_eq!(under_systemd, plain, "the same metrics under systemd as outside it");
    vm.ok("systemctl stop plain-cpu-monitor").await;

    // 8. The exposure systemd computes in the guest is the one the offline check computes here.
    for unit in units {
        same_exposure_as_offline(&mut vm, unit).await;
    }

    // 6. Stop: a window still open is delivered, and the exit is clean.
    data.clear();
    vm.ok(&format!(
        "cangen vcan0 {EEC1} -n 5 -g 10 && systemctl stop tlm-can-engine"
    ))
    .await;
    data.wait_until("the open window, delivered at stop", Duration::from_secs(10), |m| {
        values(m, "engine:rpm").contains(&751.5)
    })
    .await;
    let stopped = vm
        .ok("systemctl show -p ExecMainStatus,Result,ActiveState tlm-can-engine")
        .await;
    for want in ["ExecMainStatus=0", "Result=success", "ActiveState=inactive"] {
        assert!(stopped.contains(want), "{stopped}");
    }
}

/// 6. Failures: a bad configuration exits 78 and is not restarted, with the key in the
///    journal; a missing DEVICE_SERIAL_NUMBER says so; a hung service is killed by the watchdog
///    and restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "boots a VM: cargo xtask system-test"]
async fn failures_exit_78_or_restart_as_the_units_say() {
    let mut vm = Vm::boot_systemd().await;

    // The serial is empty in the shipped /etc/default/tolomeo.
    vm.sh("systemctl start tlm-cpu-monitor").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(show(&mut vm, "tlm-cpu-monitor", "ExecMainStatus").await, "78");
    let log = journal(&mut vm, "tlm-cpu-monitor").await;
    assert!(log.contains("DEVICE_SERIAL_NUMBER"), "{log}");

    set_serial(&mut vm).await;
    vm.ok("systemctl reset-failed tlm-cpu-monitor
           printf '[service]\\npoll_time_ms = \"fast\"\\n' >/etc/tolomeo/cpu-monitor.toml")
        .await;
    let (rc, _) = vm.sh("systemctl start tlm-cpu-monitor").await;
    assert_ne!(rc, 0, "a bad configuration does not start");
    // RestartSec is 5 s: a restart would have happened by now.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let state = vm
        .ok("systemctl show -p ExecMainStatus,ActiveState,NRestarts tlm-cpu-monitor")
        .await;
    for want in ["ExecMainStatus=78", "ActiveState=failed", "NRestarts=0"] {
        assert!(state.contains(want), "{state}");
    }
    let log = journal(&mut vm, "tlm-cpu-monitor").await;
    assert!(log.contains("poll_time_ms"), "the journal names the key:\n{log}");
    let status = vm.sh("systemctl status --no-pager -n 20 tlm-cpu-monitor").await.1;
    assert!(status.contains("poll_time_ms"), "{status}");

    // Hung: SIGSTOP, so the watchdog (WatchdogSec=30s) is not petted.
    vm.ok("cp /mnt/dist/etc/tolomeo/cpu-monitor.toml /etc/tolomeo/cpu-monitor.toml
           systemctl reset-failed tlm-cpu-monitor && systemctl start tlm-cpu-monitor")
        .await;
    let pid = show(&mut vm, "tlm-cpu-monitor", "MainPID").await;
    vm.ok(&format!("kill -STOP {pid}")).await;
    let mut restarted = String::new();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let state = vm
            .ok("systemctl show -p NRestarts,MainPID,ActiveState tlm-cpu-monitor")
            .await;
        if state.contains("NRestarts=1") && state.contains("ActiveState=active") {
            restarted = state;
            break;
        }
    }
    let log = journal(&mut vm, "tlm-cpu-monitor").await;
    assert!(!restarted.is_empty(), "not restarted within 120 s:\n{log}");
    assert!(!restarted.contains(&format!("MainPID={pid}\n")), "{restarted}");
    assert!(log.contains("Watchdog timeout"), "{log}");
}

/// 7. With the broker stopped, `systemctl restart` of a service whose spool is in its
///    StateDirectory (the default under systemd): every record collected before and after the
///    restart arrives once the broker is back. A JetStream stream in the guest's broker keeps
///    what arrives, so that nothing depends on this machine being subscribed at the moment the
///    service flushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "boots a VM: cargo xtask system-test"]
async fn the_spool_keeps_what_a_restart_without_broker_collected() {
    let mut vm = Vm::boot_systemd().await;
    vm.ok("mkdir -p /var/lib/nats-js && chown nats /var/lib/nats-js
         printf 'host: 0.0.0.0\\nport: 4222\\njetstream { store_dir: \"/var/lib/nats-js\" }\\n' >/etc/nats-server.conf
         systemctl restart nats-server")
        .await;
    let js = async_nats::jetstream::new(client(&vm).await);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "CAPTURE".into(),
        subjects: vec!["events.data".into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .expect("create the capture stream");
    set_serial(&mut vm).await;
    vm.ok(
        "printf '[service]\\npoll_time_ms = 1000\\n' >/etc/tolomeo/cpu-monitor.toml
         systemctl start tlm-cpu-monitor",
    )
    .await;
    assert_eq!(
        show(&mut vm, "tlm-cpu-monitor", "StateDirectory").await,
        "tolomeo/cpu-monitor"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The guest's clock stamps the records: the times are read from it.
    let clock = |s: &str| s.trim().parse::<f64>().expect("date +%s.%N");
    let stopped = clock(&vm.ok("systemctl stop nats-server && date +%s.%N").await);
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Type=notify: the restart returns when the new process is ready.
    let restart = vm
        .ok("date +%s.%N && systemctl restart tlm-cpu-monitor && date +%s.%N")
        .await;
    let (restart_began, restart_done) = match restart.split_whitespace().collect::<Vec<_>>()[..] {
        [a, b] => (clock(a), clock(b)),
        _ => panic!("two times: {restart:?}"),
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let back = clock(&vm.ok("date +%s.%N && systemctl start nats-server").await);
    let files = vm.ok("ls /var/lib/tolomeo/cpu-monitor/spool | wc -l").await;

    // Read the stream until a record from after the broker's return is in it.
    let js = async_nats::jetstream::new(client(&vm).await);
    let mut times: Vec<f64> = Vec::new();
    let mut next = 1;
    for _ in 0..60 {
        if times.iter().any(|t| *t > back + 2.0) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(5), js.get_stream("CAPTURE")).await else {
            continue;
        };
        let Ok(Ok(info)) = tokio::time::timeout(Duration::from_secs(5), stream.info()).await else {
            continue;
        };
        let last = info.state.last_sequence;
        while next <= last {
            let got = tokio::time::timeout(Duration::from_secs(5), stream.get_raw_message(next)).await;
            let Ok(Ok(m)) = got else { break };
            next += 1;
            let pack: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or_default();
            for r in pack.as_array().cloned().unwrap_or_default() {
                if r["n"] == "mem:total" {
                    times.extend(r["t"].as_f64());
                }
            }
        }
    }
    times.sort_by(f64::total_cmp);
    times.dedup();
    assert!(
        times.iter().any(|t| *t > back + 2.0),
        "no record after the broker came back; spool files: {files}; {times:?}"
    );
    // One point a second before and after the restart; the one hole is the restart itself:
    // the old process polled until it was told to stop (which may be a poll after `systemctl
    // restart` began), the new one from when it was ready.
    let window: Vec<f64> = times.iter().copied().filter(|t| *t > stopped && *t < back).collect();
    let hole = window
        .windows(2)
        .enumerate()
        .max_by(|a, b| (a.1[1] - a.1[0]).total_cmp(&(b.1[1] - b.1[0])))
        .map_or(0, |(i, _)| i + 1);
    let (before, after) = window.split_at(hole);
    eprintln!(
        "{} + {} points while the broker was down ({:.1} s), restart {:.1} s, spool files {}",
        before.len(),
        after.len(),
        back - stopped,
        restart_done - restart_began,
        files.trim()
    );
    let steady = |side: &[f64]| side.windows(2).all(|w| w[1] - w[0] < 1.5);
    assert!(
        steady(before) && steady(after),
        "one point a second: {before:?} {after:?}"
    );
    let (Some(first), Some(last)) = (before.first(), before.last()) else {
        panic!("nothing from before the restart: {window:?}")
    };
    assert!(
        first - stopped < 1.5,
        "the first second without broker is kept: {before:?}"
    );
    assert!(restart_began - last < 1.5, "kept until the restart: {before:?}");
    assert!(
        *last < restart_done,
        "the old process stopped within the restart: {before:?}"
    );
    let (Some(first), Some(last)) = (after.first(), after.last()) else {
        panic!("nothing from after the restart: {window:?}")
    };
    assert!(first - restart_done < 1.5, "kept from the new start: {after:?}");
    assert!(
        *first > restart_began,
        "the new process began within the restart: {after:?}"
    );
    assert!(back - last < 1.5, "kept until the broker came back: {after:?}");
}

/// GET `path` from the dashboard in the guest (bash's /dev/tcp: the image has no HTTP client),
/// as JSON; `None` while it does not answer.
async fn dashboard_get(vm: &mut Vm, path: &str) -> Option<serde_json::Value> {
    let script = vm.shared_dir().join("get.sh");
    if !script.exists() {
        std::fs::write(
            &script,
            "exec 3<>/dev/tcp/127.0.0.1/8088 || exit 1\n\
             printf 'GET %s HTTP/1.1\\r\\nHost: 127.0.0.1:8088\\r\\nConnection: close\\r\\n\\r\\n' \"$1\" >&3\n\
             cat <&3\n",
        )
        .expect("write get.sh");
    }
    let out = vm
        .ok(&format!("bash {}/get.sh '{path}' || true", vm.shared_dir().display()))
        .await;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| serde_json::from_str(body).ok())?
}

/// The dashboard's unit, packaged as the Yocto layer and dist install it: it starts under its
/// hardening as its own user, shows the device's live service and its readings, keeps its
/// history in its StateDirectory across a restart, and stops cleanly on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "boots a VM: cargo xtask system-test"]
async fn the_dashboard_unit_serves_the_page_and_keeps_its_history() {
    let mut vm = Vm::boot_systemd().await;
    set_serial(&mut vm).await;
    vm.ok("systemctl start tlm-cpu-monitor tlm-dashboard").await;
    let state = vm
        .ok("systemctl show -p Type,ActiveState,SubState,User tlm-dashboard")
        .await;
    for want in [
        "Type=exec",
        "ActiveState=active",
        "SubState=running",
        "User=tlm-dashboard",
    ] {
        assert!(
            state.contains(want),
            "{state}\n{}",
            journal(&mut vm, "tlm-dashboard").await
        );
    }
    let alive = |s: &serde_json::Value| {
        s["devices"].as_array().is_some_and(|devices| {
            devices.iter().any(|d| {
                d["serial"] == SERIAL
                    && d["services"]
                        .as_array()
                        .is_some_and(|l| l.iter().any(|s| s["name"] == "cpu-monitor" && s["alive"] == true))
            })
        })
    };
    let series = "/api/series?device=SN-SYSTEMD&metric=cpu:load1&from=0&to=9999999999";
    let mut seen = None;
    for _ in 0..60 {
        let state = dashboard_get(&mut vm, "/api/state").await;
        let points = dashboard_get(&mut vm, series).await;
        let n = points.as_ref().and_then(|p| p["raw_points"].as_u64()).unwrap_or(0);
        if state.as_ref().is_some_and(alive) && n >= 2 {
            seen = Some(n);
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let Some(before) = seen else {
        panic!(
            "the dashboard did not show cpu-monitor alive with its readings within 60 s: {:?}\n{}",
            dashboard_get(&mut vm, "/api/state").await,
            journal(&mut vm, "tlm-dashboard").await
        );
    };
    // The history is in the unit's StateDirectory, owned by its user.
    let owner = vm
        .ok("stat -c '%U %a' /var/lib/tolomeo/dashboard /var/lib/tolomeo/dashboard/history.redb")
        .await;
    assert_eq!(
        owner.lines().collect::<Vec<_>>(),
        ["tlm-dashboard 750", "tlm-dashboard 600"],
        "{owner}"
    );

    // A restart keeps it.
    vm.ok("systemctl restart tlm-dashboard").await;
    let mut after = 0;
    for _ in 0..30 {
        after = dashboard_get(&mut vm, series)
            .await
            .and_then(|p| p["raw_points"].as_u64())
            .unwrap_or(0);
        if after >= before {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(after >= before, "{before} readings before the restart, {after} after");

    same_exposure_as_offline(&mut vm, "tlm-dashboard").await;

    // SIGTERM: a clean stop, well within TimeoutStopSec.
    vm.ok("systemctl stop tlm-dashboard").await;
    let stopped = vm
        .ok("systemctl show -p ExecMainStatus,Result,ActiveState tlm-dashboard")
        .await;
    for want in ["ExecMainStatus=0", "Result=success", "ActiveState=inactive"] {
        assert!(
            stopped.contains(want),
            "{stopped}\n{}",
            journal(&mut vm, "tlm-dashboard").await
        );
    }
}
