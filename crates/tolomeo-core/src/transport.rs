//! The NATS side: connecting with the configured credentials, following the connection's
//! state, and publishing with a confirmation from the broker.
//!
//! `async-nats`'s `flush` only writes the socket; it does not wait for the broker. A batch
//! of packs counts as delivered here only when a marker published after it has come back
//! from the broker on a private subject, on the same connection (a reconnect in between
//! makes the batch unconfirmed, so it is sent again: delivery is at-least-once).
//!
//! Its items are `pub` so that `benches/publish.rs` can measure them (feature
//! `bench-internals`); without the feature the module is private to the crate.

#![cfg_attr(not(feature = "bench-internals"), allow(unreachable_pub))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::config::{ConfigError, NatsConfig};
use crate::senml::{self, OutRecord, PackLimits};

/// The connection's state as the service sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkState {
    /// Connected to the broker now.
    pub connected: bool,
    /// How many times a connection has been established (changes on every reconnect).
    pub epoch: u64,
}

/// Why a link could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The `[nats]` configuration is wrong (an unreadable credentials file, a bad URL).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The broker refused something the service needs.
    #[error("{0}")]
    Refused(String),
}

/// Why a batch was not confirmed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Not connected, or the connection changed while the batch was in flight.
    #[error("the broker connection was lost")]
    Disconnected,
    /// The marker did not come back in time.
    #[error("the broker did not confirm within {0:?}")]
    Timeout(Duration),
    /// One pack is larger than the broker accepts (nothing of the batch was sent).
    #[error("a pack of {size} bytes is over the broker's max_payload of {max} bytes")]
    TooLarge {
        /// Index of the pack in the batch (of its first record, from `publish_records`).
        index: usize,
        /// How many records it holds (1 from `publish_confirmed`).
        records: usize,
        /// Its size.
        size: usize,
        /// The broker's limit.
        max: usize,
    },
    /// The client refused the publish.
    #[error("publish failed: {0}")]
    Publish(String),
}

/// Refuse a secret file that other users can read (like ssh refuses an open private key).
pub fn check_private(path: &std::path::Path, key: &str) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| ConfigError::one("configuration", key, format!("cannot read {}: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o004 != 0 {
        return Err(ConfigError::one(
            "configuration",
            key,
            format!(
                "{} is readable by every user (mode {mode:03o}); it holds a secret: restrict it with `chmod 600 {}` (or 640 with a dedicated group)",
                path.display(),
                path.display()
            ),
        ));
    }
    Ok(())
}

/// `opts` with the credentials file or NKey seed file of `cfg`, each checked: not readable by
/// every user, readable, and holding what it should. `Link::connect` and `--check-config` both
/// use it, so the check finds what the start would.
pub(crate) fn authenticate(
    cfg: &NatsConfig,
    mut opts: async_nats::ConnectOptions,
) -> Result<async_nats::ConnectOptions, ConfigError> {
    if let Some(path) = &cfg.creds_file {
        check_private(path, "nats.creds_file")?;
        opts = tolomeo_proto::creds::with_credentials_file(opts, path).map_err(|e| {
            ConfigError::one(
                "configuration",
                "nats.creds_file",
                format!("cannot use {}: {e}", path.display()),
            )
        })?;
    }
    if let Some(path) = &cfg.nkey_seed_file {
        check_private(path, "nats.nkey_seed_file")?;
        let seed = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                let seed = text.trim().to_string();
                nkeys::KeyPair::from_seed(&seed)
                    .map(|_| seed)
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| {
                ConfigError::one(
                    "configuration",
                    "nats.nkey_seed_file",
                    format!("cannot use {}: {e}: expected an NKey seed (SU...)", path.display()),
                )
            })?;
        opts = opts.nkey(seed);
    }
    Ok(opts)
}

/// A NATS client with its state and the confirmation subscription.
pub struct Link {
    client: async_nats::Client,
    state: watch::Receiver<LinkState>,
    ack_subject: String,
    ack: tokio::sync::Mutex<async_nats::Subscriber>,
    refusal: Arc<watch::Sender<Option<String>>>,
    ack_seq: AtomicU64,
    confirm_timeout: Duration,
}

impl Link {
    /// Start connecting. Returns at once: the connection is made in the background and
    /// re-made forever after every loss. Only configuration problems (unreadable credential
    /// files) are errors.
    pub async fn connect(cfg: &NatsConfig, default_name: &str) -> Result<Link, LinkError> {
        let (state_tx, state) = watch::channel(LinkState::default());
        let state_tx = Arc::new(state_tx);
        let refusal = Arc::new(watch::Sender::new(None));
        let mut opts = authenticate(cfg, async_nats::ConnectOptions::new())?;
        if let (Some(u), Some(p)) = (&cfg.user, &cfg.password) {
            opts = opts.user_and_password(u.clone(), p.clone());
        }
        if let Some(t) = &cfg.token {
            opts = opts.token(t.clone());
        }
        if let Some(ca) = &cfg.tls_ca_file {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let (Some(c), Some(k)) = (&cfg.tls_cert_file, &cfg.tls_key_file) {
            opts = opts.add_client_certificate(c.clone(), k.clone());
        }
        let events_tx = state_tx.clone();
        let events_refusal = refusal.clone();
        opts = opts
            .require_tls(cfg.tls_required)
            .name(cfg.name.clone().unwrap_or_else(|| default_name.to_string()))
            .connection_timeout(Duration::from_millis(cfg.connect_timeout_ms))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                // A device-local broker: come back quickly after its restart, without spinning.
                Duration::from_millis((100u64 << attempts.min(5)).min(2_000))
            })
            .event_callback(move |event| {
                let tx = events_tx.clone();
                let refusal = events_refusal.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tx.send_modify(|s| {
                                s.connected = true;
                                s.epoch += 1;
                            });
                            tracing::info!("connected to the broker");
                        }
                        async_nats::Event::Disconnected => {
                            tx.send_modify(|s| s.connected = false);
                            tracing::warn!("disconnected from the broker; collecting into the buffer meanwhile");
                        }
                        // The broker accepted the user but not a subject it needs: a restart
                        // (after the broker's configuration is fixed) is the way out.
                        async_nats::Event::ServerError(async_nats::ServerError::Other(e))
                            if e.to_lowercase().contains("permissions violation") =>
                        {
                            refusal.send_replace(Some(format!("the broker refused: {e}")));
                        }
                        other => tracing::info!("broker event: {other}"),
                    }
                }
            });
        let client = opts
            .connect(cfg.url.as_str())
            .await
            .map_err(|e| ConfigError::one("configuration", "nats.url", format!("{e}")))?;
        let ack_subject = format!("_TLM_ACK.{}", client.new_inbox().replace('.', "_"));
        let ack = client
            .subscribe(ack_subject.clone())
            .await
            .map_err(|e| LinkError::Refused(format!("cannot subscribe to {ack_subject}: {e}")))?;
        Ok(Link {
            client,
            state,
            ack_subject,
            ack: tokio::sync::Mutex::new(ack),
            ack_seq: AtomicU64::new(0),
            refusal,
            confirm_timeout: Duration::from_millis(cfg.confirm_timeout_ms),
        })
    }

    /// Why the broker refuses what the service needs (a subject's permission, a
    /// subscription), once it did: the service cannot do its job and stops.
    pub fn refusal(&self) -> watch::Receiver<Option<String>> {
        self.refusal.subscribe()
    }

    /// Record that the broker refused something the service needs.
    pub fn refuse(&self, why: String) {
        self.refusal.send_replace(Some(why));
    }

    /// The client, for subscriptions.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// A receiver of the connection state.
    pub fn state(&self) -> watch::Receiver<LinkState> {
        self.state.clone()
    }

    /// Connected now?
    pub fn is_connected(&self) -> bool {
        self.state.borrow().connected
    }

    /// The broker's `max_payload` (1 MiB until the first connection tells).
    pub fn max_payload(&self) -> usize {
        match self.client.max_payload() {
            0 => 1024 * 1024,
            n => n,
        }
    }

    /// Publish without confirmation, only when connected (heartbeats, announcements,
    /// command responses: stale copies of them are worth nothing after an outage).
    pub async fn publish_now(&self, subject: String, payload: Bytes) -> bool {
        if !self.is_connected() {
            return false;
        }
        match tokio::time::timeout(self.confirm_timeout, self.client.publish(subject.clone(), payload)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::debug!(subject, "publish failed: {e}");
                false
            }
            Err(_) => false,
        }
    }

    /// Publish `packs` on `subject` and wait for the broker to confirm all of them.
    pub async fn publish_confirmed(&self, subject: &str, packs: &[Bytes]) -> Result<(), DeliveryError> {
        let before = *self.state.borrow();
        if !before.connected {
            return Err(DeliveryError::Disconnected);
        }
        let max = self.max_payload();
        if let Some((index, p)) = packs.iter().enumerate().find(|(_, p)| p.len() > max) {
            return Err(DeliveryError::TooLarge {
                index,
                records: 1,
                size: p.len(),
                max,
            });
        }
        let mut ack = self.ack.lock().await;
        let seq = self.ack_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let marker = Bytes::from(seq.to_string());
        let send_all = async {
            for p in packs {
                self.client
                    .publish(subject.to_string(), p.clone())
                    .await
                    .map_err(|e| DeliveryError::Publish(e.to_string()))?;
            }
            self.client
                .publish(self.ack_subject.clone(), marker.clone())
                .await
                .map_err(|e| DeliveryError::Publish(e.to_string()))?;
            self.client
                .flush()
                .await
                .map_err(|e| DeliveryError::Publish(e.to_string()))?;
            // Markers of earlier, timed-out batches may still arrive: skip them.
            while let Some(msg) = ack.next().await {
                if msg.payload == marker {
                    return Ok(());
                }
            }
            Err(DeliveryError::Disconnected)
        };
        tokio::time::timeout(self.confirm_timeout, send_all)
            .await
            .map_err(|_| DeliveryError::Timeout(self.confirm_timeout))??;
        let after = *self.state.borrow();
        if after.epoch != before.epoch || !after.connected {
            return Err(DeliveryError::Disconnected);
        }
        Ok(())
    }

    /// Encode `records` into packs (split by `limits`, never above the broker's `max_payload`)
    /// and publish them on `subject` with one confirmation: what the service's delivery does
    /// with each batch. On `TooLarge`, `index` and `records` give the offending records.
    pub async fn publish_records(
        &self,
        subject: &str,
        base_name: &str,
        compact: bool,
        records: &[OutRecord<'_>],
        limits: PackLimits,
    ) -> Result<(), DeliveryError> {
        let limits = PackLimits {
            max_bytes: limits.max_bytes.min(self.max_payload()),
            ..limits
        };
        let packs = senml::encode_packs(base_name, compact, records, limits);
        let counts: Vec<usize> = packs.iter().map(|p| p.records).collect();
        let payloads: Vec<Bytes> = packs.into_iter().map(|p| Bytes::from(p.bytes)).collect();
        self.publish_confirmed(subject, &payloads).await.map_err(|e| match e {
            DeliveryError::TooLarge { index, size, max, .. } => DeliveryError::TooLarge {
                index: counts.iter().take(index).sum(),
                records: counts.get(index).copied().unwrap_or(0),
                size,
                max,
            },
            other => other,
        })
    }

    /// Flush and close the connection (best effort).
    pub async fn close(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.client.flush()).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.client.drain()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn world_readable_secrets_are_refused() {
        let path = std::env::temp_dir().join(format!("tlm-creds-{}", std::process::id()));
        std::fs::write(&path, "secret").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = check_private(&path, "nats.creds_file").unwrap_err().to_string();
        assert!(
            e.contains("readable by every user") && e.contains("mode 644") && e.contains("chmod 600"),
            "{e}"
        );
        assert!(e.contains("nats.creds_file"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(check_private(&path, "nats.creds_file").is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(check_private(&path, "nats.creds_file").is_ok());
        let _ = std::fs::remove_file(&path);
        let e = check_private(&path, "nats.nkey_seed_file").unwrap_err().to_string();
        assert!(e.contains("cannot read"), "{e}");
    }
}
