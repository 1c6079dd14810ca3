//! What `--check-config` checks beyond the file itself: that the files the configuration
//! names can be used and that the spool directory can be written, as the service would find
//! them at start. Every problem is reported at once, with its key.

use std::path::Path;

use crate::config::{ConfigError, NatsConfig, Problem, ServiceConfig};
use crate::transport::authenticate;

/// Every resource problem of the `[service]` and `[nats]` sections; `source` names the
/// configuration file.
pub(crate) fn resources(service: &ServiceConfig, nats: &NatsConfig, source: &str) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    let mut problem = |key: &str, message: String| problems.push(Problem::new(key, message));
    // The credentials or NKey seed file, checked as the start checks it.
    if let Err(e) = authenticate(nats, async_nats::ConnectOptions::new()) {
        e.problems.into_iter().for_each(|p| problem(&p.key, p.message));
    }
    for (key, path) in [
        ("nats.tls_ca_file", &nats.tls_ca_file),
        ("nats.tls_cert_file", &nats.tls_cert_file),
        ("nats.tls_key_file", &nats.tls_key_file),
    ] {
        if let Some(path) = path
            && let Err(e) = std::fs::File::open(path)
        {
            problem(key, format!("cannot read {}: {e}", path.display()));
        }
    }
    if let Some((dir, explicit)) = service.spool_dir()
        && let Err(e) = writable(&dir)
    {
        let key = if explicit {
            "service.spool_dir"
        } else {
            "service.spool_dir (STATE_DIRECTORY)"
        };
        problem(key, format!("cannot use {} as the spool: {e}", dir.display()));
    }
    ConfigError::unless_empty(source, problems)
}

/// Whether `dir` can be written, or, where it does not exist yet, made: a file is written
/// (then removed) in it or in its nearest existing parent. Nothing is created for good: a
/// directory made by a check run as root would be root's, and the service's user could not
/// write it.
fn writable(dir: &Path) -> std::io::Result<()> {
    let mut at = dir;
    while !at.exists() {
        at = at
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
    }
    if !at.is_dir() {
        return Err(std::io::Error::other(format!("{} is not a directory", at.display())));
    }
    let probe = at.join(format!(".check-config-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}
