//! Modbus RTU over a socat pty pair, with pymodbus's serial server (units 1 and 2) on the far
//! end: two devices on one line polled by its single owner, a third unit that never answers
//! and does not stop the others, and a write read back on the server.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{PtyPair, PyServer, start, v};
use tolomeo_testkit::NatsServer;

fn device(name: &str, path: &str, unit: u8, timeout_ms: u64) -> String {
    format!(
        r#"
[[modbus.devices]]
name = "{name}"
path = "{path}"
baud = 19200
parity = "none"
unit_id = {unit}
timeout_ms = {timeout_ms}
retries = 0
pause_between_requests_ms = 5
[[modbus.devices.registers]]
name = "u16"
address = 0
[[modbus.devices.registers]]
name = "f64_dcba"
data_type = "f64"
byte_order = "DCBA"
address = 112
[[modbus.devices.registers]]
name = "unit"
kind = "input"
address = 2
[[modbus.devices.registers]]
name = "w_i16"
data_type = "i16"
address = 401
writable = true
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_on_one_serial_line_are_polled_in_turn() {
    let pty = PtyPair::start().await;
    let py = PyServer::serial(&pty.b, 19200, "1,2").await;
    let nats = NatsServer::start();
    let config = format!(
        "[service]\npoll_time_ms = 200\n{}{}{}",
        device("u1", &pty.a, 1, 500),
        device("u2", &pty.a, 2, 500),
        device("ghost", &pty.a, 3, 150)
    );
    let svc = start(&nats, &config).await;
    svc.wait_for(&["u1:u16", "u2:u16", "u1:unit", "u2:unit"], Duration::from_secs(10))
        .await;
    assert_eq!(v(&svc.last("u1:u16").unwrap()), 48879.0);
    assert_eq!(v(&svc.last("u1:f64_dcba").unwrap()), -98765.4321);
    assert_eq!(v(&svc.last("u2:f64_dcba").unwrap()), -98765.4321);
    // Each answer came from the unit addressed (input 2 holds the unit id).
    assert_eq!(v(&svc.last("u1:unit").unwrap()), 1.0);
    assert_eq!(v(&svc.last("u2:unit").unwrap()), 2.0);

    let ghost = svc.device("ghost").await;
    assert!(ghost["timeouts"].as_u64().unwrap() >= 1, "{ghost}");
    assert!(ghost["last_error"].as_str().unwrap().contains("no response"), "{ghost}");
    assert!(svc.last("ghost:u16").is_none());
    let u1 = svc.device("u1").await;
    assert_eq!(u1["consecutive_failures"], 0, "{u1}");

    // -300 as i16 = 0xFED4, written over the line and read back on the server.
    let r = svc
        .call(
            "WriteRegister",
            json!({"device": "u1", "register": "w_i16", "value": -300}),
        )
        .await;
    assert_eq!(r["words"], json!([0xFED4]), "{r}");
    assert_eq!(py.get(3, 401, 1).await.unwrap(), [0xFED4]);
    let r = svc
        .call("ReadRegister", json!({"device": "u1", "register": "w_i16"}))
        .await;
    assert_eq!(r["value"], -300.0, "{r}");
}
