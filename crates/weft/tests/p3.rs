//! End-to-end: WASI 0.3 components (`wasi:http/handler@0.3.0`, native async) served beside 0.2
//! ones, many requests per instance, a trap failing only its own instance's requests, and a 0.3
//! middleware chained in front of 0.2 and 0.3 components.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use support::{extra_guest, get, guests, http, route, Host, Route, Scene};

/// The WASI 0.3 hello (`examples/hello-p3`).
fn hello_p3() -> std::path::PathBuf {
    extra_guest("hello-p3")
}

/// GET `url`; its status, the instance that answered (`x-instance`) and its body.
fn get_on(url: &str) -> (u16, Option<String>, String) {
    answer_of(
        http()
            .get(url)
            .send()
            .unwrap_or_else(|e| panic!("GET {url}: {e}")),
    )
}

/// A response's status, the instance that answered (`x-instance`) and its body.
fn answer_of(response: reqwest::blocking::Response) -> (u16, Option<String>, String) {
    let status = response.status().as_u16();
    let instance = response
        .headers()
        .get("x-instance")
        .map(|v| v.to_str().unwrap().to_string());
    (status, instance, response.text().unwrap())
}

/// Gives the component whose properties end with the line `last` a spreadscaler of `instances`.
fn limit_instances(manifest: &std::path::Path, last: &str, instances: u32) {
    let text = std::fs::read_to_string(manifest).unwrap();
    assert!(text.contains(last), "{text}");
    let scaler = format!(
        "{last}      traits:\n        - type: spreadscaler\n          properties: {{ instances: {instances} }}\n"
    );
    std::fs::write(manifest, text.replace(last, &scaler)).unwrap();
}

/// Sends `count` GETs of `url` at once; their answers and the wall time until the last one.
fn all_at_once(url: &str, count: usize) -> (Vec<(u16, Option<String>, String)>, Duration) {
    let barrier = Arc::new(Barrier::new(count + 1));
    let threads: Vec<_> = (0..count)
        .map(|_| {
            let barrier = barrier.clone();
            let url = url.to_string();
            std::thread::spawn(move || {
                let client = http();
                barrier.wait();
                answer_of(client.get(&url).send().unwrap())
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let answers = threads.into_iter().map(|t| t.join().unwrap()).collect();
    (answers, started.elapsed())
}

#[test]
fn a_wasi_0_3_component_is_served_beside_a_0_2_one_from_the_same_kind_of_manifest() {
    let g = guests();
    let p3 = hello_p3();
    let host = Host::start(&[]);
    let s = Scene::new();
    let port = s.port;
    let app = s.manifest(
        "mixed",
        "v1",
        &[
            route("hello", &g.hello, port, "/hello"),
            route("hello-p3", &p3, port, "/p3"),
        ],
    );
    host.deploy(&app);

    let (status, body) = get(&format!("http://127.0.0.1:{port}/hello"));
    assert_eq!(
        (status, body.as_str()),
        (200, "Hello from Rust! You asked for /hello\n")
    );
    let (status, instance, body) = get_on(&format!("http://127.0.0.1:{port}/p3"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("Hello from a WASI 0.3 component!"),
        "{body}"
    );
    assert!(instance.is_some(), "the 0.3 hello names its instance");

    // A short body the guest streams and closes at once goes out whole, with its length,
    // rather than chunked.
    let whole = http()
        .get(format!("http://127.0.0.1:{port}/p3"))
        .send()
        .unwrap();
    let length = whole.headers().get("content-length").cloned();
    let chunked = whole.headers().get("transfer-encoding").cloned();
    let text = whole.text().unwrap();
    assert_eq!(
        (length, chunked),
        (Some(text.len().to_string().parse().unwrap()), None),
        "{text}"
    );

    // Bodies stream both ways through a 0.3 handler.
    let payload = "0123456789abcdef".repeat(64 * 1024);
    let echoed = http()
        .post(format!("http://127.0.0.1:{port}/p3/echo"))
        .body(payload.clone())
        .send()
        .unwrap();
    assert_eq!(echoed.status(), 200);
    assert!(
        echoed.text().unwrap() == payload,
        "the 1 MiB body came back changed"
    );

    // Consecutive requests share the instance: 0.3 instances serve many requests.
    let (_, again, body) = get_on(&format!("http://127.0.0.1:{port}/p3"));
    assert_eq!(again, instance, "{body}");

    // Concurrency is a 0.3 component's property; on a 0.2 one it is refused, saying why.
    let refused = s.manifest(
        "refused",
        "v1",
        &[Route {
            properties: "concurrency: 10",
            ..route("hello", &g.hello, port, "/refused")
        }],
    );
    let err = host.cli_err(&["app", "deploy", refused.to_str().unwrap()]);
    assert!(
        err.contains("sets properties.concurrency")
            && err.contains("wasi:http/incoming-handler@0.2")
            && err.contains("wasi:http/handler@0.3.0"),
        "{err}"
    );
    let (status, _) = get(&format!("http://127.0.0.1:{port}/hello"));
    assert_eq!(
        status, 200,
        "the refused deploy cost the running app nothing"
    );
}

#[test]
fn a_hundred_requests_awaiting_200_ms_are_served_together_by_at_most_two_instances() {
    let p3 = hello_p3();
    let host = Host::start(&[]);
    let s = Scene::new();
    let port = s.port;
    host.deploy(&s.manifest("sleepy", "v1", &[route("sleepy", &p3, port, "/")]));
    // Compiled and instantiated once before the clock starts.
    let (status, _, body) = get_on(&format!("http://127.0.0.1:{port}/sleep?ms=1"));
    assert_eq!(status, 200, "{body}");

    let (answers, wall) = all_at_once(&format!("http://127.0.0.1:{port}/sleep?ms=200"), 100);
    let instances: BTreeSet<_> = answers.iter().filter_map(|(_, i, _)| i.clone()).collect();
    for (status, _, body) in &answers {
        assert_eq!((*status, body.as_str()), (200, "slept 200 ms\n"));
    }
    assert!(
        instances.len() <= 2,
        "{} instances served 100 I/O-bound requests in {wall:?}",
        instances.len()
    );
    // One at a time they would take 20 s; together, about one sleep.
    assert!(wall < Duration::from_secs(3), "{wall:?}");

    let status = host.cli_ok(&["app", "status", "sleepy"]);
    assert!(status.contains("sleepy"), "{status}");
}

#[test]
fn a_trapping_0_3_handler_fails_only_the_requests_on_its_own_instance() {
    let p3 = hello_p3();
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    let port = s.port;
    // Two instances of up to four requests each; requests go to the one with fewer in flight.
    let app = s
        .manifest(
            "traps",
            "v1",
            &[
                Route {
                    properties: "concurrency: 4",
                    ..route("traps", &p3, port, "/")
                },
                route("bystander", &g.hello, port, "/hello"),
            ],
        )
        .to_str()
        .unwrap()
        .to_string();
    limit_instances(std::path::Path::new(&app), "        concurrency: 4\n", 2);
    host.deploy(std::path::Path::new(&app));

    let send = |path: &str| {
        let url = format!("http://127.0.0.1:{port}{path}");
        std::thread::spawn(move || get_on(&url))
    };
    let sleepers: Vec<_> = (0..6)
        .map(|_| {
            let sleeper = send("/sleep?ms=1500");
            std::thread::sleep(Duration::from_millis(30));
            sleeper
        })
        .collect();
    let trap = send("/trap?ms=300");

    let (status, body) = get(&format!("http://127.0.0.1:{port}/hello"));
    assert_eq!(status, 200, "another component keeps serving: {body}");

    let (status, _, body) = trap.join().unwrap();
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("component `traps` of app `traps` failed") && body.contains("guest trapped"),
        "{body}"
    );
    // The sleepers on the trapping instance fail, each told why; those on the other instance
    // finish as if nothing happened.
    let (mut failed, mut survivors) = (0, BTreeSet::new());
    for sleeper in sleepers {
        let (status, instance, body) = sleeper.join().unwrap();
        if status == 200 {
            assert_eq!(body, "slept 1500 ms\n");
            survivors.insert(instance);
        } else {
            assert_eq!(status, 500, "{body}");
            assert!(
                body.contains("the instance serving it failed while the request was in flight")
                    && body.contains("guest trapped"),
                "{body}"
            );
            failed += 1;
        }
    }
    assert!(failed >= 1, "the trap's instance had sleepers in flight");
    assert_eq!(
        survivors.len(),
        1,
        "the survivors all ran on the other instance: {survivors:?}"
    );
    assert!(failed < 6, "the other instance's sleepers survived");

    // The trapped instance is never reused: the next request gets a fresh one.
    let (status, instance, body) = get_on(&format!("http://127.0.0.1:{port}/"));
    assert_eq!(status, 200, "{body}");
    let _ = instance;
    assert!(
        host.log().contains("asked to trap by /trap"),
        "the guest's panic is logged"
    );
}

/// `answer` is to a guest that failed halfway through its body: a 500 saying the instance
/// failed when the failure came before the host sent the head (it reads a little ahead), else
/// a 200 whose body is cut off. Never a body that ends well.
fn assert_fails_or_is_cut_off(answer: reqwest::blocking::Response) -> u16 {
    let status = answer.status().as_u16();
    let rest = answer.text();
    match status {
        500 => {
            let body = rest.expect("a whole error message");
            assert!(
                body.contains("the instance serving it failed") && body.contains("guest trapped"),
                "{body}"
            );
        }
        200 => assert!(
            rest.is_err(),
            "a cut-off answer read as whole: {:?}",
            rest.map(|body| body.len())
        ),
        other => panic!("answered {other}: {rest:?}"),
    }
    status
}

#[test]
fn a_0_3_guest_failing_halfway_through_its_answer_never_passes_it_off_as_whole() {
    let host = Host::start(&[]);
    let s = Scene::new();
    let port = s.port;
    host.deploy(&s.manifest("midway", "v1", &[route("midway", &hello_p3(), port, "/")]));
    // One piece: the guest fails before the host sends the head, so the answer can still be a
    // 500; five thousand (105 KB, past what the host reads ahead): while the answer streams,
    // so it is cut off.
    let url = |pieces| format!("http://127.0.0.1:{port}/trap-midway?pieces={pieces}");
    assert_fails_or_is_cut_off(http().get(url(1)).send().unwrap());
    let streamed = http().get(url(5000)).send().expect("the head is sent");
    assert_eq!(assert_fails_or_is_cut_off(streamed), 200);
    assert!(
        host.log()
            .contains("asked to trap halfway through the answer"),
        "{}",
        host.log()
    );
    // A failing instance takes only itself down: the next request is answered whole.
    let (status, _, body) = get_on(&format!("http://127.0.0.1:{port}/"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("Hello from a WASI 0.3 component!"),
        "{body}"
    );
}

#[test]
fn a_computing_0_3_guest_is_cut_off_at_its_timeout_and_stalls_nothing_else() {
    let p3 = hello_p3();
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    let port = s.port;
    let app = s.manifest(
        "spins",
        "v1",
        &[
            Route {
                properties: "limits: { timeout: 3s }",
                ..route("spins", &p3, port, "/")
            },
            route("bystander", &g.hello, port, "/hello"),
        ],
    );
    host.deploy(&app);
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let (status, _, body) = get_on(&url("/spin?ms=5"));
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("spun 5 ms"), "{body}");

    // As many spinning guests as the host has cores: had they held their threads, nothing
    // else would be served until they were cut off.
    let spinners: Vec<_> = (0..std::thread::available_parallelism().map_or(2, |n| n.get()))
        .map(|_| {
            let url = url("/spin?ms=10000");
            std::thread::spawn(move || get_on(&url))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let (status, body) = get(&url("/hello"));
    assert_eq!(status, 200, "another component is served meanwhile: {body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered while the guests spin, not after they were cut off at 3 s: {:?}",
        started.elapsed()
    );
    for spinner in spinners {
        let (status, _, body) = spinner.join().unwrap();
        // The guest is cut off, and its instance with it: every request on it hears why.
        assert_eq!(status, 500, "{body}");
        assert!(
            body.contains("the instance serving it failed")
                && body.contains("exceeded its execution timeout of 3s"),
            "{body}"
        );
    }
    let (status, _, body) = get_on(&url("/spin?ms=5"));
    assert_eq!(
        status, 200,
        "a new instance serves the next request: {body}"
    );
}

/// An app whose route goes through the WASI 0.3 harness (`harness`, its own image) to `inner`.
fn behind_the_p3_harness(
    dir: &std::path::Path,
    app: &str,
    inner: &std::path::Path,
    port: u16,
) -> std::path::PathBuf {
    let yaml = format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {{ name: {app} }}
spec:
  components:
    - name: harness
      type: component
      properties:
        image: {harness}
        secrets: [{{ name: token, properties: {{ key: platform-token }} }}]
      traits:
        - type: link
          properties: {{ target: {{ name: inner }}, namespace: wasi, package: http, interfaces: [handler] }}
    - name: inner
      type: component
      properties: {{ image: {inner} }}
{http}"#,
        harness = extra_guest("harness-p3").display(),
        inner = inner.display(),
        http = support::http_server("harness", port, &format!("/{app}")),
    );
    support::write_yaml(dir, app, &yaml)
}

#[test]
fn a_wasi_0_3_middleware_harness_chains_to_a_0_2_and_to_a_0_3_component() {
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    let port = s.port;
    let _ = support::put_secret(&host, "platform-token", "chain");
    host.deploy(&behind_the_p3_harness(s.dir.path(), "old", &g.hello, port));
    host.deploy(&behind_the_p3_harness(
        s.dir.path(),
        "new",
        &hello_p3(),
        port,
    ));

    for (app, says) in [
        ("old", "Hello from Rust! You asked for /old/x"),
        ("new", "Hello from a WASI 0.3 component!"),
    ] {
        let url = format!("http://127.0.0.1:{port}/{app}/x");
        let response = http().get(&url).bearer_auth("chain").send().unwrap();
        assert_eq!(
            response.status().as_u16(),
            200,
            "{app}: {:?}\n{}",
            response.headers().clone(),
            host.log()
        );
        assert_eq!(response.headers()["x-harness-version"], "1.0.0", "{app}");
        assert!(response.headers().contains_key("x-request-id"), "{app}");
        let body = response.text().unwrap();
        assert!(body.starts_with(says), "{app}: {body}");

        // Bodies pass through the middleware as streams, both ways.
        let payload = "weft".repeat(256 * 1024);
        let echoed = http()
            .post(&url)
            .bearer_auth("chain")
            .body(payload.clone())
            .send()
            .unwrap();
        assert_eq!(echoed.status().as_u16(), 200, "{app}");
        assert!(
            echoed.text().unwrap() == payload,
            "{app}: the 1 MiB body came back changed"
        );

        if app == "new" {
            // An inner that fails halfway through its answer: through the middleware too, the
            // client hears so, and never takes the pieces for the whole.
            for pieces in [3, 5000] {
                let url = format!("http://127.0.0.1:{port}/new/trap-midway?pieces={pieces}");
                let answer = http().get(url).bearer_auth("chain").send().unwrap();
                assert_fails_or_is_cut_off(answer);
            }
        }

        let refused = http().get(&url).bearer_auth("wrong").send().unwrap();
        assert_eq!(refused.status().as_u16(), 401, "{app}");
        assert_eq!(refused.text().unwrap(), "missing or wrong bearer token\n");
    }

    // A middleware with nothing linked to its next handler is refused, saying what to add.
    let unlinked =
        std::fs::read_to_string(behind_the_p3_harness(s.dir.path(), "lone", &g.hello, port))
            .unwrap()
            .replace("interfaces: [handler]", "interfaces: [incoming-handler]");
    let file = support::write_yaml(s.dir.path(), "lone", &unlinked);
    let err = host.cli_err(&["app", "deploy", file.to_str().unwrap()]);
    assert!(
        err.contains("wasi:http/handler@0.3.0") && err.contains("interfaces [handler]"),
        "{err}"
    );
}

#[test]
fn the_fleet_patch_swaps_a_0_3_harness_under_1000_apps_with_no_failed_request() {
    let v1 = support::stamped_build("harness-p3", "1.0.0");
    let v2 = support::stamped_build("harness-p3", "2.0.0");
    let host = Host::start(&[]);
    let s = Scene::new();
    let _ = support::put_secret(&host, "platform-token", "fleet");
    host.deploy(&support::platform_app(s.dir.path(), "v1", &v1));
    const APPS: usize = 1000;
    for i in 0..APPS {
        host.deploy(&support::dependent_app(
            s.dir.path(),
            &format!("app-{i}"),
            s.port,
            &hello_p3(),
            "handler",
        ));
    }
    let version_of = |i: usize| {
        let url = format!("http://127.0.0.1:{}/app-{i}/", s.port);
        let response = http().get(url).bearer_auth("fleet").send().unwrap();
        assert_eq!(response.status().as_u16(), 200, "app-{i}");
        response.headers()["x-harness-version"]
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(version_of(0), "1.0.0");
    assert_eq!(version_of(APPS - 1), "1.0.0");

    let load = support::FleetLoad::start(s.port, APPS, "fleet");
    std::thread::sleep(Duration::from_millis(500));
    let outcome = host.deploy(&support::platform_app(s.dir.path(), "v2", &v2));
    std::thread::sleep(Duration::from_millis(500));
    let (ok, failed, seen) = load.stop();
    assert!(failed.is_empty(), "failed during the patch: {failed:?}");
    assert!(ok > 0);
    assert_eq!(outcome["relinked"], APPS as u64, "{outcome}");
    assert_eq!(
        outcome["compiled"], 1,
        "the harness compiles once: {outcome}"
    );
    assert!(seen.contains("1.0.0") && seen.contains("2.0.0"), "{seen:?}");
    for i in 0..APPS {
        assert_eq!(version_of(i), "2.0.0", "app-{i}");
    }
}

#[test]
fn a_0_3_component_keeps_its_timeout_memory_limit_instance_limit_and_idle_reclaim() {
    let p3 = hello_p3();
    let host = Host::start(&[]);
    let s = Scene::new();
    let port = s.port;
    let app = s.manifest(
        "bounded",
        "v1",
        &[Route {
            properties: "concurrency: 2\n        limits: { timeout: 1s, memory: 64MiB }\n        reuse: { idle: 1s }",
            ..route("bounded", &p3, port, "/")
        }],
    );
    limit_instances(&app, "        reuse: { idle: 1s }\n", 1);
    host.deploy(&app);
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");

    let (status, _, body) = get_on(&url("/hog?mib=200"));
    assert_eq!(status, 500, "{body}\n{}", host.log());
    assert!(body.contains("memory limit of 67108864 bytes"), "{body}");
    let (status, _, body) = get_on(&url("/hog?mib=8"));
    assert_eq!((status, body.as_str()), (200, "held 8 MiB\n"));

    // One instance, two requests at a time: a third waits for room and is then served by it.
    let started = Instant::now();
    let (answers, _) = all_at_once(&url("/sleep?ms=400"), 3);
    let instances: BTreeSet<_> = answers.iter().map(|(_, i, _)| i.clone()).collect();
    for (status, _, body) in &answers {
        assert_eq!((*status, body.as_str()), (200, "slept 400 ms\n"));
    }
    assert_eq!(instances.len(), 1, "{instances:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(780),
        "{:?}",
        started.elapsed()
    );

    // Idle past `reuse.idle`, the instance is reclaimed.
    let active = || {
        let status: serde_json::Value =
            serde_json::from_str(&host.cli_ok(&["app", "status", "bounded", "--json"])).unwrap();
        status["components"][0]["active_instances"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(active(), 1);
    support::wait_until(
        Duration::from_secs(10),
        "the idle instance is reclaimed",
        || (active() == 0).then_some(()),
    );
}

#[test]
fn a_0_3_guest_awaits_an_outgoing_request_and_a_key_value_read_together() {
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    let port = s.port;
    let yaml = format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {{ name: both, annotations: {{ version: v1 }} }}
spec:
  components:
{fetch}        - type: link
          properties:
            target: {{ name: client }}
            namespace: wasi
            package: http
            interfaces: [client]
            source: {{ config: [{{ name: egress, properties: {{ allowed_hosts: "127.0.0.1" }} }}] }}
    - name: hello
      type: component
      properties: {{ image: {hello} }}
    - name: client
      type: capability
      properties: {{ image: weft:http-client }}
{http}"#,
        fetch = fetch_p3_with_memory_kv(),
        hello = g.hello.display(),
        http = support::http_routes(
            port,
            &[
                ("fetch", "handler", "/fetch"),
                ("hello", "incoming-handler", "/hello")
            ]
        ),
    );
    host.deploy(&support::write_yaml(s.dir.path(), "both", &yaml));

    let stored = http()
        .put(format!("http://127.0.0.1:{port}/fetch/greeting"))
        .body("hi from key-value")
        .send()
        .unwrap();
    assert_eq!(stored.status().as_u16(), 200, "{}", stored.text().unwrap());
    let (status, body) = get(&format!(
        "http://127.0.0.1:{port}/fetch?url=http://127.0.0.1:{port}/hello/there"
    ));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        "greeting: hi from key-value\nfetched: 200 Hello from Rust! You asked for /hello/there\n"
    );

    // The allow-list holds for a 0.3 guest's outgoing requests too.
    let (status, body) = get(&format!(
        "http://127.0.0.1:{port}/fetch?url=http://127.0.0.2:{port}/hello"
    ));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("greeting: hi from key-value") && body.contains("HttpRequestDenied"),
        "{body}"
    );

    // A guest failing with its upload half sent: the server sees the request cut off, never a
    // body that ends well.
    let sink = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sink_port = sink.local_addr().unwrap().port();
    let received = std::thread::spawn(move || chunked_upload(sink));
    let (status, body) = get(&format!(
        "http://127.0.0.1:{port}/fetch?upload-then-trap=3&url=http://127.0.0.1:{sink_port}/sink"
    ));
    assert_eq!(status, 500, "{body}");
    let (got, whole) = received.join().unwrap();
    assert!(got.contains("a piece of an upload"), "{got}");
    assert!(!whole, "the server took a cut-off upload for whole:\n{got}");
}

#[test]
fn a_0_3_guest_failing_halfway_through_an_upload_to_a_linked_component_stores_nothing() {
    let host = Host::start(&[]);
    let s = Scene::new();
    let port = s.port;
    // fetch-p3 sends to `http://files/…`, served in-process by the blobstore example, which
    // reads the whole body and then stores it.
    let yaml = format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {{ name: uplink }}
spec:
  components:
{fetch}        - type: link
          properties: {{ target: {{ name: files }}, namespace: wasi, package: http, interfaces: [incoming-handler] }}
    - name: files
      type: component
      properties: {{ image: {blobs} }}
      traits:
        - type: link
          properties: {{ target: {{ name: store }}, namespace: wasi, package: blobstore, interfaces: [blobstore, container, types] }}
    - name: store
      type: capability
      properties: {{ image: weft:blobstore, config: [{{ name: backend, properties: {{ backend: memory }} }}] }}
{http}"#,
        fetch = fetch_p3_with_memory_kv(),
        blobs = extra_guest("blobs").display(),
        http = support::http_routes(
            port,
            &[
                ("fetch", "handler", "/fetch"),
                ("files", "incoming-handler", "/files")
            ]
        ),
    );
    host.deploy(&support::write_yaml(s.dir.path(), "uplink", &yaml));

    let (status, body) = get(&format!(
        "http://127.0.0.1:{port}/fetch?upload-then-trap=3&url=http://files/up/half"
    ));
    assert_eq!(status, 500, "{body}");
    // The blobstore example reads on after its sender failed: it must read an error, not an
    // end, and so store nothing.
    support::wait_until(
        Duration::from_secs(15),
        "the linked component hears its upload was cut off",
        || {
            host.log()
                .contains("the request body was cut off")
                .then_some(())
        },
    );
    let (status, body) = get(&format!("http://127.0.0.1:{port}/files/half"));
    assert_eq!(status, 404, "the half upload was stored: {body}");
}

/// The nodes of `examples/fetch-p3` (named `fetch`) and an in-memory key-value store it is
/// linked to; more of fetch's links may follow directly, as trait list items.
fn fetch_p3_with_memory_kv() -> String {
    format!(
        r#"    - name: kv
      type: capability
      properties: {{ image: weft:keyvalue, config: [{{ name: kv, properties: {{ backend: memory }} }}] }}
    - name: fetch
      type: component
      properties: {{ image: {fetch} }}
      traits:
        - type: link
          properties: {{ target: {{ name: kv }}, namespace: wasi, package: keyvalue, interfaces: [store] }}
"#,
        fetch = extra_guest("fetch-p3").display(),
    )
}

/// Takes one chunked request on `sink`: what arrived, and whether its body ended (the last
/// chunk came) rather than the connection closing or going quiet for 10 s.
fn chunked_upload(sink: std::net::TcpListener) -> (String, bool) {
    use std::io::{Read as _, Write as _};
    let (mut conn, _) = sink.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((_, body)) = text.split_once("\r\n\r\n") {
            if body.starts_with("0\r\n\r\n") || body.contains("\r\n0\r\n\r\n") {
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                return (text, true);
            }
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return (text, false),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}
