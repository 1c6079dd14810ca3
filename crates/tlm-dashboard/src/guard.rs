//! The checks every request passes before it is served.
//!
//! - **Host**: listening on a loopback address, the dashboard answers only requests whose
//!   `Host` is that address or `localhost` with its port. A page on another site that makes
//!   its own name resolve to 127.0.0.1 (DNS rebinding) is refused, so it cannot read the
//!   telemetry or reach the API.
//! - **Origin**: a request a browser sends from a page sets `Origin`. It must be the
//!   dashboard's own (`http://` + the `Host` it was sent to) or one given with
//!   `--allow-origin`; a page of another origin cannot call the API, not even a simple POST
//!   that needs no preflight. Requests without `Origin` (curl, scripts) pass this check.
//! - **Token** (commands only, in the handler): `Authorization: Bearer <token>`.

use std::net::SocketAddr;

use crate::Error;

/// The Host and Origin rules for one listening address.
#[derive(Debug, Clone)]
pub struct Guard {
    /// When listening on loopback: the only `Host` values accepted.
    hosts: Option<Vec<String>>,
    /// Origins accepted besides the request's own.
    extra_origins: Vec<String>,
}

impl Guard {
    /// The rules for a server listening on `local`, with `--allow-origin` values.
    pub fn new(local: SocketAddr, allow_origin: &[String]) -> Result<Guard, Error> {
        let port = local.port();
        let hosts = local.ip().is_loopback().then(|| {
            let mut hosts = vec![
                format!("localhost:{port}"),
                format!("127.0.0.1:{port}"),
                format!("[::1]:{port}"),
            ];
            let own = local.to_string();
            if !hosts.contains(&own) {
                hosts.push(own);
            }
            hosts
        });
        let mut extra_origins = Vec::new();
        for origin in allow_origin {
            let trimmed = origin.trim_end_matches('/');
            let ok = ["http://", "https://"].iter().any(|scheme| {
                trimmed
                    .strip_prefix(scheme)
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
            });
            if !ok {
                return Err(Error::Usage(format!(
                    "--allow-origin {origin:?}: expected scheme://host[:port], e.g. https://dash.example.com"
                )));
            }
            extra_origins.push(trimmed.to_ascii_lowercase());
        }
        Ok(Guard { hosts, extra_origins })
    }

    /// Whether a request with these headers may be served; the reason when not.
    pub fn check(&self, host: Option<&str>, origin: Option<&str>) -> Result<(), String> {
        let host = host.map(str::to_ascii_lowercase);
        if let Some(allowed) = &self.hosts {
            match &host {
                Some(h) if allowed.contains(h) => {}
                Some(h) => {
                    return Err(format!(
                        "Host {h:?} refused: this dashboard listens on loopback and answers only to {} (a guard against DNS rebinding)",
                        allowed.join(", ")
                    ));
                }
                None => return Err("no Host header: expected the address the dashboard listens on".into()),
            }
        }
        let Some(origin) = origin else { return Ok(()) };
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        let own = host.as_ref().is_some_and(|h| origin == format!("http://{h}"));
        if own || self.extra_origins.contains(&origin) {
            Ok(())
        } else {
            Err(format!(
                "Origin {origin:?} refused: only pages of this dashboard ({}) may call it; add --allow-origin for another",
                host.map(|h| format!("http://{h}"))
                    .unwrap_or_else(|| "its own origin".into())
            ))
        }
    }
}

/// Compares a presented token with the expected one in time independent of where they differ.
pub fn token_matches(presented: &str, expected: &str) -> bool {
    presented.len() == expected.len()
        && presented
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> Guard {
        Guard::new("127.0.0.1:8088".parse().unwrap(), &[]).unwrap()
    }

    #[test]
    fn loopback_answers_only_to_its_own_names() {
        let g = loopback();
        assert!(g.check(Some("127.0.0.1:8088"), None).is_ok());
        assert!(g.check(Some("localhost:8088"), None).is_ok());
        assert!(g.check(Some("LOCALHOST:8088"), None).is_ok());
        // DNS rebinding: another name that resolves to 127.0.0.1.
        let e = g.check(Some("evil.example:8088"), None).unwrap_err();
        assert!(e.contains("evil.example:8088") && e.contains("DNS rebinding"), "{e}");
        assert!(g.check(Some("127.0.0.1:9999"), None).is_err());
        assert!(g.check(None, None).is_err());
    }

    #[test]
    fn origin_must_be_the_dashboards_own() {
        let g = loopback();
        assert!(g.check(Some("127.0.0.1:8088"), Some("http://127.0.0.1:8088")).is_ok());
        assert!(g.check(Some("localhost:8088"), Some("http://localhost:8088")).is_ok());
        // Sent to one name from a page of another.
        assert!(g.check(Some("127.0.0.1:8088"), Some("http://localhost:8088")).is_err());
        let e = g
            .check(Some("127.0.0.1:8088"), Some("https://evil.example"))
            .unwrap_err();
        assert!(
            e.contains("https://evil.example") && e.contains("--allow-origin"),
            "{e}"
        );
        assert!(g.check(Some("127.0.0.1:8088"), Some("null")).is_err());
    }

    #[test]
    fn exposed_dashboards_take_any_host_but_still_check_the_origin() {
        let g = Guard::new("0.0.0.0:8088".parse().unwrap(), &["https://dash.example.com/".into()]).unwrap();
        assert!(g.check(Some("10.0.0.7:8088"), Some("http://10.0.0.7:8088")).is_ok());
        assert!(g.check(Some("10.0.0.7:8088"), Some("https://dash.example.com")).is_ok());
        assert!(g.check(Some("10.0.0.7:8088"), Some("http://10.0.0.8:8088")).is_err());
    }

    #[test]
    fn allow_origin_values_are_checked() {
        let e = Guard::new("127.0.0.1:1".parse().unwrap(), &["dash.example.com".into()]).unwrap_err();
        assert!(e.to_string().contains("expected scheme://host[:port]"), "{e}");
        assert!(Guard::new("127.0.0.1:1".parse().unwrap(), &["https://x/y".into()]).is_err());
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(token_matches("abc123", "abc123"));
        assert!(!token_matches("abc124", "abc123"));
        assert!(!token_matches("abc12", "abc123"));
        assert!(!token_matches("", "abc123"));
    }
}
