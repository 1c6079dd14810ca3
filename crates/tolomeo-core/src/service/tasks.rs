//! The service's small tasks: connection state, plugin connector, heartbeat, announcement, commands.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::router::Router;
use crate::handle::ServiceHandle;
use crate::plugin::{PluginContext, SensorPlugin};
use crate::reading::unix_now;
use crate::senml;
use crate::transport::Link;
use crate::wire::{PARAMS_SUBJECT, ServiceName};
use tolomeo_proto::command::parse_request;

/// Stop the service (the orderly way) once the broker refuses something it needs.
pub(super) async fn stop_when_refused(link: Arc<Link>, shutdown: CancellationToken, stop: CancellationToken) {
    let mut refusal = link.refusal();
    tokio::select! {
        _ = stop.cancelled() => {}
        r = refusal.wait_for(Option::is_some) => {
            if let Ok(why) = r {
                tracing::error!("{}; stopping", why.as_deref().unwrap_or_default());
            }
            shutdown.cancel();
        }
    }
}

/// Retry `connect` with backoff (capped at 30 s), then start the plugin's tasks.
pub(super) async fn connect_plugin<P: SensorPlugin>(
    plugin: Arc<P>,
    ctx: PluginContext,
    ready: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut delay = Duration::from_millis(500);
    loop {
        match plugin.connect().await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(
                    "plugin `{}` cannot connect: {e}; retrying in {} s",
                    plugin.id(),
                    delay.as_secs_f32()
                );
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
    ready.store(true, Ordering::Relaxed);
    plugin.start(&ctx);
}

/// `heartbeat.<service>.service`, empty, while connected, running and healthy.
pub(super) async fn heartbeat<P: SensorPlugin>(
    link: Arc<Link>,
    plugin: Arc<P>,
    ready: Arc<AtomicBool>,
    subject: String,
    period: Duration,
    stop: CancellationToken,
) {
    // At once, then every `period` on the grid the poll loop uses (see tick::next_tick: a
    // beat shares a poll's wake-up); a late beat skips the ticks it missed.
    let mut next = tokio::time::Instant::now();
    let mut was_healthy = true;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        next = crate::tick::next_tick(tokio::time::Instant::now(), period);
        let connected = ready.load(Ordering::Relaxed);
        let mut health = plugin.health();
        if !connected {
            health = crate::plugin::Health::unhealthy(format!("plugin `{}` is still connecting", plugin.id()));
        }
        let healthy = health.healthy;
        if healthy != was_healthy {
            if healthy {
                tracing::info!("healthy: {}; heartbeat on", health.detail);
            } else if connected {
                tracing::warn!("unhealthy: {}; heartbeat stops until it recovers", health.detail);
            } else {
                tracing::debug!("{}; no heartbeat until it has", health.detail);
            }
            was_healthy = healthy;
        }
        if healthy {
            link.publish_now(subject.clone(), Bytes::new()).await;
        }
    }
}

/// `events.params`: after each (re)connect, when the metrics change, and periodically.
pub(super) async fn announce(link: Arc<Link>, handle: ServiceHandle, period: Duration, stop: CancellationToken) {
    let mut state = link.state();
    let mut seen_epoch = 0;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
            _ = handle.metrics_changed() => {}
            r = state.changed() => {
                if r.is_err() { return }
                let s = *state.borrow_and_update();
                if !s.connected || s.epoch == seen_epoch { continue }
                seen_epoch = s.epoch;
            }
        }
        let entries = match serde_json::to_string(&handle.announcements()) {
            Ok(json) => json,
            Err(e) => {
                tracing::error!("cannot encode the metric announcement: {e}");
                continue;
            }
        };
        let pack = senml::encode_string_record(handle.base_name(), "metrics", &entries);
        link.publish_now(PARAMS_SUBJECT.to_string(), Bytes::from(pack)).await;
    }
}

/// The command router: one request at a time, in arrival order.
pub(super) async fn serve_commands<P: SensorPlugin>(
    link: Arc<Link>,
    router: Router<P>,
    plugin: Arc<P>,
    handle: ServiceHandle,
    name: ServiceName,
    stop: CancellationToken,
) {
    let mut sub = match link.client().subscribe(name.request_subject()).await {
        Ok(s) => s,
        Err(e) => {
            link.refuse(format!("cannot subscribe to {}: {e}", name.request_subject()));
            return;
        }
    };
    let res_subject = name.response_subject();
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => return,
            m = sub.next() => match m { Some(m) => m, None => return },
        };
        let calls = parse_request(&msg.payload);
        let mut answers = Vec::with_capacity(calls.len());
        for call in &calls {
            let out = router.run(call, &plugin, &handle).await;
            let vs = serde_json::Value::Object(out).to_string();
            answers.push((call.name.as_str(), unix_now(), vs));
        }
        let records: Vec<(&str, f64, &str)> = answers.iter().map(|(n, t, vs)| (*n, *t, vs.as_str())).collect();
        let payload = Bytes::from(senml::encode_response(handle.base_name(), &records));
        if let Some(reply) = msg.reply {
            link.publish_now(reply.to_string(), payload.clone()).await;
        }
        link.publish_now(res_subject.clone(), payload).await;
    }
}
