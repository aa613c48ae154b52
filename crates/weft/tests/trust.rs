//! End-to-end tests of an authenticated lattice: a real `nats-server` running the config shipped
//! in `docs/nats-lattice.conf` (accounts, one user per host, permissions limited to the
//! lattice), `weft up --nats` hosts joining it with a password, an NKey and TLS client
//! certificates, and every kind of outsider shut out.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::*;

/// The example NKey public key in the shipped config, replaced by one the test holds the seed
/// of.
const DOC_NKEY: &str = "UDJEWMCCCAY2XXMCAS6X37NKAMA3PLF6XRBPED7UYBYWTY3V3I2XE4BF";
const HOST_A_PASSWORD: &str = "change-me-host-a";
const TEAM_B_PASSWORD: &str = "change-me-team-b";

/// A NATS server running the shipped lattice config (plus `extra`), and the seed file of its
/// NKey user.
struct SecuredNats {
    server: Server,
    seed_file: PathBuf,
    _keys: tempfile::TempDir,
}

impl SecuredNats {
    fn start(extra: &str) -> SecuredNats {
        let shipped = std::fs::read_to_string(repo().join("docs/nats-lattice.conf")).unwrap();
        assert!(
            shipped.contains(DOC_NKEY),
            "the shipped config changed its NKey user"
        );
        let key = nkeys::KeyPair::new_user();
        let keys = tempfile::tempdir().unwrap();
        let seed_file = keys.path().join("host-b.seed");
        std::fs::write(&seed_file, format!("{}\n", key.seed().unwrap())).unwrap();
        let server = nats_configured(|port, store| {
            let config = shipped
                .replace("127.0.0.1:4222", &format!("127.0.0.1:{port}"))
                .replace("/var/lib/weft-nats", &store.display().to_string())
                .replace(DOC_NKEY, &key.public_key());
            format!("{config}\n{extra}\n")
        });
        SecuredNats {
            server,
            seed_file,
            _keys: keys,
        }
    }

    fn url(&self) -> String {
        self.server.url()
    }
}

/// Flags for a host of lattice `lattice` on this server.
fn host_args(
    nats: &str,
    lattice: &str,
    id: &str,
    http: u16,
    auth: &[impl AsRef<str>],
) -> Vec<String> {
    let mut args: Vec<String> = [
        "--nats",
        nats,
        "--lattice",
        lattice,
        "--host-id",
        id,
        "--http",
        &format!("127.0.0.1:{http}"),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(auth.iter().map(|a| a.as_ref().to_string()));
    args
}

fn start_host(args: &[String], env: &[(&str, &str)]) -> Host {
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    Host::start_with_env(&argv, env)
}

/// Host `a` joining lattice `prod` on `nats` with `auth` flags, checked to be the lattice's only
/// live host; returns it and its HTTP port.
fn join_alone(nats: &str, auth: &[impl AsRef<str>], env: &[(&str, &str)]) -> (Host, u16) {
    let port = free_port();
    let host = start_host(&host_args(nats, "prod", "a", port, auth), env);
    assert_eq!(alive_hosts(&host), ["a"]);
    (host, port)
}

/// Runs `weft host ARGS…` expecting it to be refused; returns what it said.
fn refused_host(args: &[String], env: &[(&str, &str)]) -> String {
    let state = tempfile::tempdir().unwrap();
    let mut command = Command::new(WEFT);
    command
        .arg("--state-dir")
        .arg(state.path())
        .arg("host")
        .args(args)
        .env_remove("WEFT_NATS_PASSWORD")
        .envs(env.iter().copied());
    let out = command.output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "weft host was let in:\n{said}");
    said
}

fn alive_hosts(host: &Host) -> Vec<String> {
    let hosts: Vec<serde_json::Value> =
        serde_json::from_str(&host.cli_ok(&["get", "hosts", "--json"])).unwrap();
    let mut alive: Vec<String> = hosts
        .iter()
        .filter(|h| h["alive"] == true)
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect();
    alive.sort();
    alive
}

/// Deploys a hello app through `host` and waits until every port in `ports` answers it.
fn deploy_hello(host: &Host, scene: &Scene, app: &str, ports: &[u16]) {
    let manifest = scene.manifest(
        app,
        "v1",
        &[route(
            "hello",
            &guests().hello,
            scene.port,
            &format!("/{app}"),
        )],
    );
    host.deploy(&manifest);
    for port in ports {
        wait_until(
            Duration::from_secs(30),
            &format!("{app} to answer on port {port}"),
            || {
                let url = format!("http://127.0.0.1:{port}/{app}");
                let answered = http().get(&url).send().ok()?;
                (answered.status() == 200).then_some(())
            },
        );
    }
}

/// A raw NATS client of another account, trying the lattice's subjects directly.
fn outsider_tries_the_lattice(nats: &str, app: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = async_nats::ConnectOptions::with_user_and_password(
            "team-b".into(),
            TEAM_B_PASSWORD.into(),
        )
        .request_timeout(Some(Duration::from_secs(2)))
        .connect(nats)
        .await
        .expect("team-b is a user of its own account");
        // Heartbeats (every second) and record writes never reach this account.
        let mut spy = client.subscribe("weft.prod.>").await.unwrap();
        let mut records = client.subscribe("$KV.weft-prod.>").await.unwrap();
        let heard = tokio::time::timeout(Duration::from_secs(3), async {
            tokio::select! {
                m = next_subject(&mut spy) => m,
                m = next_subject(&mut records) => m,
            }
        })
        .await;
        assert!(heard.is_err(), "another account heard {heard:?}");

        // App records: the lattice's state stream is not in this account.
        let read = client
            .request(
                "$JS.API.DIRECT.GET.KV_weft-prod",
                format!(r#"{{"last_by_subj":"$KV.weft-prod.app.{app}"}}"#).into(),
            )
            .await;
        assert!(read.is_err(), "another account read an app record");
        let info = client
            .request("$JS.API.STREAM.INFO.KV_weft-prod", "".into())
            .await
            .map(|m| String::from_utf8_lossy(&m.payload).to_string());
        if let Ok(info) = &info {
            assert!(info.contains("not found"), "{info}");
        }

        // A call to the app's component on host a: no one in this account answers.
        let call = client
            .request(format!("weft.prod.rpc.call.{app}.hello.a"), "".into())
            .await;
        assert!(call.is_err(), "another account reached a component");
    });
}

async fn next_subject(subscriber: &mut async_nats::Subscriber) -> Option<String> {
    use futures::StreamExt as _;
    subscriber.next().await.map(|m| m.subject.to_string())
}

#[test]
fn hosts_with_credentials_form_the_lattice_and_outsiders_are_refused() {
    let nats = SecuredNats::start("");
    let url = nats.url();
    let scene = Scene::new();
    let (port_a, port_b) = (free_port(), free_port());
    let password = [("WEFT_NATS_PASSWORD", HOST_A_PASSWORD)];
    let a = start_host(
        &host_args(&url, "prod", "a", port_a, &["--nats-user", "host-a"]),
        &password,
    );
    let seed = nats.seed_file.display().to_string();
    let b = start_host(
        &host_args(&url, "prod", "b", port_b, &["--nats-nkey-file", &seed]),
        &[],
    );
    wait_until(
        Duration::from_secs(30),
        "both hosts to hear each other",
        || (alive_hosts(&a) == ["a", "b"] && alive_hosts(&b) == ["a", "b"]).then_some(()),
    );
    deploy_hello(&a, &scene, "greeting", &[port_a, port_b]);
    assert!(
        !std::fs::read_to_string(format!("/proc/{}/cmdline", a.pid()))
            .unwrap_or_default()
            .contains(HOST_A_PASSWORD),
        "the password shows on the command line"
    );

    // No credentials: the server turns the connection away.
    let said = refused_host(
        &host_args(&url, "prod", "c", free_port(), &[] as &[&str]),
        &[],
    );
    assert!(said.contains("refused these credentials"), "{said}");
    // A wrong password, likewise.
    let said = refused_host(
        &host_args(&url, "prod", "c", free_port(), &["--nats-user", "host-a"]),
        &[("WEFT_NATS_PASSWORD", "guess")],
    );
    assert!(said.contains("refused these credentials"), "{said}");
    // A lattice's user may not join another lattice of the same account: least privilege.
    let said = refused_host(
        &host_args(
            &url,
            "staging",
            "c",
            free_port(),
            &["--nats-user", "host-a"],
        ),
        &password,
    );
    assert!(said.contains("Permissions Violation"), "{said}");
    assert!(said.contains("docs/nats.md"), "{said}");

    // Another account's user reads no record, reaches no component, hears nothing.
    outsider_tries_the_lattice(&url, "greeting");
    // And a host of that account lattice `prod` is a lattice of its own: it sees none of the
    // real one's hosts or apps, and what it deploys never reaches them.
    let port_x = free_port();
    let outsider = start_host(
        &host_args(&url, "prod", "x", port_x, &["--nats-user", "team-b"]),
        &[("WEFT_NATS_PASSWORD", TEAM_B_PASSWORD)],
    );
    assert_eq!(alive_hosts(&outsider), ["x"]);
    let listed = outsider.cli_ok(&["app", "list"]);
    assert!(!listed.contains("greeting"), "{listed}");
    let other = Scene::new();
    deploy_hello(&outsider, &other, "intruder", &[port_x]);
    std::thread::sleep(Duration::from_secs(2));
    let listed = a.cli_ok(&["app", "list"]);
    assert!(!listed.contains("intruder"), "{listed}");
    assert_eq!(alive_hosts(&a), ["a", "b"]);
    let (status, _) = get(&format!("http://127.0.0.1:{port_a}/intruder"));
    assert_eq!(status, 404);
    let (status, body) = get(&format!("http://127.0.0.1:{port_b}/greeting"));
    assert_eq!((status, body.is_empty()), (200, false));
}

/// Runs `openssl ARGS…` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA: `dir/NAME.pem` and its key `dir/NAME.key`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// A certificate for 127.0.0.1 (server and client use), `dir/NAME.pem` with `dir/NAME.key`,
/// signed by the CA `ca`.
fn sign(dir: &Path, ca: &str, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    let extensions = dir.join(format!("{name}.ext"));
    std::fs::write(
        &extensions,
        "subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth, clientAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

#[test]
fn tls_with_the_lattice_s_ca_joins_and_a_wrong_ca_or_no_client_certificate_is_refused() {
    let pki = tempfile::tempdir().unwrap();
    let dir = pki.path();
    make_ca(dir, "lattice-ca");
    make_ca(dir, "other-ca");
    sign(dir, "lattice-ca", "server");
    sign(dir, "lattice-ca", "client");
    let file = |name: &str| dir.join(name).display().to_string();
    let nats = SecuredNats::start(&format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n}}",
        file("server.pem"),
        file("server.key"),
        file("lattice-ca.pem"),
    ));
    let url = nats.url();
    let password = [("WEFT_NATS_PASSWORD", HOST_A_PASSWORD)];
    let tls = |ca: &str| -> Vec<String> {
        [
            "--nats-user",
            "host-a",
            "--nats-tls-ca",
            &file(ca),
            "--nats-tls-cert",
            &file("client.pem"),
            "--nats-tls-key",
            &file("client.key"),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let (host, port) = join_alone(&url, &tls("lattice-ca.pem"), &password);
    deploy_hello(&host, &Scene::new(), "secure", &[port]);

    let wrong_ca = tls("other-ca.pem");
    let said = refused_host(
        &host_args(&url, "prod", "b", free_port(), &wrong_ca),
        &password,
    );
    assert!(said.contains("TLS failed"), "{said}");
    let said = refused_host(
        &host_args(
            &url,
            "prod",
            "b",
            free_port(),
            &[
                "--nats-user",
                "host-a",
                "--nats-tls-ca",
                &file("lattice-ca.pem"),
            ],
        ),
        &password,
    );
    assert!(said.contains("TLS failed"), "{said}");
}

/// An app counting in a NATS key-value bucket its link config connects to as `user`, the
/// password a `secret:` reference.
fn counter_on_nats(dir: &Path, app: &str, port: u16, nats: &str, user: &str) -> PathBuf {
    let kv =
        format!("backend: nats, url: \"{nats}\", user: {user}, password: \"secret:{app}-nats\"");
    counter_app_on(dir, app, port, &format!("/{app}"), &kv)
}

#[test]
fn a_keyvalue_link_connects_with_the_credentials_its_config_names() {
    let nats = SecuredNats::start("");
    let host = Host::start(&[]);
    let scene = Scene::new();
    put_secret(&host, "good-nats", TEAM_B_PASSWORD);
    put_secret(&host, "bad-nats", "guess");
    let good = counter_on_nats(scene.dir.path(), "good", scene.port, &nats.url(), "team-b");
    let bad = counter_on_nats(scene.dir.path(), "bad", scene.port, &nats.url(), "team-b");
    host.deploy(&good);
    host.deploy(&bad);
    let hits = |app: &str| {
        let response = http()
            .post(format!("http://127.0.0.1:{}/{app}/hits", scene.port))
            .send()
            .unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };
    assert_eq!(hits("good"), (200, "1\n".to_string()));
    assert_eq!(hits("good"), (200, "2\n".to_string()));
    let (status, said) = hits("bad");
    assert_eq!(status, 503, "{said}");
    assert!(
        said.contains("refused these credentials (user team-b)"),
        "{said}"
    );
    let log = host.log();
    assert!(
        !said.contains("guess") && !log.contains("guess"),
        "{said}\n{log}"
    );
    assert!(!log.contains(TEAM_B_PASSWORD), "{log}");

    // A config key NATS does not take is refused at deploy, naming the keys it could be.
    let typo = std::fs::read_to_string(&good)
        .unwrap()
        .replace("user: team-b", "usr: team-b");
    let typo = write_yaml(scene.dir.path(), "typo", &typo);
    let said = host.cli_err(&["app", "deploy", typo.to_str().unwrap()]);
    assert!(said.contains("unknown key `usr`"), "{said}");
    assert!(said.contains("credentials, nkey, user, password"), "{said}");
}

/// Runs `weft ARGS…` in `dir`, expecting success; returns its stdout.
fn weft_ok(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(WEFT)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "weft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_host_requiring_signatures_runs_the_signed_component_and_refuses_every_other() {
    let keys = tempfile::tempdir().unwrap();
    let dir = keys.path();
    let made = weft_ok(dir, &["key", "generate", "release"]);
    assert!(made.contains("release.key"), "{made}");
    weft_ok(dir, &["key", "generate", "other"]);
    let id_of = |name: &str| {
        let out = weft_ok(
            dir,
            &[
                "sign",
                "probe.wasm",
                "--key",
                name,
                "-o",
                "probe-signed.wasm",
            ],
        );
        out.split("with key ").nth(1).unwrap().trim().to_string()
    };
    std::fs::copy(&guests().hello, dir.join("probe.wasm")).unwrap();
    let (release, other) = (id_of("release.key"), id_of("other.key"));
    let mode = std::fs::metadata(dir.join("release.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    let unsigned = dir.join("unsigned.wasm");
    std::fs::copy(&guests().hello, &unsigned).unwrap();
    let sign_as = |key: &str, out: &str| {
        weft_ok(
            dir,
            &["sign", "unsigned.wasm", "--key", key, "--output", out],
        );
        dir.join(out)
    };
    let signed = sign_as("release.key", "signed.wasm");
    let by_other = sign_as("other.key", "by-other.wasm");
    let altered = dir.join("altered.wasm");
    let mut bytes = std::fs::read(&signed).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&altered, bytes).unwrap();

    let verified = weft_ok(
        dir,
        &["verify", "signed.wasm", "--trusted-keys", "release.pub"],
    );
    assert!(verified.contains(&release), "{verified}");
    let out = Command::new(WEFT)
        .args(["verify", "by-other.wasm", "--trusted-keys", "release.pub"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(!out.status.success());

    let trusted = dir.join("release.pub").display().to_string();
    let host = Host::start(&["--require-signature", "--trusted-keys", &trusted]);
    let scene = Scene::new();
    let deploy = |app: &str, image: &Path| {
        let manifest = scene.manifest(
            app,
            "v1",
            &[route("hello", image, scene.port, &format!("/{app}"))],
        );
        host.cli(&["app", "deploy", manifest.to_str().unwrap()])
    };
    let ok = deploy("signed", &signed);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refusals = [
        ("unsigned", &unsigned, "it is not signed".to_string()),
        (
            "other",
            &by_other,
            format!(
                "signed by key {other}, which this host does not trust; it expects a signature \
                 by key {release}"
            ),
        ),
        ("altered", &altered, "altered after signing".to_string()),
    ];
    for (app, image, reason) in refusals {
        let out = deploy(app, image);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{app} was deployed");
        assert!(said.contains(&reason), "{app}: {said}");
        assert!(
            said.contains(&release),
            "{app} names no expected key: {said}"
        );
        let (status, _) = get(&format!("http://127.0.0.1:{}/{app}", scene.port));
        assert_eq!(status, 404, "{app}");
    }
    let (status, body) = get(&format!("http://127.0.0.1:{}/signed", scene.port));
    assert_eq!((status, body.is_empty()), (200, false));
}

#[test]
fn a_request_beyond_the_head_limits_is_refused_saying_which_and_the_app_keeps_serving() {
    let host = Host::start(&[]);
    let scene = Scene::new();
    let manifest = scene.manifest(
        "limits",
        "v1",
        &[route("hello", &guests().hello, scene.port, "/limits")],
    );
    host.deploy(&manifest);
    let url = format!("http://127.0.0.1:{}/limits", scene.port);
    let send = |request: reqwest::blocking::RequestBuilder| {
        let response = request.send().unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };
    let long = format!("{url}?q={}", "x".repeat(9 * 1024));
    let (status, said) = send(http().get(&long));
    assert_eq!(status, 414, "{said}");
    assert!(said.contains("longer than the limit of 8192"), "{said}");
    let mut many = http().get(&url);
    for i in 0..150 {
        many = many.header(format!("x-h{i}"), "v");
    }
    let (status, said) = send(many);
    assert_eq!(status, 431, "{said}");
    assert!(said.contains("more than the limit of 100"), "{said}");
    let (status, said) = send(http().get(&url).header("x-big", "y".repeat(70 * 1024)));
    assert_eq!(status, 431, "{said}");
    assert!(said.contains("more than the limit of 65536"), "{said}");
    let (status, said) = send(http().get(&url));
    assert_eq!((status, said.is_empty()), (200, false));
}

/// A NATS JWT (v2): `claims` with issuer and subject filled in, signed by `issuer` as
/// nats-server checks (Ed25519 over `header.claims`, both base64url without padding).
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = serde_json::json!({
        "jti": format!("{name}-{}", std::process::id()),
        "iat": 1_700_000_000u64,
        "iss": issuer.public_key(),
        "sub": subject,
        "name": name,
        "nats": nats,
    });
    let claims = b64.encode(claims.to_string());
    let signed = format!("{header}.{claims}");
    let signature = b64.encode(issuer.sign(signed.as_bytes()).unwrap());
    format!("{signed}.{signature}")
}

#[test]
fn a_host_with_a_creds_file_joins_an_operator_mode_server_and_another_account_s_is_refused() {
    let operator = nkeys::KeyPair::new_operator();
    let system = nkeys::KeyPair::new_account();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true,
        "conn": -1, "leaf": -1, "mem_storage": -1, "disk_storage": -1, "streams": -1,
        "consumer": -1,
    });
    let operator_jwt = nats_jwt(
        &operator,
        &operator.public_key(),
        "weft-operator",
        serde_json::json!({ "system_account": system.public_key(), "type": "operator",
                            "version": 2 }),
    );
    let system_jwt = nats_jwt(
        &operator,
        &system.public_key(),
        "SYS",
        serde_json::json!({ "type": "account", "version": 2 }),
    );
    let account_jwt = nats_jwt(
        &operator,
        &account.public_key(),
        "weft-prod",
        serde_json::json!({ "limits": unlimited, "type": "account", "version": 2 }),
    );
    let user_jwt = nats_jwt(
        &account,
        &user.public_key(),
        "host-a",
        serde_json::json!({ "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                            "type": "user", "version": 2 }),
    );
    // A user signed by an account the server does not know.
    let stranger = nkeys::KeyPair::new_account();
    let stranger_jwt = nats_jwt(
        &stranger,
        &user.public_key(),
        "stranger",
        serde_json::json!({ "pub": {}, "sub": {}, "type": "user", "version": 2 }),
    );
    let keys = tempfile::tempdir().unwrap();
    let creds = |name: &str, jwt: &str| {
        let path = keys.path().join(format!("{name}.creds"));
        std::fs::write(
            &path,
            format!(
                "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
                 ************************* IMPORTANT *************************\n\
                 NKEY Seed printed below can be used to sign and prove identity.\n\n\
                 -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
                user.seed().unwrap()
            ),
        )
        .unwrap();
        path.display().to_string()
    };
    let good = creds("host-a", &user_jwt);
    let bad = creds("stranger", &stranger_jwt);
    let nats = nats_configured(|port, store| {
        format!(
            "listen: 127.0.0.1:{port}\njetstream {{ store_dir: \"{}\" }}\n\
             operator: {operator_jwt}\nsystem_account: {}\nresolver: MEMORY\n\
             resolver_preload: {{ {}: {system_jwt}, {}: {account_jwt} }}\n",
            store.display(),
            system.public_key(),
            system.public_key(),
            account.public_key()
        )
    });
    let (host, port) = join_alone(&nats.url(), &["--nats-credentials", &good], &[]);
    deploy_hello(&host, &Scene::new(), "decentral", &[port]);
    let said = refused_host(
        &host_args(
            &nats.url(),
            "prod",
            "b",
            free_port(),
            &["--nats-credentials", &bad],
        ),
        &[],
    );
    assert!(
        said.contains("refused these credentials (credentials)"),
        "{said}"
    );
}

#[test]
fn a_host_with_the_server_s_token_joins_and_a_wrong_token_is_refused() {
    let nats = nats_configured(|port, store| {
        format!(
            "listen: 127.0.0.1:{port}\njetstream {{ store_dir: \"{}\" }}\n\
             authorization {{ token: \"lattice-token-1\" }}\n",
            store.display()
        )
    });
    let keys = tempfile::tempdir().unwrap();
    let token_file = keys.path().join("token");
    std::fs::write(&token_file, "lattice-token-1\n").unwrap();
    let token_file = token_file.display().to_string();
    let _joined = join_alone(&nats.url(), &["--nats-token-file", &token_file], &[]);
    let said = refused_host(
        &host_args(&nats.url(), "prod", "b", free_port(), &[] as &[&str]),
        &[("WEFT_NATS_TOKEN", "guess")],
    );
    assert!(said.contains("refused these credentials (token)"), "{said}");
}
