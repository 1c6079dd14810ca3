//! One Modbus connection (a TCP socket or a serial port) and the requests sent over it, each
//! under a timeout, with faults sorted into timeouts, exception responses and broken links.

use std::fmt;
use std::time::Duration;

use tokio_modbus::client::{Context, Reader, Writer};
use tokio_modbus::slave::SlaveContext;
use tokio_modbus::{ExceptionCode, Slave};

use crate::model::{Line, Transport};
use crate::plan::Kind;

/// What came back from a read.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    Words(Vec<u16>),
    Bits(Vec<bool>),
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// No answer within the timeout (after every retry).
    Timeout(Duration),
    /// The device answered with a Modbus exception: it is reachable.
    Exception(ExceptionCode),
    /// The connection is broken or could not be opened.
    Link(String),
}

impl Fault {
    /// True when the connection should be dropped and opened again.
    pub fn breaks_link(&self) -> bool {
        matches!(self, Fault::Link(_))
    }
}

/// The human name of an exception code, as the Modbus specification words it.
pub fn exception_name(code: ExceptionCode) -> String {
    match code {
        ExceptionCode::IllegalFunction => "illegal function (0x01)".into(),
        ExceptionCode::IllegalDataAddress => "illegal data address (0x02)".into(),
        ExceptionCode::IllegalDataValue => "illegal data value (0x03)".into(),
        ExceptionCode::ServerDeviceFailure => "server device failure (0x04)".into(),
        ExceptionCode::Acknowledge => "acknowledge (0x05)".into(),
        ExceptionCode::ServerDeviceBusy => "server device busy (0x06)".into(),
        ExceptionCode::MemoryParityError => "memory parity error (0x08)".into(),
        ExceptionCode::GatewayPathUnavailable => "gateway path unavailable (0x0A)".into(),
        ExceptionCode::GatewayTargetDevice => "gateway target device failed to respond (0x0B)".into(),
        ExceptionCode::Custom(c) => format!("exception code 0x{c:02X}"),
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Timeout(t) => write!(f, "no response within {} ms", t.as_millis()),
            Fault::Exception(c) => write!(f, "exception response: {}", exception_name(*c)),
            Fault::Link(e) => write!(f, "{e}"),
        }
    }
}

/// Open a connection. TCP connects (within `timeout`); RTU opens the serial port.
pub async fn open(transport: &Transport, unit_id: u8, timeout: Duration) -> Result<Context, Fault> {
    match transport {
        Transport::Tcp { host, port } => {
            let target = format!("{host}:{port}");
            let connect = async {
                let mut last = None;
                for addr in tokio::net::lookup_host(&target).await? {
                    match tokio_modbus::client::tcp::connect_slave(addr, Slave(unit_id)).await {
                        Ok(ctx) => return Ok(ctx),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| std::io::Error::other("the host name resolves to no address")))
            };
            match tokio::time::timeout(timeout, connect).await {
                Ok(Ok(ctx)) => Ok(ctx),
                Ok(Err(e)) => Err(Fault::Link(format!("cannot connect to {target}: {e}"))),
                Err(_) => Err(Fault::Link(format!(
                    "cannot connect to {target}: no answer within {} ms",
                    timeout.as_millis()
                ))),
            }
        }
        Transport::Rtu(line) => open_serial(line, unit_id),
    }
}

fn open_serial(line: &Line, unit_id: u8) -> Result<Context, Fault> {
    use tokio_serial::{DataBits, Parity, SerialPortBuilderExt, StopBits};
    let parity = match line.parity.as_str() {
        "even" => Parity::Even,
        "odd" => Parity::Odd,
        _ => Parity::None,
    };
    let data_bits = match line.data_bits {
        5 => DataBits::Five,
        6 => DataBits::Six,
        7 => DataBits::Seven,
        _ => DataBits::Eight,
    };
    let stop_bits = if line.stop_bits == 2 {
        StopBits::Two
    } else {
        StopBits::One
    };
    let port = tokio_serial::new(&line.path, line.baud)
        .parity(parity)
        .data_bits(data_bits)
        .stop_bits(stop_bits)
        .open_native_async()
        .map_err(|e| Fault::Link(format!("cannot open serial port {}: {e}", line.path)))?;
    Ok(tokio_modbus::client::rtu::attach_slave(port, Slave(unit_id)))
}

/// Run one Modbus call under `timeout`, resending after a timeout up to `retries` times.
macro_rules! call {
    ($timeout:expr, $retries:expr, $call:expr) => {{
        let mut attempt = 0u32;
        loop {
            match tokio::time::timeout($timeout, $call).await {
                Ok(Ok(Ok(v))) => break Ok(v),
                Ok(Ok(Err(code))) => break Err(Fault::Exception(code)),
                Ok(Err(e)) => break Err(Fault::Link(format!("connection lost: {e}"))),
                Err(_) if attempt < $retries => attempt += 1,
                Err(_) => break Err(Fault::Timeout($timeout)),
            }
        }
    }};
}

/// Read `count` registers or bits of `kind` from `start`, from unit `unit_id`.
pub async fn read(
    ctx: &mut Context,
    unit_id: u8,
    kind: Kind,
    start: u16,
    count: u16,
    timeout: Duration,
    retries: u32,
) -> Result<Data, Fault> {
    ctx.set_slave(Slave(unit_id));
    let data = match kind {
        Kind::Holding => Data::Words(call!(timeout, retries, ctx.read_holding_registers(start, count))?),
        Kind::Input => Data::Words(call!(timeout, retries, ctx.read_input_registers(start, count))?),
        Kind::Coil => Data::Bits(call!(timeout, retries, ctx.read_coils(start, count))?),
        Kind::Discrete => Data::Bits(call!(timeout, retries, ctx.read_discrete_inputs(start, count))?),
    };
    let got = match &data {
        Data::Words(w) => w.len(),
        Data::Bits(b) => b.len(),
    };
    if got < usize::from(count) {
        return Err(Fault::Link(format!("short response: asked for {count}, got {got}")));
    }
    Ok(data)
}

/// Writes are sent once: a timed-out write may have been applied.
const NO_RETRY: u32 = 0;

/// What to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Holding registers from the address.
    Words(Vec<u16>),
    /// One coil.
    Coil(bool),
    /// One bit of a holding register (read, modify, write).
    Bit(u8, bool),
}

/// Write to unit `unit_id` at `address`. Returns the registers (or bit) now held there.
pub async fn write(
    ctx: &mut Context,
    unit_id: u8,
    address: u16,
    what: &Write,
    timeout: Duration,
) -> Result<Write, Fault> {
    ctx.set_slave(Slave(unit_id));
    match what {
        Write::Coil(on) => call!(timeout, NO_RETRY, ctx.write_single_coil(address, *on))?,
        Write::Words(words) if words.len() == 1 => {
            let w = words.first().copied().unwrap_or(0);
            call!(timeout, NO_RETRY, ctx.write_single_register(address, w))?
        }
        Write::Words(words) => call!(timeout, NO_RETRY, ctx.write_multiple_registers(address, words))?,
        Write::Bit(bit, on) => {
            let old = call!(timeout, NO_RETRY, ctx.read_holding_registers(address, 1))?;
            let old = old.first().copied().unwrap_or(0);
            let mask = 1u16 << (bit & 15);
            let new = if *on { old | mask } else { old & !mask };
            call!(timeout, NO_RETRY, ctx.write_single_register(address, new))?;
            return Ok(Write::Words(vec![new]));
        }
    }
    Ok(what.clone())
}
