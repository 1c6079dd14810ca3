//! `tlm-dashboard`: what Fleet Manager shows of a device (its services, one chart per declared
//! metric, a control panel for commands), served by one process on the device or on a desk,
//! from the NATS broker the services already use.
//!
//! - [`ingest`]: subscribes to `events.data`, `events.params` and the heartbeats, and asks
//!   each live service `GetStatus` and `GetMetrics`; [`live`] is what it knows now.
//! - [`store`]: the embedded history (redb), bounded by age and size; [`downsample`] reduces
//!   a range to what a chart can show. With `--stream`, [`history`] reads the history from a
//!   JetStream stream instead.
//! - [`server`]: the HTTP API, the live updates (server-sent events) and the page
//!   ([`assets`], embedded), with the checks of [`guard`] on every request.

#![forbid(unsafe_code)]

pub mod assets;
pub mod downsample;
pub mod guard;
pub mod history;
pub mod ingest;
pub mod live;
pub mod server;
pub mod store;
mod units;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tolomeo_proto::client::{ConnArgs, ConnectError};

pub use tolomeo_proto::client::parse_duration;
pub use units::parse_size;

/// `tlm-dashboard`'s command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "tlm-dashboard",
    version,
    about = "The telemetry of ToloMEO devices as charts, their services and a command panel, in a browser",
    max_term_width = 100
)]
pub struct Args {
    /// Address and port to serve the page on. The default keeps it on this machine; reach it
    /// from elsewhere through an SSH tunnel, or give an address to expose it.
    #[arg(long, default_value = "127.0.0.1:8088", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    /// Where the history is kept [default: $STATE_DIRECTORY, else
    /// $XDG_STATE_HOME/tlm-dashboard, else ~/.local/state/tlm-dashboard].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// How long the store keeps a point, e.g. 24h, 7d.
    #[arg(long, default_value = "7d", value_parser = parse_duration, value_name = "AGE")]
    pub retention: Duration,
    /// The store's size bound; the oldest points go first, e.g. 256MiB, 2GiB.
    #[arg(long, default_value = "256MiB", value_parser = parse_size, value_name = "SIZE")]
    pub max_size: u64,
    /// Read the history from this JetStream stream (on events.data) instead of the store.
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,
    /// Create the --stream when it does not exist, keeping --stream-max-age of data.
    #[arg(long, requires = "stream")]
    pub create_stream: bool,
    /// The retention of a stream made by --create-stream.
    #[arg(long, default_value = "7d", value_parser = parse_duration, value_name = "AGE")]
    pub stream_max_age: Duration,
    /// Let the page send commands to services (Modbus writes included). Each request needs the
    /// token printed at start.
    #[arg(long)]
    pub enable_commands: bool,
    /// Another origin allowed to call the API, e.g. a reverse proxy's https://dash.example.com.
    /// Repeat for several.
    #[arg(long, value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// A service is offline after this long without a heartbeat.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "AGE")]
    pub expire: Duration,
    /// How to reach the broker.
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Why the dashboard stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag, or a file or directory it names, is wrong.
    #[error("{0}")]
    Usage(String),
    /// The broker, the store or the listening socket failed.
    #[error("{0}")]
    Io(String),
}

impl Error {
    /// The exit code: 2 for usage (as clap), 4 for the rest (as `tlm`).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Io(_) => 4,
        }
    }
}

impl From<ConnectError> for Error {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Usage(m) => Error::Usage(m),
            ConnectError::Unreachable(m) => Error::Io(m),
        }
    }
}

/// The data directory: the flag, else systemd's `$STATE_DIRECTORY`, else the XDG state home.
fn data_dir(flag: Option<&PathBuf>) -> Result<PathBuf, Error> {
    if let Some(dir) = flag {
        return Ok(dir.clone());
    }
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    // systemd may pass several directories, separated by colons: the first is ours.
    if let Some(dirs) = std::env::var("STATE_DIRECTORY").ok().filter(|v| !v.is_empty()) {
        let first = dirs.split(':').next().unwrap_or(&dirs);
        return Ok(PathBuf::from(first));
    }
    if let Some(state) = env("XDG_STATE_HOME") {
        return Ok(state.join("tlm-dashboard"));
    }
    if let Some(home) = env("HOME") {
        return Ok(home.join(".local/state/tlm-dashboard"));
    }
    Err(Error::Usage(
        "no --data-dir, and neither STATE_DIRECTORY, XDG_STATE_HOME nor HOME is set: give --data-dir DIR".into(),
    ))
}

/// A random token of 128 bits, in hex, for the command requests.
fn new_token() -> Result<String, Error> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::Io(format!("cannot read /dev/urandom for the command token: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Runs the dashboard until SIGINT or SIGTERM.
pub async fn run(args: Args) -> Result<(), Error> {
    // The store first: a wrong --data-dir is reported before the broker is tried.
    let store = match &args.stream {
        None => {
            let dir = data_dir(args.data_dir.as_ref())?;
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::Usage(format!("--data-dir {}: cannot create it: {e}", dir.display())))?;
            let path = dir.join("history.redb");
            let retention = store::Retention {
                max_age: args.retention,
                max_bytes: args.max_size,
            };
            let store = tokio::task::spawn_blocking(move || store::Store::open(&path, retention))
                .await
                .map_err(|e| Error::Io(format!("the store's opening stopped: {e}")))?
                .map_err(|e| Error::Io(e.to_string()))?;
            Some(Arc::new(store))
        }
        Some(_) => None,
    };
    let counters = Arc::new(live::Counters::default());
    let slow = counters.clone();
    let client = args
        .conn
        .connect_with("tlm-dashboard", move |opts| {
            // A bounded buffer per subscription: a flood is dropped by the client (and counted)
            // rather than held in memory.
            opts.subscription_capacity(ingest::SUBSCRIPTION_CAPACITY)
                .event_callback(move |event| {
                    let slow = slow.clone();
                    async move {
                        if let async_nats::Event::SlowConsumer(_) = event {
                            slow.add_slow_consumer();
                        }
                    }
                })
        })
        .await?;
    let history = match (store, &args.stream) {
        (Some(store), _) => history::History::Store(store),
        (None, Some(name)) => {
            history::History::open_stream(&client, name, args.create_stream, args.stream_max_age).await?
        }
        (None, None) => return Err(Error::Usage("no store and no --stream".into())),
    };
    let token = if args.enable_commands { Some(new_token()?) } else { None };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Error::Usage(format!("--listen {}: cannot listen there: {e}", args.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Io(format!("--listen {}: {e}", args.listen)))?;
    let guard = guard::Guard::new(local, &args.allow_origin)?;
    let shared = Arc::new(live::Shared::new(client, history, counters, token.clone(), args.expire));
    if let history::History::Store(store) = &shared.history {
        // What the store holds is shown before anything new arrives.
        let store = store.clone();
        let known = tokio::task::spawn_blocking(move || store.series())
            .await
            .map_err(|e| Error::Io(format!("the store's listing stopped: {e}")))?
            .map_err(|e| Error::Io(e.to_string()))?;
        let mut registry = shared.registry();
        for key in known {
            registry.declare(&key.device, &[serde_json::json!({"id": key.metric})], None);
        }
    }
    let writer = ingest::start(shared.clone()).await?;
    println!("tlm-dashboard: listening on http://{local}/");
    match &token {
        Some(t) => println!("tlm-dashboard: commands enabled; open http://{local}/#token={t}"),
        None => println!("tlm-dashboard: commands disabled (start with --enable-commands to send them from the page)"),
    }
    let served = server::serve(listener, shared.clone(), guard, shutdown_signal()).await;
    ingest::stop(writer).await;
    served
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
