//! The `[nats]` authentication and TLS options against a nats-server that requires them:
//! the service connects and its telemetry reaches a subscriber authenticated on its own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tolomeo_testkit::{NatsServer, Recorder, ServiceProcess, target_binary};

fn temp_dir(tag: &str) -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    let d = std::env::temp_dir().join(format!("tlm-auth-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn private_file(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Run the example with `nats_section` and check its packs arrive through `client`.
async fn telemetry_flows(dir: &Path, url: &str, nats_section: &str, client: async_nats::Client) {
    let cfg = dir.join("service.toml");
    std::fs::write(
        &cfg,
        format!("[service]\npoll_time_ms = 100\n[nats]\nurl = {url:?}\n{nats_section}"),
    )
    .unwrap();
    let data = Recorder::start(&client, "events.data").await;
    let mut svc = ServiceProcess::start(
        &target_binary("examples/temp_service"),
        &["--config", cfg.to_str().unwrap()],
        "SNAUTH1",
        url,
    );
    let log = || svc.log();
    let msgs = data
        .wait_until(
            "telemetry through the authenticated connection",
            Duration::from_secs(10),
            |m| m.len() >= 2,
        )
        .await;
    assert!(msgs[0].json()[0]["bn"] == "urn:cpt:device:sn:SNAUTH1:", "{}", log());
    assert_eq!(svc.terminate(Duration::from_secs(10)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password() {
    let nats = NatsServer::start_with(&["--user", "svc", "--pass", "s3cret"]);
    let dir = temp_dir("user");
    let client = async_nats::ConnectOptions::with_user_and_password("svc".into(), "s3cret".into())
        .connect(nats.url())
        .await
        .unwrap();
    telemetry_flows(
        &dir,
        &nats.url(),
        "user = \"svc\"\npassword = \"s3cret\"\n",
        client.clone(),
    )
    .await;

    // A wrong password: the service keeps running and retrying, publishes nothing, never crashes.
    let cfg = dir.join("wrong.toml");
    std::fs::write(
        &cfg,
        "[service]\npoll_time_ms = 100\n[nats]\nuser = \"svc\"\npassword = \"nope\"\n",
    )
    .unwrap();
    let data = Recorder::start(&client, "events.data").await;
    let mut svc = ServiceProcess::start(
        &target_binary("examples/temp_service"),
        &["--config", cfg.to_str().unwrap()],
        "SNAUTH2",
        &nats.url(),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(svc.is_running(), "still running; log:\n{}", svc.log());
    assert!(data.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token() {
    let nats = NatsServer::start_with(&["--auth", "t0ken"]);
    let dir = temp_dir("token");
    let client = async_nats::ConnectOptions::with_token("t0ken".into())
        .connect(nats.url())
        .await
        .unwrap();
    telemetry_flows(&dir, &nats.url(), "token = \"t0ken\"\n", client).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nkey_seed_file() {
    let dir = temp_dir("nkey");
    let service_key = nkeys::KeyPair::new_user();
    let test_key = nkeys::KeyPair::new_user();
    let conf = dir.join("server.conf");
    std::fs::write(
        &conf,
        format!(
            "authorization {{ users = [ {{ nkey: {} }}, {{ nkey: {} }} ] }}\n",
            service_key.public_key(),
            test_key.public_key()
        ),
    )
    .unwrap();
    let nats = NatsServer::start_with(&["-c", conf.to_str().unwrap()]);
    let seed_file = dir.join("service.nk");
    private_file(&seed_file, &service_key.seed().unwrap());
    let client = async_nats::ConnectOptions::with_nkey(test_key.seed().unwrap())
        .connect(nats.url())
        .await
        .unwrap();
    telemetry_flows(
        &dir,
        &nats.url(),
        &format!("nkey_seed_file = {:?}\n", seed_file.display().to_string()),
        client,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca() {
    let dir = temp_dir("tls");
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=tlm-test-ca",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ],
    );
    let p = |f: &str| dir.join(f).display().to_string();
    let nats = NatsServer::start_with(&["--tls", "--tlscert", &p("server.pem"), "--tlskey", &p("server.key")]);
    let url = format!("tls://127.0.0.1:{}", nats.port());
    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(dir.join("ca.pem"))
        .require_tls(true)
        .connect(url.as_str())
        .await
        .unwrap();
    telemetry_flows(
        &dir,
        &url,
        &format!("tls_ca_file = {:?}\ntls_required = true\n", p("ca.pem")),
        client,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}
