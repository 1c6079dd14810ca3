//! `tlm cmd` against a real service (the framework's `Service` with a test plugin) over a
//! private nats-server. Expected results come from PROTOCOL.md section 4 and the test plugin.

mod common;

use common::{TestService, tlm};
use futures_util::StreamExt;
use tolomeo_testkit::NatsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_results_errors_and_silence() {
    let nats = NatsServer::start();
    let url = nats.url();
    let svc = TestService::start(&url, "tst-svc", "SNCMD1").await;

    // Success: the built-in Ping (PROTOCOL.md section 4: message "pong", service, version).
    let run = tlm(&["-s", &url, "cmd", "tst-svc", "Ping"], b"").await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let out: serde_json::Value = serde_json::from_str(&run.stdout).expect("pretty JSON");
    assert_eq!(out["message"], "pong");
    assert_eq!(out["service"], "tst-svc");
    assert!(
        run.stdout.contains("\n  \"message\": \"pong\""),
        "pretty-printed: {}",
        run.stdout
    );

    // Arguments reach the command as the JSON object given on the command line.
    let run = tlm(
        &[
            "-s",
            &url,
            "cmd",
            "tst-svc",
            "Echo",
            r#"{"a":[1,2],"b":"x"}"#,
            "--compact",
        ],
        b"",
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout.trim(), r#"{"args":{"a":[1,2],"b":"x"},"message":"echoed"}"#);

    // Error replies: exit 1 and `error <code>: <message>`.
    let run = tlm(&["-s", &url, "cmd", "tst-svc", "Fail"], b"").await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(run.stderr.trim(), "error failed: broken on purpose");
    let run = tlm(&["-s", &url, "cmd", "tst-svc", "NoSuchCommand"], b"").await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.starts_with("error unknown_command: "), "{run:?}");
    let run = tlm(
        &["-s", &url, "cmd", "tst-svc", "SetPollTime", r#"{"poll_time_ms":5}"#],
        b"",
    )
    .await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.starts_with("error invalid_payload: "), "{run:?}");

    // Invalid JSON argument: exit 2 before anything is sent.
    for bad in ["{", "[1,2]", "not json"] {
        let run = tlm(&["-s", &url, "cmd", "tst-svc", "Echo", bad], b"").await;
        assert_eq!(run.code, Some(2), "{bad}: {run:?}");
        assert!(run.stderr.contains("expected a JSON object"), "{run:?}");
    }

    // Nobody subscribed: no responders, exit 3 at once.
    let run = tlm(&["-s", &url, "cmd", "nobody", "Ping"], b"").await;
    assert_eq!(run.code, Some(3), "{run:?}");
    assert!(run.stderr.contains("no answer from service nobody") && run.stderr.contains("is it running?"));

    // Someone subscribed who never answers: exit 3 after --timeout.
    let client = nats.client().await;
    let mut mute = client.subscribe("commands.mute.req").await.unwrap();
    client.flush().await.unwrap();
    let keep = tokio::spawn(async move { while mute.next().await.is_some() {} });
    let run = tlm(&["-s", &url, "cmd", "mute", "Ping", "--timeout", "300ms"], b"").await;
    assert_eq!(run.code, Some(3), "{run:?}");
    assert_eq!(
        run.stderr.trim(),
        "no answer from service mute within 300 ms: is it running? (nothing answered on commands.mute.req; \
         a slow command needs a longer --timeout)"
    );
    keep.abort();
    svc.stop().await;

    // No broker: exit 4, naming the URL.
    drop(nats);
    let run = tlm(&["-s", &url, "--connect-timeout", "1", "cmd", "tst-svc", "Ping"], b"").await;
    assert_eq!(run.code, Some(4), "{run:?}");
    assert!(
        run.stderr.contains(&format!("cannot connect to the broker at {url}")),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_credentials() {
    // Reaching the broker is told apart from reaching a service: exit 3 means connected.
    let nats = NatsServer::start_with(&["--user", "dev", "--pass", "s3cret"]);
    let url = nats.url();
    let run = tlm(
        &[
            "-s",
            &url,
            "--user",
            "dev",
            "--password",
            "s3cret",
            "cmd",
            "nobody",
            "Ping",
        ],
        b"",
    )
    .await;
    assert_eq!(run.code, Some(3), "{run:?}");
    let run = tlm(
        &[
            "-s",
            &url,
            "--user",
            "dev",
            "--password",
            "wrong",
            "cmd",
            "nobody",
            "Ping",
        ],
        b"",
    )
    .await;
    assert_eq!(run.code, Some(4), "{run:?}");
    assert!(run.stderr.contains("cannot connect to the broker"), "{run:?}");

    let nats = NatsServer::start_with(&["--auth", "t0ken"]);
    let url = nats.url();
    // Flags may also follow the subcommand, as with the nats CLI.
    let run = tlm(&["cmd", "nobody", "Ping", "-s", &url, "--token", "t0ken"], b"").await;
    assert_eq!(run.code, Some(3), "{run:?}");
    let run = tlm(&["-s", &url, "cmd", "nobody", "Ping"], b"").await;
    assert_eq!(run.code, Some(4), "{run:?}");
}

/// `tlm cmd <service>` without a command: what `GetCommands` answers, for a person, one
/// command per line with its arguments below it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_command_it_lists_the_commands() {
    let nats = NatsServer::start();
    let url = nats.url();
    let _svc = TestService::start(&url, "tst-svc", "SNCMD3").await;
    let run = tlm(&["-s", &url, "cmd", "tst-svc"], b"").await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let lines = run.lines();
    assert_eq!(lines[0], "tst-svc accepts 7 commands:", "{}", run.stdout);
    // The built-ins of PROTOCOL.md section 4, then the test plugin's two.
    let names: Vec<&str> = lines[1..]
        .iter()
        .filter(|l| l.starts_with("  ") && !l.starts_with("    "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        names,
        [
            "Ping",
            "GetStatus",
            "GetMetrics",
            "SetPollTime",
            "GetCommands",
            "Echo",
            "Fail"
        ]
    );
    let has = |text: &str| lines.iter().any(|l| l.trim() == text);
    assert!(
        has("poll_time_ms: integer, 100 to 3600000: the new poll period, in ms"),
        "{}",
        run.stdout
    );
    assert!(has("Echo         Answers with its arguments"), "{}", run.stdout);
    assert!(has("times: integer, optional, 1 to 3: how often"), "{}", run.stdout);

    // --compact: the answer itself, as JSON.
    let run = tlm(&["-s", &url, "cmd", "tst-svc", "--compact"], b"").await;
    let out: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(out["commands"][5]["args"][1]["max"], 3, "{out}");
}
