//! OBD-II request/response through the real service (tolomeo_core::Service in-process, a
//! private nats-server) over an in-process bus whose other end is a simulated ECU written
//! here: it answers 0x0C and 0x05 like an engine ECU on 0x7E8 and ignores 0x0D.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use can_engine::{CanConfig, CanEngine, Frame, memory};
use tolomeo_core::{DeviceSerial, Service, ServiceName, Settings};
use tolomeo_testkit::{NatsServer, Recorder, call};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_each_poll_and_read_pid() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let data = Recorder::start(&client, "events.data").await;

    let (bus, mut ecu) = memory::bus(64);
    let sent_rpm = Arc::new(Mutex::new(Vec::<f64>::new()));
    let requests = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    {
        let (sent_rpm, requests) = (sent_rpm.clone(), requests.clone());
        tokio::spawn(async move {
            let mut n: u16 = 0;
            while let Some(req) = ecu.rx.recv().await {
                requests.lock().unwrap().push(req.payload().to_vec());
                assert_eq!((req.id, req.extended), (0x7DF, false));
                let now = (tolomeo_core::unix_now() * 1e6) as i64;
                let reply = match req.payload() {
                    [2, 1, 0x0C, ..] => {
                        n += 1;
                        let (a, b) = (0x1A + (n % 8) as u8, 0xF8u8);
                        // SAE J1979: rpm = (256 A + B) / 4
                        sent_rpm.lock().unwrap().push((256.0 * a as f64 + b as f64) / 4.0);
                        vec![4, 0x41, 0x0C, a, b, 0x55, 0x55, 0x55]
                    }
                    [2, 1, 0x05, ..] => vec![3, 0x41, 0x05, 130, 0x55, 0x55, 0x55, 0x55], // 130 - 40 = 90 Cel
                    _ => continue,                                                        // 0x0D: no answer
                };
                // A malformed reply first (too short for 0x0C) must be counted, not published.
                let _ = ecu
                    .tx
                    .send(Frame::data(now, 0x7E8, false, &[4, 0x41, 0x0C, 0x10]))
                    .await;
                let _ = ecu.tx.send(Frame::data(now, 0x7E8, false, &reply)).await;
            }
        });
    }

    let cfg: CanConfig =
        toml::from_str("mode = \"obd2\"\naggregate = \"none\"\n[obd2]\npids = [5, 13]\ntimeout_ms = 100").unwrap();
    let ctx = tolomeo_core::BuildContext::new(Duration::from_millis(200));
    let plugin = CanEngine::with_memory_bus(&cfg, &ctx, bus).unwrap();
    let mut settings = Settings::new(
        ServiceName::new("can-engine").unwrap(),
        DeviceSerial::new("SN1").unwrap(),
    );
    settings.nats.url = nats.url();
    settings.service.poll_time_ms = Some(200);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let service = tokio::spawn(Service::new(settings, plugin).run(shutdown.clone()));

    let records = |msgs: &[tolomeo_testkit::Received], name: &str| -> Vec<(f64, f64)> {
        msgs.iter()
            .flat_map(|m| m.json().as_array().cloned().unwrap_or_default())
            .filter(|r| r["n"] == name)
            .map(|r| (r["t"].as_f64().unwrap(), r["v"].as_f64().unwrap()))
            .collect()
    };
    let msgs = data
        .wait_until("5 rpm values and a timeout count", Duration::from_secs(10), |m| {
            records(m, "engine:rpm").len() >= 5 && records(m, "obd:timeouts").iter().any(|(_, v)| *v >= 2.0)
        })
        .await;
    let sent = sent_rpm.lock().unwrap().clone();
    for (_, v) in records(&msgs, "engine:rpm") {
        assert!(
            sent.contains(&v),
            "published rpm {v} is not one the ECU sent ({sent:?})"
        );
    }
    assert!(records(&msgs, "engine:coolant_temp").iter().all(|(_, v)| *v == 90.0));
    assert!(records(&msgs, "vehicle:speed").is_empty());
    assert!(records(&msgs, "can:decode_errors").iter().any(|(_, v)| *v >= 1.0));
    // Every poll asks for 0x0C, 0x05 and 0x0D with the standard request layout.
    let reqs = requests.lock().unwrap().clone();
    for pid in [0x0C, 0x05, 0x0D] {
        assert!(
            reqs.contains(&vec![2, 1, pid, 0, 0, 0, 0, 0]),
            "no request for PID {pid:#04x}"
        );
    }

    let r = call(&client, "can-engine", "ReadPid", serde_json::json!({"pid": 5})).await;
    assert_eq!(
        (r["value"].as_f64(), r["unit"].as_str()),
        (Some(90.0), Some("Cel")),
        "{r}"
    );
    let r = call(&client, "can-engine", "ReadPid", serde_json::json!({"pid": 13})).await;
    assert_eq!(r["error"]["code"], "timeout", "{r}");
    let r = call(&client, "can-engine", "ReadPid", serde_json::json!({"pid": 7})).await;
    assert_eq!(r["error"]["code"], "invalid_payload", "{r}");
    let r = call(&client, "can-engine", "GetEngineState", serde_json::json!({})).await;
    assert_eq!(r["values"]["engine:coolant_temp"]["value"], 90.0, "{r}");
    assert!(r["values"]["engine:rpm"]["age_s"].as_f64().unwrap() < 5.0, "{r}");

    shutdown.cancel();
    service.await.unwrap().unwrap();
}
