//! `cargo xtask browser-test`: the dashboard's page in a real browser, against the demo's system.
//!
//! Starts what `cargo xtask demo` starts (a private nats-server, the boiler simulator, the three
//! services; can-engine replays the engine recording with `replay_clock = "now"`, so that its
//! points fall in the page's "last 5 min"), then `tlm-dashboard --enable-commands` with its
//! store under `target/browser/`, reads the token from the address it prints, and drives
//! Debian's headless Chromium through chromedriver (WebDriver, the `fantoccini` crate):
//!
//! - the device and its three services are listed as alive;
//! - every metric the device declared has a chart with points in it, in the 5-minute range, in
//!   the 1-hour range, zoomed in with a drag on a chart, and back;
//! - from the control panel, `Ping` answers "pong", `SetPollTime {"poll_time_ms": 2000}`
//!   succeeds, and `SetPollTime {"poll_time_ms": 5}` shows the service's `invalid_payload` as
//!   an error; the history lists the three;
//! - the page logged no error in the browser's console.
//!
//! Then, over plain HTTP, what protects the commands: no token is 401, a foreign `Origin` is
//! 403, and a dashboard started without `--enable-commands` answers 403 even with the token
//! (and its page says how to enable them).
//!
//! Screenshots of the metrics and of the control panel go to `target/browser/` on every run;
//! `--readme-image` also copies the metrics one to `docs/images/dashboard.png`, the README's.
//! Every wait polls its condition until a deadline and then fails saying what it saw last.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::demo::{self, Dashboard, Launch, Procs, http, start_dashboard};

/// The logs, the dashboard's store, the browser's profile and the screenshots of a run.
const WORK_DIR: &str = "browser";
/// can-engine's recording (replayed with the wall clock's times).
const RECORDING: &str = "services/can-engine/data/engine.log";
/// The README's picture of the page.
const README_IMAGE: &str = "docs/images/dashboard.png";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const SERVICES: [&str; 3] = ["cpu-monitor", "can-engine", "modbus-sensors"];

/// How long the page may take to show what the services publish (first heartbeats, metric
/// announcements, a few polls), and any other change.
const FIRST_DATA: Duration = Duration::from_secs(90);
const CHANGE: Duration = Duration::from_secs(30);

pub(crate) fn run(readme_image: bool) -> Result<()> {
    for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
        if !Path::new(path).exists() {
            bail!(
                "the browser test needs {path}; install it with\n  sudo apt-get install -y {package}\n\
                 (or run `cargo xtask setup`)"
            );
        }
    }
    let started = Instant::now();
    let system_start = Instant::now();
    // The README's picture shows a few minutes of history; the test's own waits for nothing.
    let picture_after = Duration::from_secs(if readme_image { 240 } else { 0 });
    let demo::System {
        mut procs, url, work, ..
    } = demo::launch(&Launch {
        release: false,
        can_log: RECORDING,
        cpu_poll_ms: 1000,
        work_dir: WORK_DIR,
        dashboard: true,
    })?;
    let dashboard = start_dashboard(&mut procs, &url, &work, "dashboard", true)?;
    let token = dashboard
        .token
        .clone()
        .ok_or_else(|| anyhow!("tlm-dashboard --enable-commands printed no `#token=` address"))?;
    let driver_port = start_chromedriver(&mut procs, &work)?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime of the WebDriver client")?;
    let screens = work.clone();
    runtime.block_on(async {
        let client = browser(driver_port, &work).await?;
        // Close the browser whatever the outcome, then report the outcome.
        let result = drive(&client, &dashboard, &token, &screens, system_start, picture_after).await;
        let logs = console_errors(driver_port, &client).await;
        let _ = client.close().await;
        result?;
        let errors = logs?;
        if !errors.is_empty() {
            bail!(
                "the page logged errors in the browser's console:\n  {}",
                errors.join("\n  ")
            );
        }
        Ok(())
    })?;

    security(&dashboard, &token)?;
    let disabled = start_dashboard(&mut procs, &url, &work, "dashboard-disabled", false)?;
    commands_disabled(&disabled, &token)?;
    runtime.block_on(async {
        let client = browser(driver_port, &work).await?;
        let result = disabled_page(&client, &disabled).await;
        let _ = client.close().await;
        result
    })?;
    drop(procs);

    if readme_image {
        if let Some(dir) = Path::new(README_IMAGE).parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::copy(screens.join("metrics.png"), README_IMAGE)
            .with_context(|| format!("cannot copy the metrics screenshot to {README_IMAGE}"))?;
        eprintln!("browser-test: {README_IMAGE} updated");
    }
    eprintln!(
        "browser-test: passed in {:.0} s; screenshots: {}, {}",
        started.elapsed().as_secs_f64(),
        screens.join("metrics.png").display(),
        screens.join("control.png").display()
    );
    Ok(())
}

/// chromedriver on a free port, its temporary files under the work directory (not in the
/// TMPDIR that `cargo xtask ci` checks is left empty).
fn start_chromedriver(procs: &mut Procs, work: &Path) -> Result<u16> {
    let port = demo::free_port()?;
    let tmp = work.join("tmp");
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let log = work.join("chromedriver.log");
    procs.spawn(
        "chromedriver",
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .env("TMPDIR", &tmp)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?),
    )?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok((200, _)) = http(&format!("127.0.0.1:{port}"), "GET", "/status", &[], "") {
            return Ok(port);
        }
        if Instant::now() > deadline {
            bail!(
                "chromedriver did not answer on port {port} within 20 s; see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A headless Chromium session (a fresh profile each time).
async fn browser(driver_port: u16, work: &Path) -> Result<Client> {
    let profile = work.join(format!("chrome-profile-{}", demo::free_port()?));
    let caps = json!({
        "browserName": "chrome",
        "goog:loggingPrefs": {"browser": "ALL"},
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                // As root (CI), Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1400,1000",
                "--hide-scrollbars",
                format!("--user-data-dir={}", std::path::absolute(&profile)?.display()),
            ],
        },
    });
    let Value::Object(caps) = caps else {
        bail!("the WebDriver capabilities are not a JSON object")
    };
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .with_context(|| format!("cannot start a Chromium session through chromedriver on port {driver_port}"))?;
    Ok(client)
}

/// The checks in the browser, with the dashboard that has commands on.
/// `picture_after`: how long after `since` (the system's start) the metrics screenshot is taken
/// at the earliest, so that the charts show more than a few seconds.
async fn drive(
    c: &Client,
    d: &Dashboard,
    token: &str,
    screens: &Path,
    since: Instant,
    picture_after: Duration,
) -> Result<()> {
    let start = format!("{}/#token={token}", d.base);
    c.goto(&start)
        .await
        .with_context(|| format!("cannot open {}", d.base))?;

    // The token moves from the address to the page's token field, and out of the address.
    wait(c, "the token from #token= in the token field", CHANGE, async || {
        let v = js(c, "return [document.querySelector('#cmd-token').value, location.hash]").await?;
        Ok(if v[0] == token && v[1] == "" {
            Ok(())
        } else {
            Err(format!("token field and address: {v}"))
        })
    })
    .await?;

    // 1. Devices and services.
    click(c, "#tab-overview").await?;
    let serial = demo::SERIAL;
    wait(c, &format!("device {serial} with {} alive", SERVICES.join(", ")), FIRST_DATA, async || {
        let v = js_args(
            c,
            "const d = document.querySelector(`[data-device='${arguments[0]}']`);
             if (!d) return {device: false, seen: Array.from(document.querySelectorAll('[data-device]')).map(e => e.dataset.device)};
             return {device: true, services: Object.fromEntries(Array.from(d.querySelectorAll('[data-service]')).map(e => [e.dataset.service, e.dataset.alive === 'true']))};",
            vec![json!(serial)],
        )
        .await?;
        if v["device"] != true {
            return Ok(Err(format!("devices listed: {}", v["seen"])));
        }
        let not_alive: Vec<&str> = SERVICES.into_iter().filter(|s| v["services"][*s] != true).collect();
        Ok(if not_alive.is_empty() {
            Ok(())
        } else {
            Err(format!("not listed as alive: {} (services on the page: {})", not_alive.join(", "), v["services"]))
        })
    })
    .await?;

    // 2. Metrics: one chart per declared metric, each with points.
    let declared = declared_metrics(d, serial)?;
    for service in SERVICES {
        if !declared.iter().any(|(_, s)| s == service) {
            bail!(
                "{service} declared no metric in {}/api/state: the page has nothing of it to show",
                d.base
            );
        }
    }
    eprintln!("browser-test: {serial} declared {} metrics", declared.len());
    click(c, "#tab-metrics").await?;
    charts_with_points(c, &declared, "300", FIRST_DATA).await?;
    click(c, "[data-range='3600']").await?;
    charts_with_points(c, &declared, "3600", CHANGE).await?;
    click(c, "[data-range='300']").await?;
    charts_with_points(c, &declared, "300", CHANGE).await?;

    // 3. Control panel.
    click(c, "#tab-control").await?;
    wait(c, "the control panel enabled", CHANGE, async || {
        let v = js(c, "return [document.querySelector('#control').dataset.enabled, document.querySelector('#cmd-fields').disabled]").await?;
        Ok(if v == json!(["true", false]) { Ok(()) } else { Err(format!("[data-enabled, fieldset disabled] = {v}")) })
    })
    .await?;
    let service = "cpu-monitor";
    c.find(Locator::Css("#cmd-service"))
        .await?
        .select_by_value(service)
        .await
        .with_context(|| format!("cannot pick {service} in #cmd-service"))?;
    wait(
        c,
        &format!("{service}'s commands (GetCommands) in #cmd-name"),
        CHANGE,
        async || {
            let v = js(
                c,
                "return Array.from(document.querySelector('#cmd-name').options).map(o => o.value)",
            )
            .await?;
            let have = |n: &str| v.as_array().is_some_and(|a| a.iter().any(|x| x == n));
            Ok(if have("Ping") && have("SetPollTime") {
                Ok(())
            } else {
                Err(format!("commands listed: {v}"))
            })
        },
    )
    .await?;

    pick_command(c, "Ping").await?;
    click(c, "#cmd-send").await?;
    let reply = outcome(c, "Ping", "ok").await?;
    if reply["message"] != "pong" {
        bail!("Ping from the control panel: the page shows {reply}, expected the message \"pong\"");
    }

    // SetPollTime through the payload editor; the form follows.
    pick_command(c, "SetPollTime").await?;
    let payload = c.find(Locator::Css("#cmd-payload")).await?;
    payload.clear().await?;
    payload.send_keys(r#"{"poll_time_ms": 2000}"#).await?;
    let field = js(c, "return document.querySelector('#arg-poll_time_ms')?.value ?? null").await?;
    if field != "2000" {
        bail!(
            "after typing the payload {{\"poll_time_ms\": 2000}}, the form's poll_time_ms field shows {field}, expected \"2000\""
        );
    }
    click(c, "#cmd-send").await?;
    let reply = outcome(c, "SetPollTime 2000", "ok").await?;
    if reply["message"].as_str().is_none_or(|m| !m.contains("2000")) {
        bail!("SetPollTime 2000: the page shows {reply}, expected a message about 2000 ms");
    }

    // Out of range, through the form field; the payload follows, the service refuses.
    let input = c.find(Locator::Css("#arg-poll_time_ms")).await?;
    input.clear().await?;
    input.send_keys("5").await?;
    let sent = js(c, "return JSON.parse(document.querySelector('#cmd-payload').value)").await?;
    if sent != json!({"poll_time_ms": 5}) {
        bail!("after typing 5 in the poll_time_ms field, the payload is {sent}, expected {{\"poll_time_ms\": 5}}");
    }
    click(c, "#cmd-send").await?;
    let error = outcome(c, "SetPollTime 5", "error").await?;
    if error["code"] != "invalid_payload" || error["message"].as_str().is_none_or(str::is_empty) {
        bail!("SetPollTime 5: the page shows the error {error}, expected code invalid_payload and a message");
    }
    if error["styled"] != true {
        bail!("SetPollTime 5: the error is not styled as an error (a red alert box): {error}");
    }
    let history = js(
        c,
        "return Array.from(document.querySelectorAll('#cmd-history tbody tr')).map(r => r.dataset.outcome + ' ' + r.cells[2].textContent)",
    )
    .await?;
    let want = json!(["error SetPollTime", "ok SetPollTime", "ok Ping"]);
    if history != want {
        bail!("the history of sent commands is {history}, expected {want} (newest first)");
    }
    screenshot(c, &screens.join("control.png")).await?;

    // 4. Back to the charts: zoom and back, then the picture.
    click(c, "#tab-metrics").await?;
    zoom(c, &declared).await?;
    if let Some(wait) = picture_after.checked_sub(since.elapsed()) {
        eprintln!(
            "browser-test: waiting {} s more for charts with more history in the picture",
            wait.as_secs()
        );
        tokio::time::sleep(wait).await;
    }
    // Let a live update or two land before the picture.
    tokio::time::sleep(Duration::from_secs(2)).await;
    screenshot(c, &screens.join("metrics.png")).await?;
    Ok(())
}

/// Drag across the right part of the first chart: every chart shows the narrower window, with
/// points; "Reset zoom" goes back to the last 5 minutes.
async fn zoom(c: &Client, declared: &[(String, String)]) -> Result<()> {
    // The window must hold readings: ten polls or more (cpu-monitor's is now 2 s).
    charts_with_points_at_least(c, declared, "300", 10, FIRST_DATA).await?;
    let over = c
        .find(Locator::Css("#charts .chart .u-over"))
        .await
        .context("no chart has a plot area (.u-over) to drag on")?;
    let (_, _, width, _) = over.rectangle().await.context("cannot measure the first chart")?;
    // From 70 % to 99 % of the width: about 90 s, up to 3 s before the drag.
    let drag = MouseActions::new("mouse".to_string())
        .then(PointerAction::MoveToElement {
            element: over,
            duration: None,
            x: width * 0.2,
            y: 0.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::MoveBy {
            duration: Some(Duration::from_millis(200)),
            x: width * 0.29,
            y: 0.0,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    c.perform_actions(drag)
        .await
        .context("cannot drag on the first chart")?;
    charts_with_points(c, declared, "custom", CHANGE).await?;
    let label = js(c, "return document.querySelector('#range-label').textContent").await?;
    if !label.as_str().is_some_and(|l| l.starts_with("Zoomed")) {
        bail!("after a drag on a chart the range line should say it is zoomed; it says {label}");
    }
    click(c, "#zoom-reset").await?;
    charts_with_points(c, declared, "300", CHANGE).await
}

/// Metric ids and their services that the dashboard says `serial` declared.
fn declared_metrics(d: &Dashboard, serial: &str) -> Result<Vec<(String, String)>> {
    let (status, body) = http(&d.host, "GET", "/api/state", &[], "")?;
    if status != 200 {
        bail!("GET {}/api/state answered {status}: {body}", d.base);
    }
    let state: Value =
        serde_json::from_str(&body).with_context(|| format!("GET {}/api/state is not JSON: {body}", d.base))?;
    let device = state["devices"]
        .as_array()
        .and_then(|ds| ds.iter().find(|x| x["serial"] == serial))
        .ok_or_else(|| anyhow!("GET {}/api/state lists no device {serial}: {body}", d.base))?;
    let metrics = device["metrics"]
        .as_array()
        .ok_or_else(|| anyhow!("GET {}/api/state: device {serial} has no `metrics` list", d.base))?;
    metrics
        .iter()
        .map(|m| {
            let id = m["id"]
                .as_str()
                .ok_or_else(|| anyhow!("a metric of {serial} has no `id`: {m}"))?;
            Ok((id.to_string(), m["service"].as_str().unwrap_or("").to_string()))
        })
        .collect()
}

/// [`charts_with_points_at_least`] one point.
async fn charts_with_points(c: &Client, declared: &[(String, String)], range: &str, within: Duration) -> Result<()> {
    charts_with_points_at_least(c, declared, range, 1, within).await
}

/// Every declared metric has a chart, the range shown is `range`, nothing is loading, and
/// every chart has drawn at least `min` points.
async fn charts_with_points_at_least(
    c: &Client,
    declared: &[(String, String)],
    range: &str,
    min: u32,
    within: Duration,
) -> Result<()> {
    let ids: Vec<&str> = declared.iter().map(|(id, _)| id.as_str()).collect();
    let what = format!(
        "a chart with at least {min} point(s) for each of the {} metrics, range {range}",
        ids.len()
    );
    wait(c, &what, within, async || {
        let v = js(
            c,
            "const charts = document.querySelector('#charts');
             const points = {};
             for (const e of document.querySelectorAll('#charts [data-metric]')) points[e.dataset.metric] = Number(e.dataset.points);
             return {range: charts.dataset.range, loading: charts.dataset.loading, points};",
        )
        .await?;
        if v["range"] != range {
            return Ok(Err(format!("the charts show range {}", v["range"])));
        }
        if v["loading"] != "false" {
            return Ok(Err("the charts are loading".to_string()));
        }
        let missing: Vec<&str> = ids.iter().copied().filter(|id| v["points"].get(id).is_none()).collect();
        let few: Vec<String> = ids
            .iter()
            .filter_map(|id| {
                let n = v["points"].get(id)?.as_f64().unwrap_or(0.0);
                (n < f64::from(min)).then(|| format!("{id} ({n})"))
            })
            .collect();
        Ok(if missing.is_empty() && few.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "no chart for [{}]; charts with fewer points: [{}]",
                missing.join(", "),
                few.join(", ")
            ))
        })
    })
    .await
}

async fn pick_command(c: &Client, name: &str) -> Result<()> {
    c.find(Locator::Css("#cmd-name"))
        .await?
        .select_by_value(name)
        .await
        .with_context(|| format!("cannot pick {name} in #cmd-name"))?;
    wait(c, &format!("the form of {name}"), CHANGE, async || {
        let v = js(c, "return document.querySelector('#cmd-name').value").await?;
        Ok(if v == name {
            Ok(())
        } else {
            Err(format!("#cmd-name is {v}"))
        })
    })
    .await
}

/// Wait for the answer to what was sent: `want` is "ok" (returns the result) or "error"
/// (returns code, message and whether it is styled as an error).
async fn outcome(c: &Client, what: &str, want: &str) -> Result<Value> {
    let seen = wait(c, &format!("the answer to {what} in #cmd-result"), CHANGE, async || {
        let v = js(
            c,
            "const r = document.querySelector('#cmd-result');
             const box = r.querySelector('.error-box');
             let styled = false;
             if (box) {
               const [red, green, blue] = getComputedStyle(box).borderLeftColor.match(/\\d+/g).map(Number);
               styled = box.getAttribute('role') === 'alert' && red > green + 60 && red > blue + 60;
             }
             let result = null;
             try { result = JSON.parse(r.querySelector('#cmd-result-json')?.textContent ?? 'null'); } catch {}
             return {outcome: r.dataset.outcome, result,
                     code: r.querySelector('#cmd-error-code')?.textContent ?? null,
                     message: r.querySelector('#cmd-error-message')?.textContent ?? null, styled,
                     text: r.innerText};",
        )
        .await?;
        match v["outcome"].as_str() {
            Some("ok" | "error") => Ok(Ok(v)),
            _ => Ok(Err(format!("#cmd-result shows {:?}", v["text"]))),
        }
    })
    .await?;
    if seen["outcome"] != want {
        bail!(
            "{what}: expected the outcome {want}, the page shows {}: {}",
            seen["outcome"],
            seen["text"].as_str().unwrap_or("")
        );
    }
    Ok(if want == "ok" { seen["result"].clone() } else { seen })
}

/// Poll `check` until it answers `Ok(Ok(value))`; after `within`, fail with what it said last.
async fn wait<T>(
    c: &Client,
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> Result<std::result::Result<T, String>>,
) -> Result<T> {
    let deadline = Instant::now() + within;
    let mut last;
    loop {
        match check().await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(state)) => last = state,
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() > deadline {
            let url = c.current_url().await.map(|u| u.to_string()).unwrap_or_default();
            bail!(
                "timed out after {} s waiting for {what} on {url}; last seen: {last}",
                within.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn js(c: &Client, script: &str) -> Result<Value> {
    js_args(c, script, vec![]).await
}

async fn js_args(c: &Client, script: &str, args: Vec<Value>) -> Result<Value> {
    c.execute(script, args)
        .await
        .with_context(|| format!("the page could not run: {script}"))
}

async fn click(c: &Client, css: &str) -> Result<()> {
    c.find(Locator::Css(css))
        .await
        .with_context(|| format!("no element {css} on the page"))?
        .click()
        .await
        .with_context(|| format!("cannot click {css}"))
}

async fn screenshot(c: &Client, path: &Path) -> Result<()> {
    let png = c.screenshot().await.context("cannot take a screenshot")?;
    std::fs::write(path, png).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("browser-test: screenshot {}", path.display());
    Ok(())
}

/// The browser console's SEVERE entries (script errors, failed loads), from chromedriver.
async fn console_errors(driver_port: u16, c: &Client) -> Result<Vec<String>> {
    let id = c
        .session_id()
        .await?
        .ok_or_else(|| anyhow!("the WebDriver session has no id"))?;
    let (status, body) = http(
        &format!("127.0.0.1:{driver_port}"),
        "POST",
        &format!("/session/{id}/se/log"),
        &[("Content-Type", "application/json")],
        r#"{"type":"browser"}"#,
    )?;
    if status != 200 {
        bail!("chromedriver did not give the browser's log: {status} {body}");
    }
    let v: Value = serde_json::from_str(&body).with_context(|| format!("chromedriver's log is not JSON: {body}"))?;
    Ok(v["value"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["level"] == "SEVERE")
                .map(|e| e["message"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default())
}

/// A request's description, its headers, the status and error code expected.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str);

/// What protects the commands, over plain HTTP: the token and the Origin.
fn security(d: &Dashboard, token: &str) -> Result<()> {
    let body = r#"{"service":"cpu-monitor","command":"Ping","args":{}}"#;
    let origin = d.base.clone();
    let bearer = format!("Bearer {token}");
    let cases: [Case; 4] = [
        ("without a token", vec![("Origin", &origin)], 401, "unauthorized"),
        (
            "with a wrong token",
            vec![("Origin", &origin), ("Authorization", "Bearer 00")],
            401,
            "unauthorized",
        ),
        (
            "from a foreign Origin, with the token",
            vec![("Origin", "http://attacker.example"), ("Authorization", &bearer)],
            403,
            "forbidden",
        ),
        (
            "with the token",
            vec![("Origin", &origin), ("Authorization", &bearer)],
            200,
            "",
        ),
    ];
    for (what, headers, want, code) in cases {
        let mut headers = headers;
        headers.push(("Content-Type", "application/json"));
        let (status, answer) = http(&d.host, "POST", "/api/command", &headers, body)?;
        if status != want {
            bail!(
                "POST {}/api/command {what}: answered {status} {answer}, expected {want}",
                d.base
            );
        }
        if !code.is_empty() {
            error_code(&answer, code).with_context(|| format!("POST {}/api/command {what}", d.base))?;
        }
    }
    eprintln!("browser-test: POST /api/command: no token 401, wrong token 401, foreign Origin 403, token 200");
    Ok(())
}

/// A dashboard without `--enable-commands` refuses commands even with a token.
fn commands_disabled(d: &Dashboard, token: &str) -> Result<()> {
    let bearer = format!("Bearer {token}");
    let headers = [
        ("Origin", d.base.as_str()),
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let body = r#"{"service":"cpu-monitor","command":"Ping","args":{}}"#;
    let (status, answer) = http(&d.host, "POST", "/api/command", &headers, body)?;
    if status != 403 {
        bail!(
            "POST {}/api/command to a dashboard started without --enable-commands: answered {status} {answer}, \
             expected 403; see {}",
            d.base,
            d.log.display()
        );
    }
    error_code(&answer, "forbidden").context("POST /api/command with commands disabled")?;
    eprintln!("browser-test: without --enable-commands, POST /api/command with a token: 403");
    Ok(())
}

/// Its page shows the control panel off, saying how to turn it on.
async fn disabled_page(c: &Client, d: &Dashboard) -> Result<()> {
    c.goto(&d.base)
        .await
        .with_context(|| format!("cannot open {}", d.base))?;
    click(c, "#tab-control").await?;
    wait(
        c,
        "the control panel disabled, saying to start with --enable-commands",
        CHANGE,
        async || {
            let v = js(
                c,
                "const n = document.querySelector('#cmd-disabled');
             return {enabled: document.querySelector('#control').dataset.enabled,
                     fields: document.querySelector('#cmd-fields').disabled,
                     notice: n.hidden ? '' : n.innerText};",
            )
            .await?;
            let ok = v["enabled"] == "false"
                && v["fields"] == true
                && v["notice"].as_str().is_some_and(|n| n.contains("--enable-commands"));
            Ok(if ok { Ok(()) } else { Err(format!("{v}")) })
        },
    )
    .await
}

fn error_code(answer: &str, code: &str) -> Result<()> {
    let v: Value = serde_json::from_str(answer).with_context(|| format!("the answer is not JSON: {answer}"))?;
    if v["error"]["code"] != code || v["error"]["message"].as_str().is_none() {
        bail!("the answer is {answer}, expected {{\"error\":{{\"code\":\"{code}\",\"message\":…}}}}");
    }
    Ok(())
}
