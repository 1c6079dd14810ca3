//! Configuration shared by every service: the `[service]` and `[nats]` sections, the
//! plugin's own section, and how they are loaded.
//!
//! Precedence: the TOML file (`/etc/tolomeo/<service>.toml`), then the environment
//! (`NATS_URL`, `DEVICE_SERIAL_NUMBER`), then command-line flags. Every section refuses
//! unknown keys. Every error names the file, the key and what was expected; a service exits
//! with 78 (EX_CONFIG) on any of them. Defaults are defined once, in the `Default` impls here.
//!
//! Two steps. Reading ([`Config::from_toml`], [`Config::load`]) stops at the first syntax
//! error, wrong type or unknown key: the values after it cannot be read. Checking is one pass:
//! the ranges and cross-field rules of `[service]` and `[nats]` ([`Config::problems`]) and the
//! plugin's build function, which checks its section and constructs the plugin in one call
//! ([`Config::build`]); their problems are reported together.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// A plugin's configuration section. Derive `Deserialize` with `#[serde(deny_unknown_fields, default)]`.
///
/// Its checks beyond types (ranges, cross-field rules, the files it names) belong to the
/// service's build function given to [`crate::cli::main`], which checks the section and
/// constructs the plugin in one call, and returns every problem it finds in one
/// [`ConfigError`], keys relative to the section (`devices[0].port`).
pub trait PluginConfig: Serialize + DeserializeOwned + Default + Send + Sync + 'static {
    /// The TOML table holding it, e.g. `cpu` for `[cpu]`.
    const SECTION: &'static str;
    /// What `--check-config` warns about without failing: devices the configuration names that
    /// are absent now but may appear later (a serial adapter, a CAN interface). Keys relative to
    /// the section.
    fn absent_now(&self) -> Vec<Problem> {
        Vec::new()
    }
}

/// A service without a configuration section of its own.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}

impl PluginConfig for NoConfig {
    const SECTION: &'static str = "plugin";
}

/// The poll periods `service.poll_time_ms` and `SetPollTime` accept, in milliseconds.
pub const POLL_TIME_RANGE_MS: std::ops::RangeInclusive<u64> = 100..=3_600_000;

/// What a plugin's build function sees of the service, besides its own section.
///
/// Given to the function passed to [`crate::cli::main`] (and to [`Config::build`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BuildContext {
    /// The service's poll period at start: `service.poll_time_ms` after the file and
    /// `--poll-time-ms`, or the service's default (`ServiceSpec::default_poll_time`) when
    /// neither sets it; the period [`crate::Settings::poll_time`] gives. When the file's value
    /// is itself out of range (and no flag replaces it), the default: that problem is
    /// reported with the plugin's. `SetPollTime` changes the period at run time: a plugin that
    /// follows it reads [`crate::PluginContext::poll_time`] once started.
    pub poll_time: Duration,
}

impl BuildContext {
    /// A context with the service's poll period `poll_time`.
    pub fn new(poll_time: Duration) -> Self {
        BuildContext { poll_time }
    }
}

/// `[service]`: the poll loop, heartbeat, announcement, commands and delivery buffer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// How often readings are drained and published, in ms (100 to 3,600,000). When absent,
    /// the service's own default (e.g. 10 s for cpu-monitor). Changed at run time by `SetPollTime`.
    pub poll_time_ms: Option<u64>,
    /// Heartbeat period in ms (the agent marks a service offline after 10 s of silence).
    pub heartbeat_interval_ms: u64,
    /// Period of the `events.params` announcement, in seconds.
    pub params_interval_s: u64,
    /// How long a command may run, in ms, before it is answered with `timeout`.
    pub command_timeout_ms: u64,
    /// Most records in one `events.data` pack.
    pub max_pack_records: usize,
    /// Most bytes in one `events.data` pack (never more than the broker's `max_payload`).
    pub max_pack_bytes: usize,
    /// Records held while the broker is unreachable; beyond this the oldest are dropped and counted.
    pub buffer_records: usize,
    /// Readings the plugin may queue between two polls.
    pub reading_queue: usize,
    /// Send `bn` on the first record of each pack only (RFC 8428 allows it).
    pub compact: bool,
    /// On SIGTERM, how long to keep trying to deliver what is buffered, in ms.
    pub shutdown_timeout_ms: u64,
    /// Directory of the disk spool: records not yet confirmed by the broker are written there
    /// and survive a crash or a power cut. When absent, `$STATE_DIRECTORY/spool` if systemd set
    /// `StateDirectory=` (the packaged units do), else memory only. `""` turns it off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spool_dir: Option<PathBuf>,
    /// Most bytes the spool may take on disk; beyond it the oldest batches are dropped and logged.
    pub spool_max_bytes: u64,
    /// fsync the spool after this many written batches (1: every poll; 0: never, the kernel
    /// writes it back within about 30 s).
    pub spool_fsync_batches: u32,
}

impl ServiceConfig {
    /// The spool directory a service uses: `service.spool_dir`, or `$STATE_DIRECTORY/spool` under
    /// systemd; None when off. The bool says whether it was configured explicitly.
    pub(crate) fn spool_dir(&self) -> Option<(PathBuf, bool)> {
        match &self.spool_dir {
            Some(d) if d.as_os_str().is_empty() => None,
            Some(d) => Some((d.clone(), true)),
            None => {
                let dirs = std::env::var_os("STATE_DIRECTORY")?;
                // systemd gives a colon-separated list when several are configured: the first is ours.
                let first = dirs.to_string_lossy().split(':').next()?.to_string();
                (!first.is_empty()).then(|| (PathBuf::from(first).join("spool"), false))
            }
        }
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            poll_time_ms: None,
            heartbeat_interval_ms: 5_000,
            params_interval_s: 600,
            command_timeout_ms: 10_000,
            max_pack_records: 1_000,
            max_pack_bytes: 512 * 1024,
            buffer_records: 100_000,
            reading_queue: 10_000,
            compact: false,
            shutdown_timeout_ms: 5_000,
            spool_dir: None,
            spool_max_bytes: 64 * 1024 * 1024,
            spool_fsync_batches: 1,
        }
    }
}

/// `[nats]`: how to reach the device-local broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Broker URL; the `NATS_URL` environment variable overrides it.
    pub url: String,
    /// Connection name shown by the broker (default: the service name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// User name (with `password`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password (with `user`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Authentication token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// File holding an NKey seed (`SU...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nkey_seed_file: Option<PathBuf>,
    /// A `.creds` file (JWT and NKey seed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creds_file: Option<PathBuf>,
    /// CA certificate (PEM) to verify the broker with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM), with `tls_key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    /// Client key (PEM), with `tls_cert_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
    /// Refuse a connection without TLS.
    pub tls_required: bool,
    /// How long one connection attempt may take, in ms.
    pub connect_timeout_ms: u64,
    /// How long to wait for the broker to confirm a batch of packs, in ms.
    pub confirm_timeout_ms: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            name: None,
            user: None,
            password: None,
            token: None,
            nkey_seed_file: None,
            creds_file: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_required: false,
            connect_timeout_ms: 5_000,
            confirm_timeout_ms: 5_000,
        }
    }
}

/// A whole service configuration: the shared sections and the plugin's.
#[derive(Debug, Clone, Default)]
pub struct Config<P> {
    /// `[service]`.
    pub service: ServiceConfig,
    /// `[nats]`.
    pub nats: NatsConfig,
    /// The plugin's section.
    pub plugin: P,
}

/// One problem with a configuration value: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `service.poll_time_ms` or `devices[1].port`.
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl Problem {
    /// A problem at `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Configuration errors, all of them at once, with the source they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or a description of the source (`environment`, `command line`).
    pub source: String,
    /// Every problem found.
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// `Ok` when there is no problem, else every problem from `source`.
    pub(crate) fn unless_empty(source: &str, problems: Vec<Problem>) -> Result<(), ConfigError> {
        if problems.is_empty() {
            return Ok(());
        }
        Err(ConfigError {
            source: source.to_string(),
            problems,
        })
    }

    /// One problem from `source`.
    pub fn one(source: impl Into<String>, key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            source: source.into(),
            problems: vec![Problem::new(key, message)],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if p.key.is_empty() {
                write!(f, "{}: {}", self.source, p.message)?;
            } else {
                write!(f, "{}: `{}`: {}", self.source, p.key, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl<P: PluginConfig> Config<P> {
    /// Parse TOML text; `source` names it in errors (usually the file path). Refuses invalid
    /// TOML, unknown sections and keys, and values of the wrong type, the first one alone (the
    /// values after it cannot be read); ranges are [`Config::problems`] and the plugin's build.
    pub fn from_toml(text: &str, source: &str) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::parse(text)
            .map_err(|e| ConfigError::one(source, "", format!("not valid TOML: {}", describe(&e, text))))?;
        let root: Root<P> = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            ConfigError::one(source, key, describe(&e.into_inner(), text))
        })?;
        Ok(Config {
            service: root.service,
            nats: root.nats,
            plugin: root.plugin,
        })
    }

    /// Read a file, as [`Config::from_toml`]. A missing file is an error when `required` (the
    /// user named it), otherwise the defaults are used.
    pub fn load(path: &Path, required: bool) -> Result<Self, ConfigError> {
        let source = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_toml(&text, &source),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                tracing::info!("no configuration file at {source}; using the defaults");
                Ok(Config::default())
            }
            Err(e) => Err(ConfigError::one(source, "", format!("cannot read the file: {e}"))),
        }
    }

    /// Range and cross-field problems of `[service]` and `[nats]`, every one of them; keys
    /// absolute (`service.poll_time_ms`).
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = self.service.problems();
        problems.extend(self.nats.problems());
        problems
    }

    /// Check and build in one pass: `build` checks the plugin's section and constructs what it
    /// describes; its problems and [`Config::problems`] are reported together, from `source`.
    /// Keys `build` gives relative to the section (`devices[0].port`) get it prefixed
    /// (`modbus.devices[0].port`).
    pub fn build<T, F>(&self, source: &str, ctx: &BuildContext, build: F) -> Result<T, ConfigError>
    where
        F: FnOnce(&P, &BuildContext) -> Result<T, ConfigError>,
    {
        together::<P, T>(source, self.problems(), build(&self.plugin, ctx))
    }

    /// The effective configuration as TOML, secrets replaced by `<redacted>`.
    pub fn to_toml(&self) -> Result<String, String> {
        let mut nats = self.nats.clone();
        for secret in [&mut nats.password, &mut nats.token] {
            if secret.is_some() {
                *secret = Some("<redacted>".into());
            }
        }
        #[derive(Serialize)]
        struct Out<'a, P> {
            service: &'a ServiceConfig,
            nats: &'a NatsConfig,
            #[serde(flatten)]
            plugin: std::collections::BTreeMap<&'static str, &'a P>,
        }
        let out = Out {
            service: &self.service,
            nats: &nats,
            plugin: [(P::SECTION, &self.plugin)].into_iter().collect(),
        };
        toml::to_string_pretty(&out).map_err(|e| e.to_string())
    }
}

/// The shared sections' `problems` and what building the plugin gave, as one result from
/// `source`: the built value only when there is no problem at all. The plugin's keys relative
/// to its section get the section prefixed; an empty key becomes the section itself.
pub(crate) fn together<P: PluginConfig, T>(
    source: &str,
    mut problems: Vec<Problem>,
    built: Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let built = match built {
        Ok(value) => Some(value),
        Err(e) => {
            let prefix = format!("{}.", P::SECTION);
            problems.extend(e.problems.into_iter().map(|p| Problem {
                key: if p.key.is_empty() {
                    P::SECTION.to_string()
                } else if p.key == P::SECTION || p.key.starts_with(&prefix) {
                    p.key
                } else {
                    format!("{prefix}{}", p.key)
                },
                message: p.message,
            }));
            None
        }
    };
    match built {
        Some(value) if problems.is_empty() => Ok(value),
        _ => Err(ConfigError {
            source: source.to_string(),
            // A build that fails must say why; were it silent, still fail with a reason.
            problems: if problems.is_empty() {
                vec![Problem::new(
                    P::SECTION,
                    "the plugin could not be built from this section",
                )]
            } else {
                problems
            },
        }),
    }
}

/// toml's message on one line, with the position: `invalid type: ..., expected u64 (line 2, column 16)`.
fn describe(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim().replace('\n', "; ");
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("{message} (line {line}, column {column})")
        }
        None => message,
    }
}

impl ServiceConfig {
    fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if let Some(message) = self.poll_time_ms.and_then(poll_time_problem) {
            out.push(Problem::new("service.poll_time_ms", message));
        }
        let mut check = |key: &str, ok: bool, expected: String| {
            if !ok {
                out.push(Problem::new(format!("service.{key}"), expected));
            }
        };
        check(
            "heartbeat_interval_ms",
            (100..=60_000).contains(&self.heartbeat_interval_ms),
            format!("{} is out of range, expected 100 to 60000", self.heartbeat_interval_ms),
        );
        check(
            "params_interval_s",
            (1..=86_400).contains(&self.params_interval_s),
            format!("{} is out of range, expected 1 to 86400", self.params_interval_s),
        );
        check(
            "command_timeout_ms",
            (10..=600_000).contains(&self.command_timeout_ms),
            format!("{} is out of range, expected 10 to 600000", self.command_timeout_ms),
        );
        check(
            "max_pack_records",
            self.max_pack_records >= 1,
            "must be at least 1".into(),
        );
        check(
            "max_pack_bytes",
            (1024..=64 * 1024 * 1024).contains(&self.max_pack_bytes),
            format!("{} is out of range, expected 1024 to 67108864", self.max_pack_bytes),
        );
        check("buffer_records", self.buffer_records >= 1, "must be at least 1".into());
        check(
            "spool_max_bytes",
            (1024 * 1024..=64 * 1024 * 1024 * 1024).contains(&self.spool_max_bytes),
            format!(
                "{} is out of range, expected 1048576 (1 MiB) to 68719476736 (64 GiB)",
                self.spool_max_bytes
            ),
        );
        check(
            "reading_queue",
            (1..=10_000_000).contains(&self.reading_queue),
            format!("{} is out of range, expected 1 to 10000000", self.reading_queue),
        );
        out
    }
}

/// What is wrong with a poll period of `ms`, if anything.
pub(crate) fn poll_time_problem(ms: u64) -> Option<String> {
    (!POLL_TIME_RANGE_MS.contains(&ms)).then(|| {
        format!(
            "{ms} is out of range, expected {} to {}",
            POLL_TIME_RANGE_MS.start(),
            POLL_TIME_RANGE_MS.end()
        )
    })
}

impl NatsConfig {
    fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if let Err(e) = check_url(&self.url) {
            out.push(Problem::new("nats.url", e));
        }
        if self.user.is_some() != self.password.is_some() {
            out.push(Problem::new(
                "nats.user",
                "`user` and `password` go together; set both or neither",
            ));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            out.push(Problem::new(
                "nats.tls_cert_file",
                "`tls_cert_file` and `tls_key_file` go together; set both or neither",
            ));
        }
        let auth = [
            self.user.is_some(),
            self.token.is_some(),
            self.nkey_seed_file.is_some(),
            self.creds_file.is_some(),
        ];
        if auth.iter().filter(|x| **x).count() > 1 {
            out.push(Problem::new(
                "nats",
                "choose one way to authenticate: user/password, token, nkey_seed_file or creds_file",
            ));
        }
        if self.connect_timeout_ms == 0 || self.confirm_timeout_ms == 0 {
            out.push(Problem::new("nats.confirm_timeout_ms", "timeouts must be above 0 ms"));
        }
        out
    }
}

/// Check a broker URL (or comma-separated list): `nats://`, `tls://`, `ws://` or a bare `host:port`.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.trim().is_empty() {
        return Err("empty URL; expected e.g. nats://127.0.0.1:4222".into());
    }
    for part in url.split(',') {
        let part = part.trim();
        let rest = match part.split_once("://") {
            Some((scheme, rest)) => {
                if !matches!(scheme, "nats" | "tls" | "ws" | "wss") {
                    return Err(format!(
                        "{part:?}: unknown scheme `{scheme}`, expected nats://, tls://, ws:// or wss://"
                    ));
                }
                rest
            }
            None => part,
        };
        let host = rest.rsplit('@').next().unwrap_or(rest);
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(format!(
                "{part:?} has no valid host; expected e.g. nats://127.0.0.1:4222"
            ));
        }
        if let Some((_, port)) = host.rsplit_once(':')
            && !port.is_empty()
            && !host.ends_with(']')
            && port.parse::<u16>().is_err()
        {
            return Err(format!("{part:?}: port `{port}` is not a number from 0 to 65535"));
        }
    }
    Ok(())
}

/// The file's top level: `[service]`, `[nats]` and the plugin's section, nothing else.
struct Root<P> {
    service: ServiceConfig,
    nats: NatsConfig,
    plugin: P,
}

impl<'de, P: PluginConfig> Deserialize<'de> for Root<P> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<P>(std::marker::PhantomData<P>);
        impl<'de, P: PluginConfig> Visitor<'de> for V<P> {
            type Value = Root<P>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "tables [service], [nats] and [{}]", P::SECTION)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Root<P>, A::Error> {
                let (mut service, mut nats, mut plugin) = (None, None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "service" if service.is_none() => service = Some(map.next_value()?),
                        "nats" if nats.is_none() => nats = Some(map.next_value()?),
                        k if k == P::SECTION && plugin.is_none() => plugin = Some(map.next_value()?),
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown section `{other}`, expected `service`, `nats` or `{}`",
                                P::SECTION
                            )));
                        }
                    }
                }
                Ok(Root {
                    service: service.unwrap_or_default(),
                    nats: nats.unwrap_or_default(),
                    plugin: plugin.unwrap_or_default(),
                })
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Temp {
        unit: String,
    }
    impl PluginConfig for Temp {
        const SECTION: &'static str = "temp";
    }

    /// A build function: checks the unit and returns it, with the poll period it was given.
    fn build_temp(t: &Temp, ctx: &BuildContext) -> Result<(String, Duration), ConfigError> {
        match t.unit.as_str() {
            "" | "C" | "F" => Ok((t.unit.clone(), ctx.poll_time)),
            u => Err(ConfigError::one(
                "[temp]",
                "unit",
                format!("{u:?} is not a unit, expected \"C\" or \"F\""),
            )),
        }
    }

    const SOURCE: &str = "/etc/tolomeo/t.toml";

    fn parse(text: &str) -> Result<Config<Temp>, ConfigError> {
        Config::<Temp>::from_toml(text, SOURCE)
    }

    /// Read, check and build, as a service does.
    fn check(text: &str) -> Result<(String, Duration), ConfigError> {
        parse(text)?.build(SOURCE, &BuildContext::new(Duration::from_secs(7)), build_temp)
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.service, ServiceConfig::default());
        assert_eq!(c.nats.url, "nats://127.0.0.1:4222");
        assert_eq!(c.service.heartbeat_interval_ms, 5000);
        assert_eq!(c.service.max_pack_bytes, 524_288);
    }

    #[test]
    fn sections_are_read() {
        let c = parse("[service]\npoll_time_ms = 5000\n[nats]\nurl = \"nats://10.0.0.1:4333\"\n[temp]\nunit = \"F\"\n")
            .unwrap();
        assert_eq!(c.service.poll_time_ms, Some(5000));
        assert_eq!(c.nats.url, "nats://10.0.0.1:4333");
        assert_eq!(c.plugin.unit, "F");
    }

    #[test]
    fn unknown_keys_name_the_key_and_the_expected_ones() {
        let e = parse("[service]\npol_time_ms = 5\n").unwrap_err().to_string();
        assert!(e.starts_with("/etc/tolomeo/t.toml: "), "{e}");
        assert!(e.contains("pol_time_ms") && e.contains("poll_time_ms"), "{e}");
        let e = parse("[cpu]\nx = 1\n").unwrap_err().to_string();
        assert!(e.contains("unknown section `cpu`") && e.contains("`temp`"), "{e}");
    }

    #[test]
    fn wrong_types_name_the_key_path_and_line() {
        let e = parse("[service]\n\npoll_time_ms = \"fast\"\n").unwrap_err().to_string();
        assert!(e.contains("`service.poll_time_ms`"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("expected u64"), "{e}");
    }

    #[test]
    fn ranges_and_plugin_rules_are_all_reported() {
        let e = check("[service]\npoll_time_ms = 50\n[temp]\nunit = \"K\"\n").unwrap_err();
        assert_eq!(e.source, SOURCE);
        assert_eq!(e.problems.len(), 2, "{e}");
        assert_eq!(e.problems[0].key, "service.poll_time_ms");
        assert!(e.problems[0].message.contains("expected 100 to 3600000"));
        assert_eq!(e.problems[1].key, "temp.unit");
        assert!(e.problems[1].message.contains("\"K\" is not a unit"), "{e}");
    }

    #[test]
    fn the_build_sees_the_context_and_runs_once_even_when_the_service_section_is_wrong() {
        assert_eq!(
            check("[temp]\nunit = \"F\"\n").unwrap(),
            ("F".into(), Duration::from_secs(7))
        );
        let mut calls = 0;
        let e = parse("[service]\nheartbeat_interval_ms = 1\n")
            .unwrap()
            .build(SOURCE, &BuildContext::new(Duration::from_secs(1)), |t, ctx| {
                calls += 1;
                build_temp(t, ctx)
            })
            .unwrap_err();
        assert_eq!(calls, 1);
        let keys: Vec<_> = e.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["service.heartbeat_interval_ms"], "{e}");
    }

    #[test]
    fn plugin_keys_get_the_section_once() {
        let built: Result<(), ConfigError> = Err(ConfigError {
            source: "ignored".into(),
            problems: vec![
                Problem::new("unit", "a"),
                Problem::new("temp.unit", "b"),
                Problem::new("", "c"),
            ],
        });
        let e = together::<Temp, ()>(SOURCE, vec![Problem::new("nats.url", "d")], built).unwrap_err();
        assert_eq!(e.source, SOURCE);
        let keys: Vec<_> = e.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["nats.url", "temp.unit", "temp.unit", "temp"]);
    }

    #[test]
    fn reading_does_not_check_ranges() {
        let c = parse("[service]\npoll_time_ms = 50\n").unwrap();
        assert_eq!(c.service.poll_time_ms, Some(50));
        assert_eq!(c.problems().len(), 1);
    }

    #[test]
    fn nats_options_are_checked() {
        let e = check("[nats]\nurl = \"http://x\"\nuser = \"a\"\n").unwrap_err();
        let keys: Vec<_> = e.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["nats.url", "nats.user"]);
        assert!(check_url("nats://a:4222,nats://b:4223").is_ok());
        assert!(check_url("127.0.0.1:4222").is_ok());
        assert!(check_url("nats://a:x").is_err());
    }

    #[test]
    fn invalid_toml_is_reported_with_its_position() {
        let e = parse("[service\n").unwrap_err().to_string();
        assert!(e.contains("not valid TOML") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn printed_config_hides_secrets_and_parses_back() {
        let mut c = parse("[nats]\ntoken = \"s3cret\"\n[temp]\nunit = \"C\"\n").unwrap();
        c.service.poll_time_ms = Some(1000);
        let text = c.to_toml().unwrap();
        assert!(!text.contains("s3cret") && text.contains("<redacted>"), "{text}");
        let back = parse(&text).unwrap();
        assert_eq!(back.service, c.service);
        assert_eq!(back.plugin, c.plugin);
    }
}
