//! Against pymodbus (an independent implementation, values packed with Python's struct
//! module in tests/pymodbus_server.py): every data type in every byte order, strings, scale
//! and offset, coils, discrete inputs, bits, exceptions, and writes read back on the server.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{PyServer, Running, start, v};
use tolomeo_testkit::NatsServer;

const ORDERS: [&str; 4] = ["ABCD", "CDAB", "BADC", "DCBA"];
/// (type, offset in the block of its order, the value the server packed).
const TYPES: [(&str, u16, f64); 8] = [
    ("u16", 0, 48879.0),
    ("i16", 1, -12345.0),
    ("u32", 2, 3000000001.0),
    ("i32", 4, -2000000001.0),
    ("u64", 6, 9007199254740981.0),
    ("i64", 10, -9007199254740985.0),
    ("f32", 14, 1234.5625),
    ("f64", 16, -98765.4321),
];

fn config(port: u16) -> String {
    let mut c = format!(
        "[service]\npoll_time_ms = 200\n[[modbus.devices]]\nname = \"py\"\nhost = \"127.0.0.1\"\nport = {port}\nunit_id = 1\ntimeout_ms = 500\n"
    );
    for (o, order) in ORDERS.iter().enumerate() {
        for (t, off, _) in TYPES {
            c += &format!(
                "[[modbus.devices.registers]]\nname = \"{t}_{}\"\naddress = {}\ndata_type = \"{t}\"\nbyte_order = \"{order}\"\n",
                order.to_lowercase(),
                32 * o as u16 + off
            );
        }
    }
    c += r#"
[[modbus.devices.registers]]
name = "text"
address = 200
data_type = "string"
length = 8
[[modbus.devices.registers]]
name = "text_badc"
address = 210
data_type = "string"
length = 8
byte_order = "BADC"
[[modbus.devices.registers]]
name = "temperature"
address = 300
scale = 0.1
offset = -5.0
unit = "Cel"
[[modbus.devices.registers]]
name = "bit0"
address = 301
data_type = "bool"
bit = 0
[[modbus.devices.registers]]
name = "bit1"
address = 301
data_type = "bool"
bit = 1
[[modbus.devices.registers]]
name = "bit15"
address = 301
data_type = "bool"
bit = 15
[[modbus.devices.registers]]
name = "coil0"
kind = "coil"
address = 0
[[modbus.devices.registers]]
name = "coil1"
kind = "coil"
address = 1
[[modbus.devices.registers]]
name = "coil7"
kind = "coil"
address = 7
[[modbus.devices.registers]]
name = "di1"
kind = "discrete"
address = 1
[[modbus.devices.registers]]
name = "di3"
kind = "discrete"
address = 3
[[modbus.devices.registers]]
name = "in_i32"
kind = "input"
address = 0
data_type = "i32"
[[modbus.devices.registers]]
name = "missing"
address = 5000
[[modbus.devices.registers]]
name = "w_u16"
address = 400
scale = 0.1
writable = true
[[modbus.devices.registers]]
name = "w_f32_cdab"
address = 402
data_type = "f32"
byte_order = "CDAB"
writable = true
[[modbus.devices.registers]]
name = "w_i32_dcba"
address = 404
data_type = "i32"
byte_order = "DCBA"
writable = true
[[modbus.devices.registers]]
name = "w_bit3"
address = 408
data_type = "bool"
bit = 3
writable = true
[[modbus.devices.registers]]
name = "w_text"
address = 410
data_type = "string"
length = 3
writable = true
[[modbus.devices.registers]]
name = "w_coil5"
kind = "coil"
address = 5
writable = true
"#;
    c
}

async fn setup() -> (NatsServer, PyServer, Running) {
    let nats = NatsServer::start();
    let py = PyServer::tcp().await;
    let svc = start(&nats, &config(py.port)).await;
    (nats, py, svc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_byte_order_decodes_as_packed_by_python() {
    let (_nats, _py, svc) = setup().await;
    let mut names = vec![];
    for order in ORDERS {
        for (t, _, _) in TYPES {
            names.push(format!("py:{t}_{}", order.to_lowercase()));
        }
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    svc.wait_for(&refs, Duration::from_secs(10)).await;
    for order in ORDERS {
        for (t, _, expected) in TYPES {
            let rec = svc.last(&format!("py:{t}_{}", order.to_lowercase())).unwrap();
            assert_eq!(v(&rec), expected, "{t} {order}: {rec}");
        }
    }
    svc.wait_for(
        &["py:text", "py:coil0", "py:in_i32", "py:bit0", "py:di1"],
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(svc.last("py:text").unwrap()["vs"], "Hello, Modbus!");
    assert_eq!(svc.last("py:text_badc").unwrap()["vs"], "Hello, Modbus!");
    let t = svc.last("py:temperature").unwrap();
    assert!((v(&t) - (2155.0 * 0.1 - 5.0)).abs() < 1e-9, "{t}");
    assert_eq!(t["u"], "Cel");
    for (name, expected) in [
        ("bit0", true),
        ("bit1", false),
        ("bit15", true),
        ("coil0", true),
        ("coil1", false),
        ("coil7", true),
        ("di1", true),
        ("di3", false),
    ] {
        assert_eq!(svc.last(&format!("py:{name}")).unwrap()["vb"], expected, "{name}");
    }
    assert_eq!(v(&svc.last("py:in_i32").unwrap()), -7.0);
    // The undefined address is answered with an exception: named, counted, skipped.
    assert!(svc.last("py:missing").is_none());
    let dev = svc.device("py").await;
    assert!(dev["exceptions"].as_u64().unwrap() >= 1, "{dev}");
    assert!(
        dev["last_error"].as_str().unwrap().contains("illegal data address"),
        "{dev}"
    );
    assert!(svc.svc.log().contains("illegal data address"), "{}", svc.svc.log());
    assert_eq!(dev["connected"], true);
    assert!(dev["plan"].as_array().unwrap().len() >= 5, "{dev}");

    // A fresh read: the scaled value and the raw words (1234.5625f32 = 0x449A5200, CDAB).
    let r = svc
        .call("ReadRegister", json!({"device": "py", "register": "f32_cdab"}))
        .await;
    assert_eq!(r["value"], 1234.5625, "{r}");
    assert_eq!(r["words_hex"], json!(["0x5200", "0x449A"]), "{r}");
    let r = svc
        .call("ReadRegister", json!({"device": "py", "register": "coil7"}))
        .await;
    assert_eq!(r["value"], true, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_reach_the_server_as_the_expected_words() {
    let (_nats, py, svc) = setup().await;
    let write = |reg: &'static str, value: serde_json::Value| {
        let svc = &svc;
        async move {
            svc.call(
                "WriteRegister",
                json!({"device": "py", "register": reg, "value": value}),
            )
            .await
        }
    };
    // 12.3 / 0.1 = 123.
    let r = write("w_u16", json!(12.3)).await;
    assert_eq!(r["words"], json!([123]), "{r}");
    assert_eq!(py.get(3, 400, 1).await.unwrap(), [123]);
    // -2.5f32 = 0xC0200000, CDAB: low word first.
    write("w_f32_cdab", json!(-2.5)).await;
    assert_eq!(py.get(3, 402, 2).await.unwrap(), [0x0000, 0xC020]);
    // -2i32 = 0xFFFFFFFE, DCBA: bytes FE FF FF FF.
    write("w_i32_dcba", json!(-2)).await;
    assert_eq!(py.get(3, 404, 2).await.unwrap(), [0xFEFF, 0xFFFF]);
    write("w_bit3", json!(true)).await;
    assert_eq!(py.get(3, 408, 1).await.unwrap(), [8]);
    write("w_text", json!("AB")).await;
    assert_eq!(py.get(3, 410, 3).await.unwrap(), [0x4142, 0, 0]);
    write("w_coil5", json!(true)).await;
    assert_eq!(py.get(1, 5, 1).await.unwrap(), [1]);

    // Not writable, out of range, wrong type: refused, nothing reaches the server.
    let r = write("u16_abcd", json!(1)).await;
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    for (reg, value) in [
        ("w_u16", json!(7000)), // 70000 > 65535
        ("w_u16", json!(-1)),
        ("w_i32_dcba", json!(3e9)),
        ("w_f32_cdab", json!(1e39)),
        ("w_text", json!("too long!")),
        ("w_coil5", json!(3)),
        ("w_u16", json!("12")),
    ] {
        let r = write(reg, value.clone()).await;
        assert_eq!(r["error"]["code"], "invalid_payload", "{reg} {value}: {r}");
    }
    assert_eq!(py.get(3, 400, 1).await.unwrap(), [123]);
    assert_eq!(py.get(3, 404, 2).await.unwrap(), [0xFEFF, 0xFFFF]);
    let r = svc
        .call("WriteRegister", json!({"device": "nope", "register": "x", "value": 1}))
        .await;
    assert_eq!(r["error"]["code"], "invalid_payload", "{r}");

    // The service publishes what was written.
    let t = support::now();
    svc.wait_since(
        &["py:w_u16", "py:w_f32_cdab", "py:w_i32_dcba"],
        t,
        Duration::from_secs(5),
    )
    .await;
    let w = svc.last("py:w_u16").unwrap();
    assert!((v(&w) - 12.3).abs() < 1e-9, "{w}");
    assert_eq!(v(&svc.last("py:w_f32_cdab").unwrap()), -2.5);
    assert_eq!(v(&svc.last("py:w_i32_dcba").unwrap()), -2.0);
    assert_eq!(svc.last("py:w_text").unwrap()["vs"], "AB");
}
