//! A simulated boiler on Modbus TCP, for the demo (`cargo xtask demo`) and for trying
//! modbus-sensors without hardware. The values are simulated, not measured.
//!
//! ```text
//! cargo run -p modbus-sensors --example boiler_sim -- --port 5020
//! ```
//!
//! | table | address | type | what |
//! | --- | --- | --- | --- |
//! | input | 0-1 | f32 (ABCD) | flow temperature, °C |
//! | input | 2-3 | f32 (ABCD) | return temperature, °C |
//! | input | 4 | u16 | pressure, 0.01 bar |
//! | input | 10-11 | u32 (ABCD) | energy delivered, Wh (a counter) |
//! | coil | 0 | bool | circulation pump running |
//! | holding | 20 | u16 | flow temperature setpoint, °C (writable, 30 to 85) |

use std::future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_modbus::{ExceptionCode, Request, Response};

#[derive(Debug)]
struct Boiler {
    input: Vec<u16>,
    coils: Vec<bool>,
    holding: Vec<u16>,
}

fn words(x: f32) -> [u16; 2] {
    let b = x.to_bits();
    [(b >> 16) as u16, b as u16]
}

impl Boiler {
    fn new() -> Self {
        let mut holding = vec![0; 32];
        holding[20] = 70;
        Boiler {
            input: vec![0; 16],
            coils: vec![false; 8],
            holding,
        }
    }

    /// Advance the simulation to `t` seconds after start; `energy` carries the counter.
    fn step(&mut self, t: f64, energy: &mut f64, dt: f64) {
        let setpoint = f64::from(self.holding[20]);
        // The pump runs 40 s, rests 20 s; the flow temperature follows the setpoint with a
        // slow wobble while it runs and cools towards 35 °C while it rests.
        let pump = (t % 60.0) < 40.0;
        let wobble = 2.5 * (t / 9.0).sin();
        let flow = if pump {
            setpoint - 2.0 + wobble
        } else {
            35.0 + (setpoint - 35.0) * (-(t % 60.0 - 40.0) / 15.0).exp()
        };
        let ret = flow - if pump { 12.0 + (t / 13.0).cos() } else { 3.0 };
        let pressure = 150.0 + if pump { 12.0 } else { 0.0 } + 2.0 * (t / 5.0).sin();
        if pump {
            *energy += 18_000.0 * dt / 3600.0; // 18 kW while the pump runs
        }
        let [a, b] = words(flow as f32);
        let [c, d] = words(ret as f32);
        let e = *energy as u32;
        self.input[0] = a;
        self.input[1] = b;
        self.input[2] = c;
        self.input[3] = d;
        self.input[4] = pressure.round() as u16;
        self.input[10] = (e >> 16) as u16;
        self.input[11] = e as u16;
        self.coils[0] = pump;
    }
}

fn slice<T: Clone>(v: &[T], addr: u16, cnt: u16) -> Result<Vec<T>, ExceptionCode> {
    let (a, n) = (usize::from(addr), usize::from(cnt));
    v.get(a..a + n)
        .map(<[T]>::to_vec)
        .ok_or(ExceptionCode::IllegalDataAddress)
}

struct Svc(Arc<Mutex<Boiler>>);

impl tokio_modbus::server::Service for Svc {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Request<'static>) -> Self::Future {
        let mut b = match self.0.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        let r = match req {
            Request::ReadInputRegisters(a, n) => slice(&b.input, a, n).map(Response::ReadInputRegisters),
            Request::ReadHoldingRegisters(a, n) => slice(&b.holding, a, n).map(Response::ReadHoldingRegisters),
            Request::ReadCoils(a, n) => slice(&b.coils, a, n).map(Response::ReadCoils),
            Request::WriteSingleRegister(20, w) if (30..=85).contains(&w) => {
                b.holding[20] = w;
                Ok(Response::WriteSingleRegister(20, w))
            }
            Request::WriteSingleRegister(20, _) => Err(ExceptionCode::IllegalDataValue),
            Request::WriteSingleRegister(..) | Request::WriteMultipleRegisters(..) => {
                Err(ExceptionCode::IllegalDataAddress)
            }
            _ => Err(ExceptionCode::IllegalFunction),
        };
        future::ready(r)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut port = 5020u16;
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--port", Some(p)) => {
                port = p
                    .parse()
                    .map_err(|_| std::io::Error::other(format!("--port {p}: expected 1 to 65535")))?
            }
            _ => return Err(std::io::Error::other("usage: boiler_sim [--port N]")),
        }
    }
    let boiler = Arc::new(Mutex::new(Boiler::new()));
    let sim = boiler.clone();
    tokio::spawn(async move {
        let start = Instant::now();
        let mut energy = 1_250_000.0;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            if let Ok(mut b) = sim.lock() {
                b.step(start.elapsed().as_secs_f64(), &mut energy, 0.2);
            }
        }
    });
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("boiler simulator: Modbus TCP on 127.0.0.1:{port} (unit 1; simulated values)");
    let server = Server::new(listener);
    let on_connected = |stream, addr| {
        let boiler = boiler.clone();
        async move { accept_tcp_connection(stream, addr, move |_| Ok(Some(Svc(boiler.clone())))) }
    };
    server
        .serve(&on_connected, |e| eprintln!("boiler simulator: {e}"))
        .await
}
