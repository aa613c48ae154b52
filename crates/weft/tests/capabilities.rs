//! End-to-end tests of capabilities: key-value on every backend, blobstore, messaging, secrets,
//! with real `redis-server` and `nats-server -js` processes on free loopback ports.

mod support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

/// A manifest serving the counter component at `path` with its key-value link to `backend`.
fn counter_app(
    dir: &Path,
    app: &str,
    port: u16,
    path: &str,
    backend: &str,
    url: Option<&str>,
) -> PathBuf {
    let url = url.map(|u| format!(", url: \"{u}\"")).unwrap_or_default();
    counter_app_on(dir, app, port, path, &format!("backend: {backend}{url}"))
}

fn post(url: &str, body: &str) -> (u16, String) {
    let response = http()
        .post(url)
        .body(body.to_string())
        .send()
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    (response.status().as_u16(), response.text().unwrap())
}

/// `clients` threads each POST `url` `each` times; returns the failures seen.
fn hammer(url: &str, clients: usize, each: usize) -> Vec<String> {
    hammer_with(url, clients, each, |_, _| String::new())
}

/// `hammer`, the body of client `c`'s `i`-th POST being `body(c, i)`.
fn hammer_with(
    url: &str,
    clients: usize,
    each: usize,
    body: fn(usize, usize) -> String,
) -> Vec<String> {
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let url = url.to_string();
            std::thread::spawn(move || {
                let client = http();
                let mut failures = Vec::new();
                for i in 0..each {
                    match client.post(&url).body(body(c, i)).send() {
                        Ok(r) if r.status().is_success() => {}
                        Ok(r) => failures.push(format!(
                            "{}: {}",
                            r.status(),
                            r.text().unwrap_or_default()
                        )),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                failures
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

#[test]
fn eight_clients_count_to_exactly_4000_on_every_keyvalue_backend() {
    let redis = Server::redis();
    let nats = Server::nats();
    let host = Host::start(&[]);
    let s = Scene::new();
    let backends = [
        ("memory", None),
        ("file", None),
        ("sqlite", None),
        ("redis", Some(redis.url())),
        ("nats", Some(nats.url())),
    ];
    for (backend, url) in &backends {
        let app = counter_app(
            s.dir.path(),
            &format!("count-{backend}"),
            s.port,
            &format!("/{backend}"),
            backend,
            url.as_deref(),
        );
        host.deploy(&app);
    }
    for (backend, _) in &backends {
        let url = format!("http://127.0.0.1:{}/{backend}/hits", s.port);
        let failures = hammer(&url, 8, 500);
        assert!(
            failures.is_empty(),
            "{backend}: {} failed, first: {:?}",
            failures.len(),
            failures.first()
        );
        let (status, body) = get(&url);
        assert_eq!((status, body.trim()), (200, "4000"), "{backend}");
    }
}

#[test]
fn the_count_survives_a_restart_with_the_file_and_sqlite_backends_and_with_redis() {
    let mut redis = Server::redis();
    // Redis keeps its data across its own restarts only when asked to; this one is not restarted.
    let mut host = Host::start(&[]);
    let s = Scene::new();
    host.deploy(&counter_app(
        s.dir.path(),
        "durable-file",
        s.port,
        "/file",
        "file",
        None,
    ));
    host.deploy(&counter_app(
        s.dir.path(),
        "durable-sqlite",
        s.port,
        "/sqlite",
        "sqlite",
        None,
    ));
    host.deploy(&counter_app(
        s.dir.path(),
        "durable-redis",
        s.port,
        "/redis",
        "redis",
        Some(&redis.url()),
    ));
    for path in ["file", "sqlite", "redis"] {
        for _ in 0..5 {
            let (status, _) = post(&format!("http://127.0.0.1:{}/{path}/visits", s.port), "");
            assert_eq!(status, 200);
        }
    }
    host.stop();
    host.restart(&[]);
    for path in ["file", "sqlite", "redis"] {
        let (status, body) = post(&format!("http://127.0.0.1:{}/{path}/visits", s.port), "");
        assert_eq!((status, body.trim()), (200, "6"), "{path}: {}", host.log());
    }
    redis.kill();
}

#[test]
fn a_backend_password_reaches_neither_the_client_nor_the_log() {
    let host = Host::start(&[]);
    let s = Scene::new();
    // Nothing listens on port 1: every store call fails, and says where it tried.
    host.deploy(&counter_app(
        s.dir.path(),
        "guarded",
        s.port,
        "/counter",
        "redis",
        Some("redis://app:s3cret-pw@127.0.0.1:1/0"),
    ));
    let (status, body) = post(&format!("http://127.0.0.1:{}/counter/n", s.port), "");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("redis://app:***@127.0.0.1:1/0"), "{body}");
    let status = host.cli_ok(&["app", "status", "guarded"]);
    for (what, text) in [("response", body), ("status", status), ("log", host.log())] {
        assert!(
            !text.contains("s3cret-pw"),
            "the password is in the {what}:\n{text}"
        );
    }
}

#[test]
fn a_backend_url_kept_as_a_secret_is_used_and_never_stored_or_shown_in_clear() {
    let password = "pw-only-in-the-secret-store";
    let redis = Server::redis_requiring(password);
    let mut host = Host::start(&[]);
    let s = Scene::new();
    let url = format!("redis://:{password}@127.0.0.1:{}/0", redis.port);
    let mut output = put_secret(&host, "counter-redis", &url);
    host.deploy(&counter_app(
        s.dir.path(),
        "kept",
        s.port,
        "/counter",
        "redis",
        Some("secret:counter-redis"),
    ));
    for expected in ["1", "2"] {
        let (status, body) = post(&format!("http://127.0.0.1:{}/counter/n", s.port), "");
        assert_eq!((status, body.trim()), (200, expected), "{}", host.log());
    }

    // A reference to a key the store does not hold is refused at deploy, saying how to set it.
    let missing = counter_app(
        s.dir.path(),
        "unset",
        free_port(),
        "/counter",
        "redis",
        Some("secret:no-such-key"),
    );
    let refused = host.cli_err(&["app", "deploy", missing.to_str().unwrap()]);
    assert!(
        refused.contains("no-such-key") && refused.contains("weft secret put no-such-key"),
        "{refused}"
    );

    output += &host.cli_ok(&["app", "status", "kept", "--json"]);
    output += &host.cli_ok(&["app", "list"]);
    assert!(!output.contains(password), "a CLI printed it: {output}");
    assert!(!host.log().contains(password), "the host logged it");
    host.stop();
    assert_eq!(
        files_containing(host.state.path(), password),
        Vec::<PathBuf>::new(),
        "the password is stored in clear"
    );
}

#[test]
fn a_lost_redis_fails_only_store_calls_and_the_store_recovers_without_a_restart() {
    let g = guests();
    let mut redis = Server::redis();
    let mut host = Host::start(&[]);
    let s = Scene::new();
    host.deploy(&counter_app(
        s.dir.path(),
        "flaky",
        s.port,
        "/counter",
        "redis",
        Some(&redis.url()),
    ));
    host.deploy(&s.manifest("hello", "v1", &[route("hello", &g.hello, s.port, "/hello")]));
    let counter = format!("http://127.0.0.1:{}/counter/n", s.port);
    let hello = format!("http://127.0.0.1:{}/hello", s.port);
    assert_eq!(post(&counter, "").0, 200);

    redis.kill();
    let (status, body) = post(&counter, "");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("Redis"),
        "the guest names the failed backend: {body}"
    );
    // Reads of the store fail the same way; everything else keeps answering.
    assert_eq!(get(&counter).0, 503);
    assert_eq!(get(&hello).0, 200);
    assert!(
        host.is_running(),
        "the host survived the loss:\n{}",
        host.log()
    );

    redis.restart();
    // The connection is remade on the next calls; this server started empty.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = post(&counter, "");
        if status == 200 {
            assert_eq!(body.trim(), "1");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the store did not recover: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_unlinked_capability_import_fails_the_deploy_naming_it() {
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    let app = s.manifest(
        "unlinked",
        "v1",
        &[route("counter", &g.counter, s.port, "/counter")],
    );
    let err = host.cli_err(&["app", "deploy", app.to_str().unwrap()]);
    assert!(err.contains("wasi:keyvalue/"), "{err}");
    assert!(err.contains("no link granting it"), "{err}");
    assert!(
        !host.cli_ok(&["app", "list"]).contains("unlinked"),
        "a refused app is not stored"
    );
}

#[test]
fn a_secret_reaches_only_the_component_granted_it_and_never_any_output() {
    let host = Host::start(&[]);
    let s = Scene::new();
    // Two components of one app, each granted a different secret.
    let image = guests().counter.display().to_string();
    let component = |name: &str, key: &str| {
        format!(
            r#"    - name: {name}
      type: component
      properties:
        image: {image}
        secrets: [{{ name: token, properties: {{ key: {key} }} }}]
      traits:
        - type: link
          properties: {{ target: {{ name: kv }}, namespace: wasi, package: keyvalue, interfaces: [store, atomics] }}
"#
        )
    };
    let route = |name: &str| {
        format!(
            r#"        - type: link
          properties:
            target: {{ name: {name} }}
            namespace: wasi
            package: http
            interfaces: [incoming-handler]
            source: {{ config: [{{ name: r, properties: {{ address: "127.0.0.1:{}", path: /{name} }} }}] }}
"#,
            s.port
        )
    };
    let yaml = format!(
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata: {{ name: two }}\nspec:\n  components:\n{}{}    - name: kv\n      type: capability\n      properties: {{ image: weft:keyvalue }}\n    - name: http\n      type: capability\n      properties: {{ image: weft:http-server }}\n      traits:\n{}{}",
        component("a", "a-token"),
        component("b", "b-token"),
        route("a"),
        route("b"),
    );
    let app = s.dir.path().join("two.yaml");
    std::fs::write(&app, yaml).unwrap();
    host.deploy(&app);

    let value = "s3cr3t-value-for-a";
    let mut cli_output = put_secret(&host, "a-token", &format!("{value}\n"));

    let check = |path: &str, token: &str| {
        http()
            .get(format!("http://127.0.0.1:{}/{path}/secret/token", s.port))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(check("a", value), 200, "a reads its secret");
    assert_eq!(check("a", "guess"), 401);
    // b asks for the same name: its grant points at b-token, which is unset, so it sees nothing.
    assert_eq!(check("b", value), 404);
    // b cannot name a's key either: only names its manifest grants resolve.
    let (status, _) = get(&format!("http://127.0.0.1:{}/b/secret/a-token", s.port));
    assert_eq!(status, 404);

    cli_output += &host.cli_ok(&["secret", "list"]);
    cli_output += &host.cli_ok(&["app", "status", "two", "--json"]);
    cli_output += &host.cli_ok(&["status", "--json"]);
    assert!(
        cli_output.contains("a-token"),
        "the key is listed: {cli_output}"
    );
    assert!(
        !cli_output.contains(value),
        "a CLI printed the secret: {cli_output}"
    );
    assert!(!host.log().contains(value), "the host logged the secret");
    let stored = std::fs::read(host.state.path().join("secrets.redb")).unwrap();
    assert!(
        !stored.windows(value.len()).any(|w| w == value.as_bytes()),
        "the secret is stored in clear text"
    );
}

fn blobs_app(dir: &Path, app: &str, port: u16, path: &str, backend: &str) -> PathBuf {
    let image = guests().blobs.display().to_string();
    let yaml = format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {{ name: {app} }}
spec:
  components:
    - name: blobs
      type: component
      properties: {{ image: {image} }}
      traits:
        - type: link
          properties: {{ target: {{ name: store }}, namespace: wasi, package: blobstore, interfaces: [blobstore, container, types] }}
    - name: store
      type: capability
      properties:
        image: weft:blobstore
        config: [{{ name: store, properties: {{ backend: {backend} }} }}]
{http}"#,
        http = http_server("blobs", port, path),
    );
    write_yaml(dir, app, &yaml)
}

#[test]
fn blobs_are_stored_listed_read_and_deleted_on_every_blobstore_backend() {
    let nats = Server::nats();
    let mut host = Host::start(&[]);
    let s = Scene::new();
    let backends = [
        ("memory", "memory".to_string()),
        ("filesystem", "filesystem".to_string()),
        ("nats", format!("nats, url: \"{}\"", nats.url())),
    ];
    for (backend, config) in &backends {
        host.deploy(&blobs_app(
            s.dir.path(),
            &format!("blobs-{backend}"),
            s.port,
            &format!("/{backend}"),
            config,
        ));
    }
    let big: String = (0..200_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    for (backend, _) in &backends {
        let base = format!("http://127.0.0.1:{}/{backend}", s.port);
        let put = |name: &str, body: &str| {
            http()
                .put(format!("{base}/{name}"))
                .body(body.to_string())
                .send()
                .unwrap()
                .status()
                .as_u16()
        };
        assert_eq!(put("notes.txt", "first"), 201);
        assert_eq!(
            put("nested/dir/.file", "deep"),
            201,
            "names may hold `/` and `.`"
        );
        assert_eq!(put("big", &big), 201);
        assert_eq!(
            get(&format!("{base}/notes.txt")),
            (200, "first".to_string())
        );
        assert_eq!(put("notes.txt", "second"), 201);
        assert_eq!(
            get(&format!("{base}/notes.txt")),
            (200, "second".to_string())
        );
        assert_eq!(get(&format!("{base}/big")).1.len(), big.len());
        let (status, list) = get(&format!("{base}/"));
        assert_eq!(status, 200);
        let mut names: Vec<&str> = list.lines().collect();
        names.sort();
        assert_eq!(names, ["big", "nested/dir/.file", "notes.txt"], "{backend}");
        assert_eq!(
            get(&format!("{base}/nested/dir/.file")),
            (200, "deep".to_string())
        );
        let deleted = http()
            .delete(format!("{base}/notes.txt"))
            .send()
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(deleted, 204);
        assert_eq!(get(&format!("{base}/notes.txt")).0, 404);
    }
    // NATS's own object-store client (nats-py) reads what the guest wrote and writes what it
    // reads: the layout is NATS's.
    let script = format!(
        r#"
import asyncio, nats
async def main():
    nc = await nats.connect("{url}")
    obs = await nc.jetstream().object_store("files")
    print(len((await obs.get("big")).data))
    await obs.put("from-nats-py", b"written by nats-py")
    await nc.close()
asyncio.run(main())
"#,
        url = nats.url()
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        big.len().to_string()
    );
    assert_eq!(
        get(&format!("http://127.0.0.1:{}/nats/from-nats-py", s.port)),
        (200, "written by nats-py".to_string())
    );
    // The directory and NATS stores keep objects across a restart.
    host.stop();
    host.restart(&[]);
    for backend in ["filesystem", "nats"] {
        let (status, body) = get(&format!("http://127.0.0.1:{}/{backend}/big", s.port));
        assert_eq!((status, body.len()), (200, big.len()), "{backend}");
    }
}

fn messenger_app(dir: &Path, app: &str, port: u16, backend: &str, url: Option<&str>) -> PathBuf {
    let image = guests().messenger.display().to_string();
    let url = url.map(|u| format!(", url: \"{u}\"")).unwrap_or_default();
    let yaml = format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {{ name: {app} }}
spec:
  components:
    - name: messenger
      type: component
      properties: {{ image: {image} }}
      traits:
        - type: link
          properties: {{ target: {{ name: bus }}, namespace: wasmcloud, package: messaging, interfaces: [consumer] }}
    - name: bus
      type: capability
      properties:
        image: weft:messaging
        config: [{{ name: bus, properties: {{ backend: {backend}{url} }} }}]
      traits:
        - type: link
          properties:
            target: {{ name: messenger }}
            namespace: wasmcloud
            package: messaging
            interfaces: [handler]
            source: {{ config: [{{ name: s, properties: {{ subscriptions: "{app}.*" }} }}] }}
{http}"#,
        http = http_server("messenger", port, &format!("/{app}")),
    );
    write_yaml(dir, app, &yaml)
}

/// Sends a NATS core request the plain way (the text protocol over TCP) and returns the reply.
fn nats_request(port: u16, subject: &str, body: &str) -> String {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("INFO"), "{line}");
    write!(
        writer,
        "CONNECT {{\"verbose\":false}}\r\nSUB _INBOX.test 1\r\nPUB {subject} _INBOX.test {}\r\n{body}\r\nPING\r\n",
        body.len()
    )
    .unwrap();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.starts_with("MSG") {
            let len: usize = line.split_whitespace().last().unwrap().parse().unwrap();
            let mut payload = vec![0; len + 2];
            std::io::Read::read_exact(&mut reader, &mut payload).unwrap();
            return String::from_utf8_lossy(&payload[..len]).into_owned();
        }
        assert!(!line.is_empty(), "NATS closed the connection");
    }
}

#[test]
fn a_handler_replies_on_the_reply_subject_in_process_and_over_nats() {
    let nats = Server::nats();
    let host = Host::start(&[]);
    let s = Scene::new();
    host.deploy(&messenger_app(
        s.dir.path(),
        "local",
        s.port,
        "in-process",
        None,
    ));
    host.deploy(&messenger_app(
        s.dir.path(),
        "remote",
        s.port,
        "nats",
        Some(&nats.url()),
    ));
    for app in ["local", "remote"] {
        let (status, body) = post(
            &format!("http://127.0.0.1:{}/{app}/request/{app}.one", s.port),
            "hi",
        );
        assert_eq!((status, body.as_str()), (200, "re: hi"), "{app}");
        // Nobody subscribes to other subjects: the request says so instead of hanging.
        let (status, body) = post(
            &format!("http://127.0.0.1:{}/{app}/request/nobody.here", s.port),
            "hi",
        );
        assert_eq!(status, 504, "{app}: {body}");
    }
    // A plain NATS client reaches the handler through the server.
    assert_eq!(
        nats_request(nats.port, "remote.two", "from outside"),
        "re: from outside"
    );
}

#[test]
fn set_link_name_picks_one_of_two_stores_linked_to_one_interface() {
    let host = Host::start(&[]);
    let s = Scene::new();
    // examples/counter/app.yaml links two key-value stores: `default` (a file) and `cache`.
    let manifest = std::fs::read_to_string(repo().join("examples/counter/app.yaml"))
        .unwrap()
        .replace(
            "./build/counter.wasm",
            &guests().counter.display().to_string(),
        )
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{}", s.port));
    let app = s.dir.path().join("counter.yaml");
    std::fs::write(&app, manifest).unwrap();
    host.deploy(&app);
    let base = format!("http://127.0.0.1:{}/counter", s.port);
    for _ in 0..3 {
        assert_eq!(post(&format!("{base}/k"), "").0, 200);
    }
    let (status, body) = post(&format!("{base}/k?store=cache"), "");
    assert_eq!(
        (status, body.trim()),
        (200, "1"),
        "the cache link is a separate store"
    );
    assert_eq!(
        get(&format!("{base}/k")).1.trim(),
        "3",
        "the default link is untouched"
    );
    let (status, body) = post(&format!("{base}/k?store=nope"), "");
    assert_eq!(status, 503, "{body}");
    // wasi:keyvalue/batch reads several keys in one call; wasi:logging reaches the host log.
    assert_eq!(
        get(&format!("{base}/many/k,absent")),
        (200, "k=3\nabsent=0\n".to_string())
    );
    let log = host.log();
    assert!(
        log.contains("weft::guest") && log.contains("read 2 keys in one batch"),
        "{log}"
    );
    assert_eq!(
        get(&format!("{base}/config/greeting")).1.trim(),
        "hello from config"
    );
}

#[test]
fn a_lost_nats_fails_only_its_calls_and_both_kv_and_messaging_recover() {
    let mut nats = Server::nats();
    let mut host = Host::start(&[]);
    let s = Scene::new();
    host.deploy(&counter_app(
        s.dir.path(),
        "jet",
        s.port,
        "/jet",
        "nats",
        Some(&nats.url()),
    ));
    host.deploy(&messenger_app(
        s.dir.path(),
        "wire",
        s.port,
        "nats",
        Some(&nats.url()),
    ));
    let counter = format!("http://127.0.0.1:{}/jet/n", s.port);
    let request = format!("http://127.0.0.1:{}/wire/request/wire.x", s.port);
    for _ in 0..3 {
        assert_eq!(post(&counter, "").0, 200);
    }
    assert_eq!(post(&request, "ping"), (200, "re: ping".to_string()));

    nats.kill();
    let (status, body) = post(&counter, "");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("NATS"), "{body}");
    assert_ne!(post(&request, "ping").0, 200);
    assert!(
        host.is_running(),
        "the host survived the loss:\n{}",
        host.log()
    );

    // Back on the same port with the same JetStream store: the client reconnects on its own,
    // the subscription is renewed, and the acknowledged count is still there.
    nats.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let recovered = loop {
        let counted = post(&counter, "");
        let replied = post(&request, "again");
        if counted.0 == 200 && replied.0 == 200 {
            break (counted.1, replied.1);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no recovery: {counted:?} {replied:?}\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(recovered.1, "re: again");
    let count: u64 = recovered.0.trim().parse().unwrap();
    assert!(count >= 4, "acknowledged increments were lost: {count}");
}

/// examples/relay/app.yaml on the scene's port, its bus and its watched key-value store on the
/// backends given; `wasmcloud_links` writes the messaging links as wasmCloud's own examples do
/// (`[consumer]`, `[handler]`) although the component speaks 0.3.0.
fn relay_app(s: &Scene, name: &str, bus: &str, kv: &str, wasmcloud_links: bool) -> PathBuf {
    let mut yaml = std::fs::read_to_string(repo().join("examples/relay/app.yaml"))
        .unwrap()
        .replace("name: relay\n  annotations", &format!("name: {name}\n  annotations"))
        .replace("./build/relay.wasm", &guests().relay.display().to_string())
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{}", s.port))
        .replace("path: /relay", &format!("path: /{name}"))
        .replace("relay.*,relay.>", &format!("{name}.*,{name}.>"))
        .replace(
            "properties: { image: weft:messaging }",
            &format!("properties: {{ image: weft:messaging, config: [{{ name: b, properties: {bus} }}] }}"),
        )
        .replace(
            "    - name: kv\n      type: capability\n      properties: { image: weft:keyvalue }",
            &format!("    - name: kv\n      type: capability\n      properties: {{ image: weft:keyvalue, config: [{{ name: b, properties: {kv} }}] }}"),
        );
    if wasmcloud_links {
        yaml = yaml
            .replace("interfaces: [producer, request-reply]", "interfaces: [consumer]")
            .replace(
                "interfaces: [incoming-handler]\n            source:\n              config: [{ name: subscriptions",
                "interfaces: [handler]\n            source:\n              config: [{ name: subscriptions",
            );
    }
    write_yaml(s.dir.path(), name, &yaml)
}

#[test]
fn messaging_0_3_bus_2_and_config_runtime_serve_a_component_that_imports_exactly_them() {
    let nats = Server::nats();
    let host = Host::start(&[]);
    let s = Scene::new();
    let memory = "{ backend: memory }";
    host.deploy(&relay_app(
        &s,
        "local",
        "{ backend: in-process }",
        memory,
        false,
    ));
    let nats_backend = format!("{{ backend: nats, url: \"{}\" }}", nats.url());
    host.deploy(&relay_app(&s, "remote", &nats_backend, memory, true));
    for app in ["local", "remote"] {
        let base = format!("http://127.0.0.1:{}/{app}", s.port);
        // Two subscriptions match, so two replies; content type and metadata cross the broker.
        let (status, body) = post(&format!("{base}/request/{app}.echo?replies=2"), "hi");
        assert_eq!(
            (status, body.as_str()),
            (
                200,
                "relay: hi [text/plain] sent-by=relay\nrelay: hi [text/plain] sent-by=relay"
            ),
            "{app}"
        );
        let (status, body) = post(&format!("{base}/request/{app}.echo"), "one");
        assert_eq!(
            (status, body.as_str()),
            (200, "relay: one [text/plain] sent-by=relay"),
            "{app}"
        );
        // A message with no reply subject: the handler's `reply` fails and it stores it.
        assert_eq!(post(&format!("{base}/send/{app}.inbox"), "note").0, 200);
        let stored = format!("{base}/kv/last.{app}.inbox");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while get(&stored).0 != 200 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(get(&stored), (200, "note".to_string()), "{app}");
        let (status, body) = post(&format!("{base}/request/nobody.here"), "x");
        assert!(
            status == 502 && body.contains("no responders"),
            "{app}: {status} {body}"
        );
        // bus 2.0.0: a named link is picked, and a name that is no link is an error value.
        let put = http()
            .put(format!("{base}/kv/k?store=scratch"))
            .body("v")
            .send()
            .unwrap();
        assert_eq!(put.status().as_u16(), 200);
        assert_eq!(
            get(&format!("{base}/kv/k?store=scratch")),
            (200, "v".into())
        );
        assert_eq!(
            get(&format!("{base}/kv/k")).0,
            404,
            "the default link is another store"
        );
        let (status, body) = get(&format!("{base}/kv/k?store=nope"));
        assert_eq!(status, 404);
        assert!(
            body.contains("no wasi:keyvalue link named `nope`") && body.contains("scratch"),
            "{body}"
        );
        assert_eq!(
            get(&format!("{base}/config/greeting")),
            (200, "hello from the runtime config".to_string())
        );
    }
    // A plain NATS client, sending no headers, reaches the 0.3 handler through the server.
    assert_eq!(
        nats_request(nats.port, "remote.outside", "from outside"),
        "relay: from outside [] "
    );
}

/// Sends `text` to a plain TCP server (a Redis or NATS text command) and reads its first answer.
fn tcp_say(port: u16, text: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(text.as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

/// The counter component on `kv` (a backend's config), watching the key `watched`.
fn watching_app(s: &Scene, app: &str, kv: &str) -> PathBuf {
    let image = guests().counter.display().to_string();
    let yaml = format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {{ name: {app} }}
spec:
  components:
    - name: counter
      type: component
      properties: {{ image: {image} }}
      traits:
        - type: link
          properties: {{ target: {{ name: kv }}, namespace: wasi, package: keyvalue, interfaces: [store, atomics] }}
    - name: kv
      type: capability
      properties:
        image: weft:keyvalue
        config: [{{ name: kv, properties: {kv} }}]
      traits:
        - type: link
          properties:
            target: {{ name: counter }}
            namespace: wasi
            package: keyvalue
            interfaces: [watcher]
            source: {{ config: [{{ name: w, properties: {{ watch: "SET@watched,DEL@watched" }} }}] }}
{http}"#,
        http = http_server("counter", s.port, &format!("/{app}")),
    );
    write_yaml(s.dir.path(), app, &yaml)
}

/// GETs `url` until it answers 200 with `want`, for at most 10 s; returns the last answer.
fn eventually(url: &str, want: &str) -> (u16, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get(url);
        if (answer.0 == 200 && answer.1.trim() == want) || std::time::Instant::now() > deadline {
            return (answer.0, answer.1.trim().to_string());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_watcher_hears_of_its_keys_changing_from_any_client_on_every_backend() {
    let nats = Server::nats();
    let redis = Server::redis_with(&["--notify-keyspace-events", "K$g"]);
    let quiet_redis = Server::redis();
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(&[]);
    let s = Scene::new();
    let backends = [
        ("mem", "{ backend: memory }".to_string()),
        (
            "disk",
            format!(
                "{{ backend: sqlite, path: \"{}\" }}",
                dir.path().join("kv.db").display()
            ),
        ),
        (
            "jet",
            format!("{{ backend: nats, url: \"{}\" }}", nats.url()),
        ),
        (
            "red",
            format!("{{ backend: redis, url: \"{}\" }}", redis.url()),
        ),
    ];
    for (app, kv) in &backends {
        let outcome = host.deploy(&watching_app(&s, app, kv));
        // The counter imports wasmcloud:secrets and is granted none: served as wasmCloud serves
        // it, every secret not found, and the deploy says so.
        let warnings = outcome["warnings"].to_string();
        assert!(
            warnings.contains("granted no secrets: every secret it asks for is not found"),
            "{outcome}"
        );
    }
    let (status, body) = get(&format!("http://127.0.0.1:{}/mem/secret/token", s.port));
    assert_eq!(status, 404, "{body}");
    // A strict deploy refuses what would warn.
    let strict = watching_app(&s, "strict", "{ backend: memory }");
    let yaml = std::fs::read_to_string(&strict).unwrap().replace(
        "metadata: { name: strict }",
        "metadata: { name: strict, annotations: { weft.dev/strict: \"true\" } }",
    );
    std::fs::write(&strict, yaml).unwrap();
    let refused = host.cli_err(&["app", "deploy", strict.to_str().unwrap()]);
    assert!(
        refused.contains("deployed strictly") && refused.contains("granted no secrets"),
        "{refused}"
    );
    for (app, _) in &backends {
        let base = format!("http://127.0.0.1:{}/{app}", s.port);
        assert_eq!(post(&format!("{base}/watched"), "").0, 200, "{app}");
        assert_eq!(
            eventually(&format!("{base}/seen.watched"), "1"),
            (200, "1".into()),
            "{app}"
        );
        let deleted = http().delete(format!("{base}/watched")).send().unwrap();
        assert_eq!(deleted.status().as_u16(), 200, "{app}");
        assert_eq!(
            eventually(&format!("{base}/gone.watched"), "deleted"),
            (200, "deleted".into()),
            "{app}"
        );
        // A key nobody watches is not reported.
        assert_eq!(post(&format!("{base}/other"), "").0, 200);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(get(&format!("{base}/seen.other")).1.trim(), "0", "{app}");
    }
    // Writes by other clients of the server reach the watcher too.
    assert_eq!(
        tcp_say(redis.port, "SET watched from-redis-cli\r\n").trim(),
        "+OK"
    );
    assert_eq!(
        eventually(
            &format!("http://127.0.0.1:{}/red/seen.watched", s.port),
            "from-redis-cli"
        ),
        (200, "from-redis-cli".into())
    );
    let pub_ = tcp_say(
        nats.port,
        "CONNECT {\"verbose\":false}\r\nPUB $KV.weft.watched 8\r\nfrom-pub\r\nPING\r\n",
    );
    assert!(pub_.starts_with("INFO"), "{pub_}");
    assert_eq!(
        eventually(
            &format!("http://127.0.0.1:{}/jet/seen.watched", s.port),
            "from-pub"
        ),
        (200, "from-pub".into())
    );
    // A Redis that publishes no keyspace events cannot be watched: the deploy says how to fix it.
    let quiet = format!("{{ backend: redis, url: \"{}\" }}", quiet_redis.url());
    let hush = watching_app(&s, "hush", &quiet);
    let stderr = host.cli_err(&["app", "deploy", hush.to_str().unwrap()]);
    assert!(stderr.contains("notify-keyspace-events K$g"), "{stderr}");
    assert_eq!(
        get(&format!("http://127.0.0.1:{}/mem/seen.watched", s.port))
            .1
            .trim(),
        "1",
        "the other apps keep serving"
    );
}

/// The ticker's count, 0 before its first tick.
fn ticks(url: &str) -> u64 {
    let (code, body) = get(url);
    assert_eq!(code, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix("ticks="))
        .unwrap_or_else(|| panic!("no count in {body}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_schedule_every_second_ticks_ten_times_in_ten_seconds_and_a_failing_tick_stops_none() {
    let host = Host::start(&[]);
    let s = Scene::new();
    host.deploy(&ticker_app(&s, "tick", "1s", "{ backend: memory }"));
    let url = format!("http://127.0.0.1:{}/tick", s.port);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while ticks(&url) == 0 {
        assert!(std::time::Instant::now() < deadline, "no tick in 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let first = ticks(&url);
    std::thread::sleep(Duration::from_secs(10));
    let ten_seconds_on = ticks(&url) - first;
    assert!(
        (9..=11).contains(&ten_seconds_on),
        "{ten_seconds_on} ticks in 10 s"
    );
    // Each tick is due on a whole second, and each is handled once.
    let log = host.log();
    let dues: Vec<u64> = log
        .lines()
        .filter_map(|l| l.split("tick clock ").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert!(dues.len() >= 10, "{log}");
    assert!(dues.iter().all(|due| due % 1000 == 0), "{dues:?}");
    assert!(dues.windows(2).all(|w| w[1] == w[0] + 1000), "{dues:?}");

    // A tick whose job fails (its store is gone) is logged with the reason; the next ones come
    // anyway and count again once the store is back.
    let mut redis = Server::redis();
    let kv = format!("{{ backend: redis, url: \"{}\" }}", redis.url());
    host.deploy(&ticker_app(&s, "flaky", "1s", &kv));
    let flaky = format!("http://127.0.0.1:{}/flaky", s.port);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(ticks(&flaky) >= 1);
    redis.kill();
    std::thread::sleep(Duration::from_millis(2500));
    let log = host.log();
    assert!(
        log.contains("event not handled") && log.contains("the handler returned an error"),
        "{log}"
    );
    redis.restart();
    std::thread::sleep(Duration::from_millis(300));
    let back = ticks(&flaky);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        ticks(&flaky) > back,
        "no tick counted after the store came back"
    );
    assert!(
        ticks(&url) > first + ten_seconds_on,
        "the other app stopped ticking"
    );
}

#[test]
fn a_schedule_that_cannot_run_is_refused_naming_why() {
    let host = Host::start(&[]);
    let s = Scene::new();
    let mem = "{ backend: memory }";
    let cases = [
        ("cron:61 * * * *", "is not a cron expression"),
        ("500ms", "shorter than the shortest interval"),
        ("soon", "every"),
    ];
    for (when, want) in cases {
        let err = host.cli_err(&[
            "app",
            "deploy",
            ticker_app(&s, "bad", when, mem).to_str().unwrap(),
        ]);
        assert!(err.contains(want), "{when}: {err}");
    }
    // A cron expression with seconds, every two seconds, is taken; status says what calls it.
    host.deploy(&ticker_app(&s, "cron", "cron:*/2 * * * * *", mem));
    let status = host.cli_ok(&["app", "status", "cron"]);
    assert!(
        status.contains("called on: schedule `clock`: cron */2 * * * * * (UTC)"),
        "{status}"
    );
    // A component with no schedule handler cannot be linked to a schedule.
    let hello = ticker_app(&s, "hello", "1s", mem);
    let yaml = std::fs::read_to_string(&hello).unwrap().replace(
        &guests().ticker.display().to_string(),
        &guests().counter.display().to_string(),
    );
    std::fs::write(&hello, yaml).unwrap();
    let err = host.cli_err(&["app", "deploy", hello.to_str().unwrap()]);
    assert!(err.contains("weft:schedule/handler@0.1.0"), "{err}");
    let cron = format!("http://127.0.0.1:{}/cron", s.port);
    std::thread::sleep(Duration::from_millis(4500));
    let counted = ticks(&cron);
    assert!((1..=3).contains(&counted), "{counted} ticks in 4.5 s");
}

/// The inbox component handling `subjects` on the Redis at `redis`.
fn inbox_app(s: &Scene, app: &str, redis: &str, subjects: &str) -> PathBuf {
    let image = guests().inbox.display().to_string();
    let yaml = format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {{ name: {app} }}
spec:
  components:
    - name: inbox
      type: component
      properties: {{ image: {image} }}
      traits:
        - type: link
          properties: {{ target: {{ name: kv }}, namespace: wasi, package: keyvalue, interfaces: [store, atomics] }}
    - name: kv
      type: capability
      properties: {{ image: weft:keyvalue }}
    - name: channels
      type: capability
      properties:
        image: weft:messaging
        config: [{{ name: redis, properties: {{ backend: redis, url: "{redis}" }} }}]
      traits:
        - type: link
          properties:
            target: {{ name: inbox }}
            namespace: wasmcloud
            package: messaging
            interfaces: [handler]
            source: {{ config: [{{ name: s, properties: {{ subscriptions: "{subjects}" }} }}] }}
{http}"#,
        http = http_server("inbox", s.port, &format!("/{app}")),
    );
    write_yaml(s.dir.path(), app, &yaml)
}

#[test]
fn a_redis_publish_reaches_the_handler_and_a_trapping_message_stops_none_after_it() {
    let mut redis = Server::redis();
    let host = Host::start(&[]);
    let s = Scene::new();
    host.deploy(&inbox_app(&s, "inbox", &redis.url(), "orders.*"));
    let url = format!("http://127.0.0.1:{}/inbox", s.port);
    let port = redis.port;
    let publish = |channel: &str, body: &str| {
        tcp_say(port, &format!("PUBLISH {channel} \"{body}\"\r\n"))
            .trim()
            .to_string()
    };
    let status = host.cli_ok(&["app", "status", "inbox"]);
    assert!(
        status.contains("called on: messages on orders.* from `channels` (redis)"),
        "{status}"
    );
    // One subscriber (the host) hears the channel.
    assert_eq!(publish("orders.new", "two apples"), ":1");
    let want = "received=1\nlast=two apples\nlast-subject=orders.new";
    assert_eq!(eventually(&url, want), (200, want.into()));

    // `orders.*` is one token: the glob Redis matches is narrowed to the subject's wildcards.
    publish("orders.eu.new", "not mine");
    publish("orders.old", "after");
    let want = "received=2\nlast=after\nlast-subject=orders.old";
    assert_eq!(eventually(&url, want), (200, want.into()));

    // A message that traps the handler is logged; the next one is handled.
    publish("orders.bad", "panic");
    publish("orders.new", "after the trap");
    let want = "received=3\nlast=after the trap\nlast-subject=orders.new";
    assert_eq!(eventually(&url, want), (200, want.into()));
    // Handled concurrently: the trap's log line may come after the next message's answer.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !(host.log().contains("event not handled") && host.log().contains("orders.bad")) {
        assert!(std::time::Instant::now() < deadline, "{}", host.log());
        std::thread::sleep(Duration::from_millis(50));
    }

    // Redis restarted: the host subscribes again on its own.
    redis.kill();
    redis.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while publish("orders.new", "back") != ":1" {
        assert!(std::time::Instant::now() < deadline, "not subscribed again");
        std::thread::sleep(Duration::from_millis(100));
    }
    let want = "received=4\nlast=back\nlast-subject=orders.new";
    assert_eq!(eventually(&url, want), (200, want.into()));
}

#[test]
fn a_component_publishes_on_a_redis_channel_and_is_told_redis_has_no_replies() {
    let redis = Server::redis();
    let host = Host::start(&[]);
    let s = Scene::new();
    host.deploy(&messenger_app(
        s.dir.path(),
        "red",
        s.port,
        "redis",
        Some(&redis.url()),
    ));
    let listener = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (&listener).write_all(b"SUBSCRIBE news\r\n").unwrap();
    let mut reader = BufReader::new(&listener);
    let mut seen = String::new();
    // The subscribe confirmation: an array of three, six lines.
    for _ in 0..6 {
        reader.read_line(&mut seen).unwrap();
    }
    assert!(
        seen.contains("subscribe") && seen.contains("news"),
        "{seen}"
    );

    let base = format!("http://127.0.0.1:{}/red", s.port);
    let (code, body) = post(&format!("{base}/publish/news"), "hello redis");
    assert_eq!(code, 202, "{body}");
    seen.clear();
    for _ in 0..7 {
        reader.read_line(&mut seen).unwrap();
    }
    assert!(
        seen.contains("message") && seen.contains("hello redis"),
        "{seen}"
    );

    let (code, body) = post(&format!("{base}/request/red.echo"), "anyone?");
    assert_ne!(code, 200, "{body}");
    assert!(body.contains("Redis pub/sub has no replies"), "{body}");
}

/// The todo component on a `weft:sql` node with `config` (backend, url, limits).
fn todo_app(s: &Scene, app: &str, config: &str) -> PathBuf {
    let image = guests().todo.display().to_string();
    let yaml = format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {{ name: {app} }}
spec:
  components:
    - name: todo
      type: component
      properties: {{ image: {image} }}
      traits:
        - type: link
          properties: {{ target: {{ name: db }}, namespace: fermyon, package: spin, interfaces: [sqlite] }}
    - name: db
      type: capability
      properties:
        image: weft:sql
        config: [{{ name: db, properties: {config} }}]
{http}"#,
        http = http_server("todo", s.port, &format!("/{app}")),
    );
    write_yaml(s.dir.path(), app, &yaml)
}

fn send(method: reqwest::Method, url: &str, body: &str) -> (u16, String) {
    let response = http()
        .request(method, url)
        .body(body.to_string())
        .send()
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    (
        response.status().as_u16(),
        response.text().unwrap().trim_end().to_string(),
    )
}

#[test]
fn the_todo_app_keeps_its_list_in_embedded_sqlite_and_in_a_real_postgres() {
    let mut postgres = Server::postgres();
    let host = Host::start(&[]);
    let s = Scene::new();
    let pg = format!("{{ backend: postgres, url: \"{}\" }}", postgres.url());
    host.deploy(&todo_app(&s, "lite", "{ backend: sqlite }"));
    host.deploy(&todo_app(&s, "pg", &pg));
    use reqwest::Method;
    let quoted = "it's \"quoted\"; DROP TABLE todos; --";
    for app in ["lite", "pg"] {
        let base = format!("http://127.0.0.1:{}/{app}", s.port);
        assert_eq!(
            send(Method::POST, &base, "buy milk"),
            (201, "1".into()),
            "{app}"
        );
        assert_eq!(
            send(Method::POST, &base, quoted),
            (201, "2".into()),
            "{app}"
        );
        let item = |id: u32| format!("{base}/{id}");
        assert_eq!(
            send(Method::PUT, &item(1), "buy oat milk"),
            (200, "1\t0\tbuy oat milk".into()),
            "{app}"
        );
        assert_eq!(
            send(Method::POST, &format!("{base}/2/done"), ""),
            (200, format!("2\t1\t{quoted}")),
            "{app}"
        );
        assert_eq!(send(Method::DELETE, &item(1), "").0, 200, "{app}");
        assert_eq!(
            send(Method::GET, &item(1), ""),
            (404, "no such item".into())
        );
        assert_eq!(
            send(Method::GET, &base, ""),
            (200, format!("2\t1\t{quoted}")),
            "{app}: a quote in a parameter is stored exactly"
        );

        // 8 clients × 250 inserts at once: every row is there, once.
        let failures = hammer_with(&base, 8, 250, |c, i| format!("client {c} item {i}"));
        assert!(failures.is_empty(), "{app}: {failures:?}");
        let (code, list) = send(Method::GET, &base, "");
        assert_eq!(code, 200, "{list}");
        let titles: std::collections::BTreeSet<&str> =
            list.lines().filter_map(|l| l.split('\t').nth(2)).collect();
        assert_eq!(list.lines().count(), 2001, "{app}");
        for c in 0..8 {
            for i in 0..250 {
                assert!(
                    titles.contains(format!("client {c} item {i}").as_str()),
                    "{app}"
                );
            }
        }
    }

    // PostgreSQL stopped: the app's calls fail saying so, the other app keeps serving, and the
    // calls work again once it is back, nothing lost.
    postgres.kill();
    let pg_list = format!("http://127.0.0.1:{}/pg", s.port);
    let (code, body) = send(reqwest::Method::GET, &pg_list, "");
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("PostgreSQL"), "{body}");
    let lite = format!("http://127.0.0.1:{}/lite/2", s.port);
    assert_eq!(send(reqwest::Method::GET, &lite, "").0, 200);
    postgres.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = send(reqwest::Method::GET, &pg_list, "");
        if code == 200 {
            assert_eq!(body.lines().count(), 2001);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{code}: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_statement_past_its_link_s_row_limit_fails_as_a_value_and_bad_sql_config_is_refused() {
    let host = Host::start(&[]);
    let s = Scene::new();
    host.deploy(&todo_app(&s, "small", "{ max_rows: \"2\" }"));
    let base = format!("http://127.0.0.1:{}/small", s.port);
    for title in ["a", "b", "c"] {
        assert_eq!(send(reqwest::Method::POST, &base, title).0, 201);
    }
    let (code, body) = send(reqwest::Method::GET, &base, "");
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("more than 2 rows"), "{body}");
    assert_eq!(send(reqwest::Method::GET, &format!("{base}/3"), "").0, 200);

    for (config, want) in [
        ("{ max_rows: \"none\" }", "max_rows"),
        ("{ timeout: \"soon\" }", "timeout"),
        (
            "{ backend: postgres, url: \"mysql://x\" }",
            "not a PostgreSQL URL",
        ),
        ("{ backend: oracle }", "not a sql backend"),
        ("{ pathh: x.db }", "pathh"),
    ] {
        let err = host.cli_err(&[
            "app",
            "deploy",
            todo_app(&s, "bad", config).to_str().unwrap(),
        ]);
        assert!(err.contains(want), "{config}: {err}");
    }
}

/// The tasks component on the PostgreSQL node `node` (image and config lines).
fn tasks_app(s: &Scene, app: &str, node: &str) -> PathBuf {
    let image = guests().tasks.display().to_string();
    let yaml = format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {{ name: {app} }}
spec:
  components:
    - name: tasks
      type: component
      properties: {{ image: {image} }}
      traits:
        - type: link
          properties: {{ target: {{ name: db }}, namespace: wasmcloud, package: postgres, interfaces: [query, prepared] }}
    - name: db
      type: capability
      properties:
{node}
{http}"#,
        http = http_server("tasks", s.port, &format!("/{app}")),
    );
    write_yaml(s.dir.path(), app, &yaml)
}

#[test]
fn a_wasmcloud_postgres_component_gets_uuid_jsonb_and_timestamps_from_a_real_postgres() {
    let postgres = Server::postgres();
    let host = Host::start(&[]);
    let s = Scene::new();
    // weft's own node, and wasmCloud's provider image with its POSTGRES_* keys.
    let weft_node = format!(
        "        image: weft:postgres\n        config: [{{ name: db, properties: {{ url: \"{}\" }} }}]",
        postgres.url()
    );
    let wasmcloud_node = format!(
        "        image: ghcr.io/wasmcloud/sqldb-postgres:0.10.0\n        config: [{{ name: default-postgres, properties: \
         {{ POSTGRES_HOST: 127.0.0.1, POSTGRES_PORT: \"{}\", POSTGRES_USERNAME: postgres, \
         POSTGRES_PASSWORD: unused, POSTGRES_DATABASE: postgres, POSTGRES_TLS_REQUIRED: \"false\" }} }}]",
        postgres.port
    );
    host.deploy(&tasks_app(&s, "tasks", &weft_node));
    host.deploy(&tasks_app(&s, "wc", &wasmcloud_node));
    use reqwest::Method;
    for app in ["tasks", "wc"] {
        let base = format!("http://127.0.0.1:{}/{app}", s.port);
        let (code, row) = send(
            Method::POST,
            &format!("{base}?note=it%27s"),
            r#"{"title": "ship it"}"#,
        );
        assert_eq!(code, 201, "{app}: {row}");
        let id = row
            .lines()
            .find_map(|l| l.strip_prefix("id=uuid:"))
            .unwrap_or_else(|| panic!("{app}: no uuid in {row}"))
            .to_string();
        assert_eq!(id.len(), 36, "{row}");
        assert!(
            row.contains(r#"data=jsonb:{"title":"ship it"}"#),
            "{app}: {row}"
        );
        assert!(row.contains("note=text:it's"), "{app}: {row}");
        assert!(row.contains("submitted_at=timestamptz:20"), "{app}: {row}");
        assert!(row.contains("done=bool:false"), "{app}: {row}");

        // A prepared statement with a uuid parameter.
        let done = format!("{base}/done?id={id}");
        assert_eq!(
            send(Method::POST, &done, ""),
            (200, "updated 1".into()),
            "{app}"
        );
        let (_, list) = send(Method::GET, &base, "");
        assert!(list.contains("done=bool:true"), "{app}: {list}");

        // Values PostgreSQL refuses come back as errors naming the problem.
        let (code, body) = send(Method::POST, &format!("{base}/done?id=not-a-uuid"), "");
        assert_eq!(code, 400, "{app}: {body}");
        assert!(body.starts_with("invalid params"), "{app}: {body}");
        let (code, body) = send(Method::POST, &base, "not json");
        assert_eq!(code, 400, "{app}: {body}");
    }
    // A statement past the link's timeout is cancelled on the server; the next one runs.
    let slow = format!(
        "        image: weft:postgres\n        config: [{{ name: db, properties: {{ url: \"{}\", timeout: 1s }} }}]",
        postgres.url()
    );
    host.deploy(&tasks_app(&s, "slow", &slow));
    let base = format!("http://127.0.0.1:{}/slow", s.port);
    let started = std::time::Instant::now();
    let (code, body) = send(Method::GET, &format!("{base}/wait?seconds=5"), "");
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("ran longer than 1s"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        send(Method::GET, &format!("{base}/wait?seconds=0.1"), ""),
        (200, "waited=int8:1".into())
    );

    // Both apps share the one table.
    let (_, list) = send(
        reqwest::Method::GET,
        &format!("http://127.0.0.1:{}/wc", s.port),
        "",
    );
    assert_eq!(list.matches("id=uuid:").count(), 2, "{list}");
}
