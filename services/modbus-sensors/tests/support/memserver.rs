//! An in-process Modbus TCP server (tokio-modbus `tcp-server`) over a plain memory store,
//! for the tests and the benchmark. Reads beyond the store answer "illegal data address".

#![allow(dead_code)]

use std::future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_modbus::{ExceptionCode, Request, Response};

/// The four tables; their lengths are the valid address ranges.
#[derive(Debug, Default, Clone)]
pub(crate) struct Store {
    pub holding: Vec<u16>,
    pub input: Vec<u16>,
    pub coils: Vec<bool>,
    pub discrete: Vec<bool>,
    /// Requests served.
    pub requests: u64,
}

fn slice<T: Clone>(v: &[T], addr: u16, cnt: u16) -> Result<Vec<T>, ExceptionCode> {
    let (a, n) = (usize::from(addr), usize::from(cnt));
    v.get(a..a + n)
        .map(|s| s.to_vec())
        .ok_or(ExceptionCode::IllegalDataAddress)
}

fn put<T: Clone>(v: &mut [T], addr: u16, vals: &[T]) -> Result<(), ExceptionCode> {
    let a = usize::from(addr);
    let dst = v.get_mut(a..a + vals.len()).ok_or(ExceptionCode::IllegalDataAddress)?;
    dst.clone_from_slice(vals);
    Ok(())
}

struct Svc(Arc<Mutex<Store>>);

impl tokio_modbus::server::Service for Svc {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Request<'static>) -> Self::Future {
        let mut s = self.0.lock().unwrap();
        s.requests += 1;
        let r = match req {
            Request::ReadHoldingRegisters(a, n) => slice(&s.holding, a, n).map(Response::ReadHoldingRegisters),
            Request::ReadInputRegisters(a, n) => slice(&s.input, a, n).map(Response::ReadInputRegisters),
            Request::ReadCoils(a, n) => slice(&s.coils, a, n).map(Response::ReadCoils),
            Request::ReadDiscreteInputs(a, n) => slice(&s.discrete, a, n).map(Response::ReadDiscreteInputs),
            Request::WriteSingleRegister(a, w) => {
                put(&mut s.holding, a, &[w]).map(|_| Response::WriteSingleRegister(a, w))
            }
            Request::WriteMultipleRegisters(a, ws) => {
                put(&mut s.holding, a, &ws).map(|_| Response::WriteMultipleRegisters(a, ws.len() as u16))
            }
            Request::WriteSingleCoil(a, c) => put(&mut s.coils, a, &[c]).map(|_| Response::WriteSingleCoil(a, c)),
            _ => Err(ExceptionCode::IllegalFunction),
        };
        future::ready(r)
    }
}

/// A running server.
pub(crate) struct MemServer {
    pub addr: SocketAddr,
    pub store: Arc<Mutex<Store>>,
    task: Option<JoinHandle<()>>,
}

impl MemServer {
    /// Serve `store` on a free loopback port.
    pub(crate) async fn start(store: Store) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut s = MemServer {
            addr,
            store: Arc::new(Mutex::new(store)),
            task: None,
        };
        s.serve(listener);
        s
    }

    fn serve(&mut self, listener: TcpListener) {
        let store = self.store.clone();
        self.task = Some(tokio::spawn(async move {
            let server = Server::new(listener);
            let on_connected = |stream, addr| {
                let store = store.clone();
                async move { accept_tcp_connection(stream, addr, move |_| Ok(Some(Svc(store.clone())))) }
            };
            let _ = server.serve(&on_connected, |_e| {}).await;
        }));
    }

    /// Stop listening and drop every connection.
    pub(crate) fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Listen again on the same port, with the same store.
    pub(crate) async fn restart(&mut self) {
        self.stop();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    pub(crate) fn holding(&self, addr: usize, n: usize) -> Vec<u16> {
        self.store.lock().unwrap().holding[addr..addr + n].to_vec()
    }
}

impl Drop for MemServer {
    fn drop(&mut self) {
        self.stop();
    }
}
