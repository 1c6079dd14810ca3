//! The broker connection flags of the command-line tools (`tlm`, `tlm-dashboard`), named like
//! the `nats` CLI's, and the connection itself.
//!
//! They cover what a service's `[nats]` section covers (PROTOCOL.md section 0): URL,
//! user/password, token, NKey seed, `.creds` file, TLS CA and client certificate. The
//! services' framework is made for services (retry forever, delivery confirmation); a tool
//! wants to fail fast instead, so this builds a plain `async_nats::ConnectOptions`, reading a
//! `.creds` file with the services' own parser ([`crate::creds`]).

use std::path::PathBuf;
use std::time::Duration;

/// Parses a duration on the command line: a number and one of `ms`, `s`, `m`, `h`, `d`, `w`,
/// or a bare number of seconds: `500ms`, `10s`, `1.5`, `2m`, `24h`, `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let x: f64 = num.parse().map_err(|_| {
        format!("{s:?} is not a duration: expected a number with ms, s, m, h, d or w (e.g. 500ms, 10s, 7d)")
    })?;
    let scale = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        "w" => 604_800.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}, expected ms, s, m, h, d or w")),
    };
    Duration::try_from_secs_f64(x * scale).map_err(|_| format!("{s:?}: expected a duration of 0 or more"))
}

/// Why [`ConnArgs::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A flag or a file it names is wrong: the user's to fix.
    #[error("{0}")]
    Usage(String),
    /// The broker could not be reached.
    #[error("{0}")]
    Unreachable(String),
}

/// How to reach the broker.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Connection")]
pub struct ConnArgs {
    /// Broker URL.
    #[arg(
        short = 's',
        long = "server",
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    pub server: String,
    /// User name (with --password).
    #[arg(long, global = true, requires = "password")]
    pub user: Option<String>,
    /// Password (with --user).
    #[arg(long, global = true, requires = "user")]
    pub password: Option<String>,
    /// Authentication token.
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// A `.creds` file (JWT and NKey seed).
    #[arg(long, global = true, value_name = "FILE")]
    pub creds: Option<PathBuf>,
    /// A file holding an NKey seed (`SU...`).
    #[arg(long, global = true, value_name = "FILE")]
    pub nkey: Option<PathBuf>,
    /// CA certificate (PEM) to verify the broker with.
    #[arg(long, global = true, value_name = "FILE")]
    pub tlscacert: Option<PathBuf>,
    /// Client certificate (PEM), with --tlskey.
    #[arg(long, global = true, value_name = "FILE", requires = "tlskey")]
    pub tlscert: Option<PathBuf>,
    /// Client key (PEM), with --tlscert.
    #[arg(long, global = true, value_name = "FILE", requires = "tlscert")]
    pub tlskey: Option<PathBuf>,
    /// How long to try to reach the broker, in seconds.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 5.0)]
    pub connect_timeout: f64,
}

impl ConnArgs {
    /// Connects once as client `name`, or says why not.
    pub async fn connect(&self, name: &str) -> Result<async_nats::Client, ConnectError> {
        self.connect_with(name, |opts| opts).await
    }

    /// [`ConnArgs::connect`], with options of the caller's own on top of the flags' (a
    /// subscription capacity, an event callback).
    pub async fn connect_with(
        &self,
        name: &str,
        more: impl FnOnce(async_nats::ConnectOptions) -> async_nats::ConnectOptions,
    ) -> Result<async_nats::Client, ConnectError> {
        let mut opts = async_nats::ConnectOptions::new().name(name);
        if let Some(path) = &self.creds {
            opts = crate::creds::with_credentials_file(opts, path).map_err(|e| {
                ConnectError::Usage(format!("--creds {}: {e}: expected a NATS .creds file", path.display()))
            })?;
        }
        if let Some(path) = &self.nkey {
            let seed = std::fs::read_to_string(path)
                .map_err(|e| ConnectError::Usage(format!("--nkey {}: cannot read it: {e}", path.display())))?;
            opts = opts.nkey(seed.trim().to_string());
        }
        if let (Some(u), Some(p)) = (&self.user, &self.password) {
            opts = opts.user_and_password(u.clone(), p.clone());
        }
        if let Some(t) = &self.token {
            opts = opts.token(t.clone());
        }
        if let Some(ca) = &self.tlscacert {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let (Some(c), Some(k)) = (&self.tlscert, &self.tlskey) {
            opts = opts.add_client_certificate(c.clone(), k.clone());
        }
        let timeout = Duration::try_from_secs_f64(self.connect_timeout).map_err(|_| {
            ConnectError::Usage(format!(
                "--connect-timeout {}: expected seconds >= 0",
                self.connect_timeout
            ))
        })?;
        // The per-request timeout is applied by each subcommand itself.
        opts = more(opts.connection_timeout(timeout).request_timeout(None));
        opts.connect(self.server.as_str()).await.map_err(|e| {
            ConnectError::Unreachable(format!(
                "cannot connect to the broker at {}: {e}: is nats-server running? (set --server or NATS_URL)",
                self.server
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert!(parse_duration("5 parsecs").unwrap_err().contains("ms, s, m, h, d or w"));
        assert!(parse_duration("5y").unwrap_err().contains("unknown unit \"y\""));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
    }
}
