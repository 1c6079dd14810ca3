//! `tlm validate` on RFC 8428's own examples (tests/rfc8428/, copied from the RFC) and on
//! broken packs whose problems are worked out by hand below.

mod common;

use common::{Run, tlm};

fn example(name: &str) -> String {
    format!("{}/tests/rfc8428/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The "record i, field `f`" of every problem line (the part before the message).
fn problems(run: &Run) -> Vec<String> {
    run.lines()
        .iter()
        .filter_map(|l| l.split_once(": record "))
        .filter(|(file, _)| !file.ends_with("warning"))
        .map(|(_, rest)| format!("record {}", rest.split_once(": ").map_or(rest, |(at, _)| at)))
        .collect()
}

#[tokio::test]
async fn rfc_8428_examples_are_valid_senml() {
    for name in [
        "5.1.1.json",
        "5.1.2.json",
        "5.1.3.json",
        "5.1.4.json",
        "5.1.5.json",
        "5.1.6.json",
    ] {
        let path = example(name);
        let run = tlm(&["validate", "--rfc8428", &path], b"").await;
        assert_eq!(run.code, Some(0), "{name}: {run:?}");
        assert!(
            run.stdout.starts_with(&format!("{path}: valid (RFC 8428), ")),
            "{run:?}"
        );
    }
    // Section 5.1.2's second example says "bver":5, a draft version RFC 8428 refuses.
    let run = tlm(&["validate", "--rfc8428", &example("5.1.2-timed.json")], b"").await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(problems(&run), ["record 0, field `bver`"], "{run:?}");

    // They are SenML, but not ToloMEO events.data packs: no device base name, no time.
    let run = tlm(&["validate", &example("5.1.1.json")], b"").await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(
        problems(&run),
        ["record 0, field `bn`", "record 0, field `t`"],
        "{run:?}"
    );
    let run = tlm(&["validate", &example("5.1.5.json")], b"").await;
    assert!(problems(&run).contains(&"record 3, field `vd`".to_string()), "{run:?}");
}

#[tokio::test]
async fn protocol_example_is_valid_and_broken_packs_name_each_problem() {
    // PROTOCOL.md section 1, verbatim, on stdin.
    let good = br#"[
  {"bn":"urn:cpt:device:sn:SN123456:","n":"cpu:total","u":"%","v":12.5,"t":1700000000.25},
  {"bn":"urn:cpt:device:sn:SN123456:","n":"mem:used","u":"B","v":523190272,"t":1700000000.25}
]"#;
    let run = tlm(&["validate"], good).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stdout,
        "<stdin>: valid (RFC 8428 and PROTOCOL.md events.data), 2 records\n"
    );
    // The compact form (bn on the first record only) is allowed by PROTOCOL.md section 1.
    let compact =
        br#"[{"bn":"urn:cpt:device:sn:SN1:","n":"a:b","v":1,"t":1700000000},{"n":"a:c","vb":true,"t":1700000000}]"#;
    assert_eq!(tlm(&["validate", "-"], compact).await.code, Some(0));

    let broken = br#"[
  {"bn":"urn:cpt:device:sn:SN1:","n":"cpu:total","u":"%","v":1,"t":1700000000.5},
  {"n":"cpu:user","u":"By","v":1,"t":1700000000500},
  {"bn":"urn:dev:x:","n":"a:b","vs":"x","vb":true,"t":1700000001},
  {"n":"a:c","t":5},
  {"n":"bad name","v":2,"t":1700000002},
  {"n":"a:d","v":3,"t":1600000000}
]"#;
    let run = tlm(&["validate"], broken).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    let expected = [
        "record 1, field `t`",  // 1700000000500 is milliseconds
        "record 1, field `u`",  // "By": PROTOCOL.md says B
        "record 2, field `bn`", // not urn:cpt:device:sn:<serial>:
        "record 2, field `vb`", // two values (RFC 8428)
        "record 3",             // no value
        "record 3, field `t`",  // 5 is relative
        "record 4, field `n`",  // a space in the name (RFC 8428)
        "record 5, field `t`",  // earlier than record 4
    ];
    let mut got = problems(&run);
    got.sort(); // sorted, so in the order of the list below
    assert_eq!(got, expected, "{run:?}");
    assert!(run.stdout.ends_with("<stdin>: invalid, 8 problems\n"), "{run:?}");

    // Not a pack at all: where, and what was expected.
    let run = tlm(&["validate"], b"[{\"n\":\"a\",\"v\":1},\n 42]").await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout
            .contains("not a SenML JSON pack: record 1: invalid type: integer `42`"),
        "{run:?}"
    );
    assert!(run.stdout.contains("line 2 column 3"), "{run:?}");

    // A file that cannot be read is a usage error.
    let run = tlm(&["validate", "/nonexistent/pack.json"], b"").await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.starts_with("/nonexistent/pack.json: cannot read it: "),
        "{run:?}"
    );
}

/// What a real service sends passes, for each kind: its telemetry, its announcement (sent on
/// connect; the recorders subscribe before the service starts) and a command response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_service_s_packs_are_valid() {
    let nats = tolomeo_testkit::NatsServer::start();
    let client = nats.client().await;
    let data = tolomeo_testkit::Recorder::start(&client, "events.data").await;
    let params = tolomeo_testkit::Recorder::start(&client, "events.params").await;
    let svc = common::TestService::start(&nats.url(), "tst-svc", "SNVAL").await;
    let response = client
        .request("commands.tst-svc.req", r#"[{"n":"Ping"}]"#.into())
        .await
        .unwrap();
    let long = std::time::Duration::from_secs(10);
    let data = data.wait_until("a data pack", long, |m| !m.is_empty()).await;
    let params = params.wait_until("an announcement", long, |m| !m.is_empty()).await;
    svc.stop().await;

    let cases = [
        ("data", &data[0].payload[..]),
        ("params", &params[0].payload[..]),
        ("response", &response.payload[..]),
        ("request", br#"[{"n":"Echo","vs":"{\"a\":1}"}]"#),
        // PROTOCOL.md section 4: `vs` absent means no arguments.
        ("request", br#"[{"n":"Ping"}]"#),
    ];
    for (kind, pack) in cases {
        let run = tlm(&["validate", "--kind", kind], pack).await;
        assert_eq!(run.code, Some(0), "{kind}: {run:?}");
    }
    // And a data pack is not an announcement.
    let run = tlm(&["validate", "--kind", "params"], &data[0].payload).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(problems(&run).contains(&"record 0, field `n`".to_string()), "{run:?}");
}
