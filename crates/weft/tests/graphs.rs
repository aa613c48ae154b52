//! End-to-end tests of apps as graphs of components: the platform harness in front of an app,
//! joined in-process by a component link.

mod support;

use std::path::{Path, PathBuf};

use support::*;

/// An app whose route leads to the harness, which reaches `inner` through its link.
fn guarded_app(dir: &Path, app: &str, port: u16, inner: &Path) -> PathBuf {
    let inner = inner.display().to_string();
    let yaml = format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {{ name: {app} }}
spec:
  components:
{harness}    - name: app
      type: component
      properties: {{ image: {inner} }}
{http}"#,
        harness = harness_node("app"),
        http = http_server("harness", port, &format!("/{app}")),
    );
    write_yaml(dir, app, &yaml)
}

#[test]
fn the_python_app_behind_the_rust_harness() {
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    let _ = put_secret(&host, "platform-token", "let-me-in");
    host.deploy(&guarded_app(s.dir.path(), "guarded", s.port, &g.hello_py));
    let url = format!("http://127.0.0.1:{}/guarded/page", s.port);

    let refused = http().get(&url).send().unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    assert_eq!(refused.headers()["x-harness-version"], "1.0.0");
    let wrong = http().get(&url).bearer_auth("guess").send().unwrap();
    assert_eq!(wrong.status().as_u16(), 401);

    let answered = http().get(&url).bearer_auth("let-me-in").send().unwrap();
    assert_eq!(answered.status().as_u16(), 200);
    assert_eq!(answered.headers()["x-harness-version"], "1.0.0");
    assert_eq!(answered.headers()["x-request-id"].len(), 16);
    assert_eq!(
        answered.text().unwrap().trim(),
        "Hello from Python! You asked for /guarded/page"
    );
    assert!(
        host.log().contains("/guarded/page -> 200"),
        "the harness logs each call"
    );
}

#[test]
fn bodies_stream_through_the_harness_both_ways() {
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    let _ = put_secret(&host, "platform-token", "t");
    host.deploy(&guarded_app(s.dir.path(), "echo", s.port, &g.hello));
    let body: Vec<u8> = (0..2 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let response = http()
        .post(format!("http://127.0.0.1:{}/echo/", s.port))
        .bearer_auth("t")
        .body(body.clone())
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let answer = response.bytes().unwrap();
    assert_eq!(
        status,
        200,
        "{}\n{}",
        String::from_utf8_lossy(&answer[..answer.len().min(500)]),
        host.log()
    );
    assert!(answer == body, "the echo came back intact");
}

#[test]
fn the_0_2_harness_fronts_a_0_3_component_and_a_trapping_one() {
    // The harness starts its inner on its own task; an inner on the other engine, and one that
    // traps while it is started there, come back to the harness like any other answer (a trap
    // is the inner's 500, which the harness relays).
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    let _ = put_secret(&host, "platform-token", "t");
    host.deploy(&guarded_app(
        s.dir.path(),
        "p3",
        s.port,
        &extra_guest("hello-p3"),
    ));
    host.deploy(&guarded_app(s.dir.path(), "bad", s.port, &g.misbehave));
    let call = |path: &str| {
        let response = http()
            .get(format!("http://127.0.0.1:{}{path}", s.port))
            .bearer_auth("t")
            .send()
            .unwrap();
        let version = response.headers().get("x-harness-version").cloned();
        (
            response.status().as_u16(),
            version,
            response.text().unwrap(),
        )
    };
    for _ in 0..3 {
        let (status, version, body) = call("/p3/page");
        assert_eq!(status, 200, "{body}\n{}", host.log());
        assert_eq!(version.unwrap(), "1.0.0");
        assert!(
            body.starts_with("Hello from a WASI 0.3 component"),
            "{body}"
        );

        let (status, version, body) = call("/bad/trap");
        assert_eq!(status, 500, "{body}");
        assert_eq!(
            version.unwrap(),
            "1.0.0",
            "the harness relays its inner's failure"
        );
        assert!(body.contains("guest trapped"), "{body}");
    }
    let (status, _, body) = call("/p3/again");
    assert_eq!(status, 200, "the host serves on after the traps: {body}");
}

#[test]
fn a_component_link_is_not_a_way_out() {
    // The inner answers only through the harness: a request to its name from a component
    // without the link is refused like any ungranted host.
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    let app = s.manifest("fetch", "v1", &[route("fetch", &g.fetch, s.port, "/fetch")]);
    host.deploy(&app);
    let (status, body) = get(&format!("http://127.0.0.1:{}/fetch?http://inner/", s.port));
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");
}

#[test]
fn a_harness_upgrade_patches_200_apps_under_load_with_no_failed_request() {
    let v1 = harness_build("1.0.0");
    let v2 = harness_build("2.0.0");
    let host = Host::start(&[]);
    let s = Scene::new();
    let _ = put_secret(&host, "platform-token", "fleet");
    host.deploy(&platform_app(s.dir.path(), "v1", &v1));
    const APPS: usize = 200;
    for i in 0..APPS {
        host.deploy(&dependent_app(
            s.dir.path(),
            &format!("app-{i}"),
            s.port,
            &guests().hello,
            "incoming-handler",
        ));
    }
    let url = |i: usize| format!("http://127.0.0.1:{}/app-{i}/", s.port);
    let version_of = |i: usize| {
        let response = http().get(url(i)).bearer_auth("fleet").send().unwrap();
        assert_eq!(response.status().as_u16(), 200, "app-{i}");
        response.headers()["x-harness-version"]
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(version_of(0), "1.0.0");
    assert_eq!(version_of(APPS - 1), "1.0.0");

    let load = support::FleetLoad::start(s.port, APPS, "fleet");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let outcome = host.deploy(&platform_app(s.dir.path(), "v2", &v2));
    std::thread::sleep(std::time::Duration::from_millis(500));
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

    let status: serde_json::Value =
        serde_json::from_str(&host.cli_ok(&["app", "status", "platform", "--json"])).unwrap();
    let dependents = status["dependents"].as_object().unwrap();
    assert_eq!(dependents.len(), APPS);
    assert!(dependents.values().all(|v| v == "v2"), "{dependents:?}");
    assert!(host
        .cli_ok(&["app", "status", "platform"])
        .contains("used by:   200 app(s): 200 on v2"));

    let refused = host.cli_err(&["app", "undeploy", "platform"]);
    assert!(
        refused.contains("is used by") && refused.contains("app-0"),
        "{refused}"
    );
}

#[test]
fn a_rust_component_calls_a_python_component_through_a_custom_interface() {
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    let manifest = std::fs::read_to_string(repo().join("examples/greet/app.yaml"))
        .unwrap()
        .replace("./build/greet.wasm", &g.greet.display().to_string())
        .replace(
            "../greeter-py/build/greeter-py.wasm",
            &g.greeter_py.display().to_string(),
        )
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{}", s.port));
    let app = s.dir.path().join("greet.yaml");
    std::fs::write(&app, manifest).unwrap();
    host.deploy(&app);
    let (status, body) = get(&format!(
        "http://127.0.0.1:{}/greet?name=Ada%20Lovelace&tags=math,engines",
        s.port
    ));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        "message: Hello, Ada Lovelace! (from Python)\nlength: 34\ntags: MATH,ENGINES\n"
    );
    // The pair runs in one store, so the Rust source runs on its Python target's engine.
    let status = host.cli_ok(&["app", "status", "greet"]);
    assert!(status.contains("large memory image"), "{status}");

    // Without the link, the import has nothing to serve it and the deploy says which.
    let unlinked = std::fs::read_to_string(&app)
        .unwrap()
        .replace("version: v0.1.0", "version: v0.2.0")
        .replace(
            "namespace: weft\n            package: greet\n            interfaces: [greeter]",
            "namespace: weft\n            package: greet\n            interfaces: [nothing]",
        );
    let file = s.dir.path().join("unlinked.yaml");
    std::fs::write(&file, unlinked).unwrap();
    let err = host.cli_err(&["app", "deploy", file.to_str().unwrap()]);
    assert!(err.contains("weft:greet/nothing"), "{err}");
}

#[test]
fn a_composed_component_behaves_like_the_linked_pair() {
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    let joined = s.dir.path().join("joined.wasm");
    let out = host.cli_ok(&[
        "compose",
        g.greet.to_str().unwrap(),
        g.greeter_py.to_str().unwrap(),
        "-o",
        joined.to_str().unwrap(),
    ]);
    assert!(out.contains("composed"), "{out}");
    // Deployed as one plain component, with no link at all.
    let app = s.manifest(
        "joined",
        "v1",
        &[route("joined", &joined, s.port, "/greet")],
    );
    host.deploy(&app);
    let (status, body) = get(&format!(
        "http://127.0.0.1:{}/greet?name=Ada%20Lovelace&tags=math,engines",
        s.port
    ));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        "message: Hello, Ada Lovelace! (from Python)\nlength: 34\ntags: MATH,ENGINES\n"
    );

    // The HTTP harness calls its inner through a host bridge: composing it is refused, saying why.
    let err = host.cli_err(&[
        "compose",
        g.harness.to_str().unwrap(),
        g.hello.to_str().unwrap(),
        "-o",
        s.dir.path().join("no.wasm").to_str().unwrap(),
    ]);
    assert!(err.contains("only a host can bridge"), "{err}");
}

#[test]
fn a_restarted_host_brings_back_the_platform_before_the_apps_that_use_it() {
    let mut host = Host::start(&[]);
    let s = Scene::new();
    let _ = put_secret(&host, "platform-token", "again");
    // Deployed in an order that sorts the dependents first by name, to show order is by use.
    host.deploy(&platform_app(s.dir.path(), "v1", &guests().harness));
    for name in ["a-first", "b-second"] {
        host.deploy(&dependent_app(
            s.dir.path(),
            name,
            s.port,
            &guests().hello,
            "incoming-handler",
        ));
    }
    host.stop();
    host.restart(&[]);
    for name in ["a-first", "b-second"] {
        let response = http()
            .get(format!("http://127.0.0.1:{}/{name}/", s.port))
            .bearer_auth("again")
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{name}:\n{}", host.log());
        assert_eq!(response.headers()["x-harness-version"], "1.0.0");
    }
    let status: serde_json::Value =
        serde_json::from_str(&host.cli_ok(&["app", "status", "a-first", "--json"])).unwrap();
    assert_eq!(status["uses"]["platform"], "v1");
}

#[test]
fn an_app_that_cannot_re_link_stays_on_the_harness_it_runs_and_is_reported() {
    let host = Host::start(&[]);
    let s = Scene::new();
    let _ = put_secret(&host, "platform-token", "stay");
    host.deploy(&platform_app(s.dir.path(), "v1", &guests().harness));
    host.deploy(&dependent_app(
        s.dir.path(),
        "keeps",
        s.port,
        &guests().hello,
        "incoming-handler",
    ));
    // v2 of the platform no longer has a component named `harness`.
    let renamed = std::fs::read_to_string(platform_app(s.dir.path(), "v2", &guests().harness))
        .unwrap()
        .replace("- name: harness", "- name: gatekeeper");
    let file = s.dir.path().join("platform-renamed.yaml");
    std::fs::write(&file, renamed).unwrap();
    let outcome = host.deploy(&file);
    assert_eq!(outcome["relinked"], 0, "{outcome}");
    let failures = outcome["relink_failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{outcome}");
    assert!(failures[0].as_str().unwrap().contains("keeps"), "{outcome}");

    // The app keeps serving through the harness it had, and its status says why.
    let response = http()
        .get(format!("http://127.0.0.1:{}/keeps/", s.port))
        .bearer_auth("stay")
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["x-harness-version"], "1.0.0");
    let status: serde_json::Value =
        serde_json::from_str(&host.cli_ok(&["app", "status", "keeps", "--json"])).unwrap();
    let reason = status["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("still on the previous `platform`"),
        "{status}"
    );
    assert!(reason.contains("no such component"), "{status}");
}
