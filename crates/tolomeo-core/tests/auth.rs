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

/// Run the example with `nats_section` the broker refuses: for `wait` it keeps running (and
/// retrying) and publishes nothing. Returns its log.
async fn refused(dir: &Path, url: &str, nats_section: &str, client: &async_nats::Client, wait: Duration) -> String {
    let cfg = dir.join("refused.toml");
    std::fs::write(&cfg, format!("[service]\npoll_time_ms = 100\n[nats]\n{nats_section}")).unwrap();
    let data = Recorder::start(client, "events.data").await;
    let mut svc = ServiceProcess::start(
        &target_binary("examples/temp_service"),
        &["--config", cfg.to_str().unwrap()],
        "SNAUTH2",
        url,
    );
    tokio::time::sleep(wait).await;
    assert!(svc.is_running(), "still running; log:\n{}", svc.log());
    assert!(data.is_empty(), "log:\n{}", svc.log());
    svc.log()
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
    let log = refused(
        &dir,
        &nats.url(),
        "user = \"svc\"\npassword = \"nope\"\n",
        &client,
        Duration::from_millis(1500),
    )
    .await;
    assert!(log.contains("authorization violation"), "{log}");
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

/// Base64url without padding, as JWTs use it.
fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A NATS (v2) JWT about `subject`, signed by `issuer`; `nats` is its `"nats"` claim.
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let claims = serde_json::json!({
        // nsc puts a hash of the claims here; the server does not check it.
        "jti": format!("TLM{}{}", now.as_nanos(), name.to_uppercase()),
        "iat": now.as_secs(),
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let header = b64url(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = format!("{header}.{}", b64url(claims.to_string().as_bytes()));
    let signature = issuer.sign(body.as_bytes()).unwrap();
    format!("{body}.{}", b64url(&signature))
}

/// A credentials file's text exactly as `nsc generate creds` writes it.
fn creds(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creds_file() {
    // The header every nsc-made JWT starts with: the encoder agrees.
    assert_eq!(
        b64url(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#),
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ"
    );
    let dir = temp_dir("creds");
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let (service, test) = (nkeys::KeyPair::new_user(), nkeys::KeyPair::new_user());
    let operator_jwt = nats_jwt(
        &operator,
        &operator.public_key(),
        "tlm-operator",
        serde_json::json!({"type": "operator", "version": 2}),
    );
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true, "conn": -1, "leaf": -1
    });
    let account_jwt = nats_jwt(
        &operator,
        &account.public_key(),
        "tlm-account",
        serde_json::json!({"type": "account", "version": 2, "limits": unlimited}),
    );
    let user_claims = serde_json::json!({
        "type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1
    });
    let user_jwt = |user: &nkeys::KeyPair, name| nats_jwt(&account, &user.public_key(), name, user_claims.clone());
    let (service_jwt, test_jwt) = (user_jwt(&service, "service"), user_jwt(&test, "test"));

    // Operator mode: only users of the preloaded account, proving their key, get in.
    let conf = dir.join("server.conf");
    std::fs::write(
        &conf,
        format!(
            "operator: {operator_jwt}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {account_jwt}\n}}\n",
            account.public_key()
        ),
    )
    .unwrap();
    let nats = NatsServer::start_with(&["-c", conf.to_str().unwrap()]);
    let e = async_nats::connect(nats.url())
        .await
        .expect_err("anonymous client refused");
    assert_eq!(e.kind(), async_nats::ConnectErrorKind::AuthorizationViolation, "{e}");
    // The service's JWT with another user's seed: the nonce's signature does not match.
    let wrong = creds(&service_jwt, &test.seed().unwrap());
    let e = async_nats::ConnectOptions::with_credentials(&wrong)
        .unwrap()
        .connect(nats.url())
        .await
        .expect_err("mismatched credentials refused");
    assert_eq!(e.kind(), async_nats::ConnectErrorKind::AuthorizationViolation, "{e}");

    let client = async_nats::ConnectOptions::with_credentials(&creds(&test_jwt, &test.seed().unwrap()))
        .unwrap()
        .connect(nats.url())
        .await
        .unwrap();
    let creds_file = dir.join("service.creds");
    private_file(&creds_file, &creds(&service_jwt, &service.seed().unwrap()));
    telemetry_flows(
        &dir,
        &nats.url(),
        &format!("creds_file = {:?}\n", creds_file.display().to_string()),
        client.clone(),
    )
    .await;

    // Mismatched credentials: the service keeps running and retrying, and publishes nothing.
    let wrong_file = dir.join("wrong.creds");
    private_file(&wrong_file, &wrong);
    let section = format!("creds_file = {:?}\n", wrong_file.display().to_string());
    let log = refused(&dir, &nats.url(), &section, &client, Duration::from_secs(3)).await;
    assert!(log.contains("authorization violation"), "{log}");
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

/// A broker that accepts the user but not a subject the service needs: the service stops the
/// orderly way and exits 69 (EX_UNAVAILABLE), not 78, so that systemd's `Restart=on-failure`
/// retries it (the units prevent a restart only for 78), and it says which subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_subject_exits_69_naming_it() {
    let dir = temp_dir("perm");
    let conf = dir.join("nats.conf");
    for (deny, subject) in [
        (r#"publish: { deny: ["events.data"] }"#, "events.data"),
        (r#"subscribe: { deny: ["commands.>"] }"#, "commands.temp-example.req"),
    ] {
        std::fs::write(
            &conf,
            format!("authorization {{ users = [ {{ user: svc, password: pw, permissions: {{ {deny} }} }} ] }}\n"),
        )
        .unwrap();
        let nats = NatsServer::start_with(&["-c", conf.to_str().unwrap()]);
        let cfg = dir.join("service.toml");
        std::fs::write(
            &cfg,
            "[service]\npoll_time_ms = 100\nspool_dir = \"\"\n[nats]\nuser = \"svc\"\npassword = \"pw\"\n",
        )
        .unwrap();
        let mut svc = ServiceProcess::start(
            &target_binary("examples/temp_service"),
            &["--config", cfg.to_str().unwrap()],
            "SNPERM1",
            &nats.url(),
        );
        let code = svc.wait(Duration::from_secs(15));
        let log = svc.log();
        assert_eq!(code, Some(69), "denied {subject}; log:\n{log}");
        assert!(
            log.to_lowercase().contains("permissions violation") && log.contains(subject),
            "denied {subject}; log:\n{log}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
