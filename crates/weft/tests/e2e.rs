//! End-to-end: the built `weft` binary as a process, real guests from `examples/`, the real CLI
//! and real HTTP requests.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{get, guests, http, route, write_yaml, Host, Route, Scene};

#[test]
fn rust_and_python_apps_served_through_the_cli() {
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    let port = s.port;
    let hello = s.manifest("hello", "v1", &[route("hello", &g.hello, port, "/hello")]);
    let hello_py = s.manifest(
        "hello-py",
        "v1",
        &[route("hello-py", &g.hello_py, port, "/hello-py")],
    );
    host.deploy(&hello);
    host.deploy(&hello_py);

    let (status, body) = get(&format!("http://127.0.0.1:{port}/hello"));
    assert_eq!(
        (status, body.as_str()),
        (200, "Hello from Rust! You asked for /hello\n")
    );
    let (status, body) = get(&format!("http://127.0.0.1:{port}/hello-py/x?y=1"));
    assert_eq!(
        (status, body.as_str()),
        (200, "Hello from Python! You asked for /hello-py/x?y=1\n")
    );
    // Bodies stream both ways: a 3 MiB upload comes back intact.
    let payload: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let echoed = http()
        .post(format!("http://127.0.0.1:{port}/hello/echo"))
        .body(payload.clone())
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert!(
        echoed.as_ref() == payload.as_slice(),
        "echo lost or changed bytes"
    );
    // A path no app claims is a 404, not somebody else's app.
    assert_eq!(get(&format!("http://127.0.0.1:{port}/helloworld")).0, 404);

    let list = host.cli_ok(&["app", "list"]);
    assert!(
        list.contains("hello ") && list.contains("hello-py"),
        "{list}"
    );
    let status = host.cli_ok(&["app", "status", "hello-py"]);
    assert!(status.contains("phase:     deployed"), "{status}");
    assert!(
        status.contains(&format!("http://127.0.0.1:{port}/hello-py")),
        "{status}"
    );

    host.cli_ok(&["app", "undeploy", "hello-py"]);
    assert_eq!(get(&format!("http://127.0.0.1:{port}/hello-py")).0, 404);
    assert_eq!(get(&format!("http://127.0.0.1:{port}/hello")).0, 200);
    let err = host.cli_err(&["app", "status", "hello-py"]);
    assert!(err.contains("no app named `hello-py`"), "{err}");
}

/// Sends `bad` to the misbehaving guest while hello is asked concurrently; returns the bad
/// request's status and body.
fn misbehave_while_hello_answers(port: u16, bad: &str) -> (u16, String) {
    let bad_url = format!("http://127.0.0.1:{port}/misbehave/{bad}");
    let worker = std::thread::spawn(move || get(&bad_url));
    let started = Instant::now();
    let mut answered = 0;
    while !worker.is_finished() || answered == 0 {
        let (status, body) = get(&format!("http://127.0.0.1:{port}/hello"));
        assert_eq!(
            status, 200,
            "hello failed while misbehave/{bad} ran: {body}"
        );
        answered += 1;
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "misbehave/{bad} never finished"
        );
    }
    worker.join().unwrap()
}

#[test]
fn misbehaving_guests_fail_alone() {
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    let port = s.port;
    let hello = s.manifest("hello", "v1", &[route("hello", &g.hello, port, "/hello")]);
    let bad = s.manifest(
        "misbehave",
        "v1",
        &[Route {
            properties: "limits: { memory: 32MiB, timeout: 1s }",
            ..route("misbehave", &g.misbehave, port, "/misbehave")
        }],
    );
    host.deploy(&hello);
    host.deploy(&bad);
    let mut host = host;

    let (status, body) = misbehave_while_hello_answers(port, "trap");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("trapped"), "{body}");
    // The guest's panic message reaches the host log as one line tagged with its workload.
    let log = host.log();
    let line = log
        .lines()
        .find(|l| l.contains("misbehave: trapping on purpose"))
        .unwrap_or_else(|| panic!("the guest's stderr is not in the log:\n{log}"));
    assert!(
        line.contains("weft::guest") && line.contains("of app `misbehave`"),
        "{line}"
    );

    let started = Instant::now();
    let (status, body) = misbehave_while_hello_answers(port, "loop");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("execution timeout of 1s"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the loop was not cut off at 1s"
    );

    let (status, body) = misbehave_while_hello_answers(port, "hog");
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("memory limit of 33554432 bytes exceeded"),
        "{body}"
    );

    // One write past what `check-write` offers (64 KiB, which bounds what an answer holds in
    // the host for a slow reader) is refused by name.
    let (status, body) = misbehave_while_hello_answers(port, "oversized-write");
    let start: String = body.chars().take(200).collect();
    assert_eq!(status, 500, "{start}");
    assert!(body.contains("write exceeded budget"), "{start}");

    // A trap after the answer has started cannot change its status: the answer is cut off, so
    // the client cannot take what it got for the whole of it. One piece: the guest is done in
    // its first turn; a hundred: it waits for the connection to read, and fails later.
    for pieces in [1, 100] {
        let url = format!("http://127.0.0.1:{port}/misbehave/trap-midway/{pieces}");
        let started = http().get(&url).send().expect("the head is sent");
        assert_eq!(started.status(), 200);
        let rest = started.text();
        assert!(rest.is_err(), "a cut-off answer read as whole: {rest:?}");
    }
    let log = host.log();
    assert!(
        log.contains("the answer was cut off: the guest failed after it started"),
        "{log}"
    );

    // The same instance policy still serves good requests afterwards, and the host is up.
    assert_eq!(
        get(&format!("http://127.0.0.1:{port}/misbehave/ok")),
        (200, "ok\n".to_string())
    );
    assert!(host.is_running());
}

#[test]
fn guests_looping_and_hogging_memory_do_not_stall_other_apps_or_the_control_api() {
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    let port = s.port;
    host.deploy(&s.manifest("hello", "v1", &[route("hello", &g.hello, port, "/hello")]));
    host.deploy(&s.manifest(
        "misbehave",
        "v1",
        &[Route {
            properties: "limits: { timeout: 20s, memory: 64MiB }",
            ..route("misbehave", &g.misbehave, port, "/misbehave")
        }],
    ));
    // More endless loops than the host has worker threads, each allowed 20 s ...
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let url = format!("http://127.0.0.1:{port}/misbehave/loop");
            std::thread::spawn(move || get(&url))
        })
        .collect();
    // ... and as many guests filling their memory to the limit, over and over.
    let stop = Arc::new(AtomicBool::new(false));
    let hogs: Vec<_> = (0..4)
        .map(|_| {
            let url = format!("http://127.0.0.1:{port}/misbehave/hog");
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    answers.push(get(&url));
                }
                answers
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // A request that waits for the loops to be cut off (20 s) fails here: a looping guest must
    // not hold the threads that serve others.
    let patient = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for i in 0..200 {
        let response = patient
            .get(format!("http://127.0.0.1:{port}/hello"))
            .send()
            .unwrap_or_else(|e| panic!("hello request {i} while guests loop and hog: {e}"));
        assert_eq!(response.status(), 200);
    }
    let listed = host.cli_ok(&["app", "list"]);
    assert!(listed.contains("misbehave"), "{listed}");
    stop.store(true, Ordering::Relaxed);
    for handle in hogs {
        let answers = handle.join().unwrap();
        assert!(!answers.is_empty());
        // Each hog fails alone: at its memory limit, or at its timeout when the machine is so
        // busy (tests run side by side) that a low-priority call does not reach the limit.
        for (status, body) in answers {
            let at_limit = status == 500 && body.contains("memory limit of 67108864 bytes");
            let cut_off = status == 503 && body.contains("execution timeout of 20s");
            assert!(at_limit || cut_off, "{status} {body}");
        }
    }
    assert!(loops.iter().all(|l| !l.is_finished()), "a loop ended early");
    for handle in loops {
        let (status, body) = handle.join().unwrap();
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("execution timeout of 20s"), "{body}");
    }
}

#[test]
fn a_host_memory_budget_holds_all_guests_and_ceilings_bound_each_manifest() {
    let g = guests();
    let host = Host::start(&[
        "--memory-budget",
        "160MiB",
        "--max-memory",
        "128MiB",
        "--max-timeout",
        "10s",
    ]);
    let s = Scene::new();
    let port = s.port;
    // A manifest asking past a ceiling is refused before anything runs, naming the ceiling.
    for (properties, flag, ceiling) in [
        ("limits: { memory: 256MiB }", "--max-memory", "128MiB"),
        ("limits: { timeout: 30s }", "--max-timeout", "10s"),
    ] {
        let greedy = s.manifest(
            "greedy",
            "v1",
            &[Route {
                properties,
                ..route("greedy", &g.misbehave, port, "/greedy")
            }],
        );
        let refused = host.cli_err(&["app", "deploy", greedy.to_str().unwrap()]);
        assert!(
            refused.contains(flag) && refused.contains(ceiling),
            "{refused}"
        );
    }
    assert!(!host.cli_ok(&["app", "list"]).contains("greedy"));

    host.deploy(&s.manifest("hello", "v1", &[route("hello", &g.hello, port, "/hello")]));
    host.deploy(&s.manifest(
        "misbehave",
        "v1",
        &[Route {
            properties: "limits: { memory: 128MiB, timeout: 10s }",
            ..route("misbehave", &g.misbehave, port, "/misbehave")
        }],
    ));
    let in_use = || host.status()["memory_in_use"].as_u64().unwrap();
    // One guest holds 100 MiB of the 160 MiB budget for a while ...
    let holder = std::thread::spawn(move || {
        get(&format!(
            "http://127.0.0.1:{port}/misbehave/hold/100/sleep/6000"
        ))
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while in_use() < 100 << 20 {
        assert!(
            Instant::now() < deadline,
            "the holder never took its memory"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // ... so a second guest wanting as much is refused and told to come back, within its own
    // memory limit, while smaller guests carry on.
    let refused = http()
        .get(format!("http://127.0.0.1:{port}/misbehave/hold/100"))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body = refused.text().unwrap();
    assert!(body.contains("memory budget of 160 MiB"), "{body}");
    for _ in 0..20 {
        let (status, _) = get(&format!("http://127.0.0.1:{port}/hello"));
        assert_eq!(status, 200);
    }
    let status = host.cli_ok(&["status"]);
    assert!(status.contains("of a 160 MiB budget"), "{status}");
    assert_eq!(holder.join().unwrap(), (200, "ok\n".to_string()));
    // The memory is given back with the instance, which ends just after its answer is out:
    // the same request runs once retried as told.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get(&format!("http://127.0.0.1:{port}/misbehave/hold/100"));
        if answer == (200, "ok\n".to_string()) {
            break;
        }
        assert!(
            answer.0 == 503 && answer.1.contains("memory budget") && Instant::now() < deadline,
            "{answer:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while in_use() >= 100 << 20 {
        assert!(
            Instant::now() < deadline,
            "{} bytes still charged",
            in_use()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn what_a_manifest_says_that_weft_does_not_act_on_is_shown_with_the_deploy_and_in_status() {
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    let manifest = s.manifest(
        "hello",
        "v1",
        &[Route {
            properties: "experimental: true",
            ..route("hello", &g.hello, s.port, "/hello")
        }],
    );
    let deployed = host.cli(&["app", "deploy", manifest.to_str().unwrap()]);
    assert!(deployed.status.success());
    let stderr = String::from_utf8_lossy(&deployed.stderr);
    let warning = "component `hello`: properties.experimental is not read by weft";
    assert!(stderr.contains(&format!("warning: {warning}")), "{stderr}");
    let status = host.cli_ok(&["app", "status", "hello"]);
    assert!(status.contains(warning), "{status}");
    let (code, _) = get(&format!("http://127.0.0.1:{}/hello", s.port));
    assert_eq!(code, 200);

    // A host run with --strict refuses the same manifest, listing what it would not act on.
    let strict = Host::start(&["--strict"]);
    let refused = strict.cli_err(&["app", "deploy", manifest.to_str().unwrap()]);
    assert!(
        refused.contains("deployed strictly") && refused.contains(warning),
        "{refused}"
    );
}

#[test]
fn a_control_api_reachable_from_other_machines_needs_saying_so() {
    let state = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("--state-dir")
        .arg(state.path())
        .args(["up", "--control-addr", "0.0.0.0:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("--control-public"), "{stderr}");
    assert!(
        !state.path().join("control.json").exists(),
        "a control API was started"
    );
}

#[test]
fn a_host_whose_http_address_is_taken_says_so_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let state = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("--state-dir")
        .arg(state.path())
        .args(["up", "--control-addr", "127.0.0.1:0", "--http", &address])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {address}")) && stderr.contains("--http"),
        "{stderr}"
    );
}

#[test]
fn bad_deploys_are_refused_and_the_running_version_keeps_answering() {
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    let port = s.port;
    let v1 = s.manifest("hello", "v1", &[route("hello", &g.hello, port, "/hello")]);
    host.deploy(&v1);
    let still_serving = || {
        assert_eq!(get(&format!("http://127.0.0.1:{port}/hello")).0, 200);
        let status = host.cli_ok(&["app", "status", "hello"]);
        assert!(status.contains("version:   v1"), "{status}");
    };

    // A manifest that does not parse: the message names the file and the problem.
    let malformed = s.dir.path().join("malformed.yaml");
    std::fs::write(
        &malformed,
        std::fs::read_to_string(&v1)
            .unwrap()
            .replace("version: v1", "version: [v2"),
    )
    .unwrap();
    let err = host.cli_err(&["app", "deploy", malformed.to_str().unwrap()]);
    assert!(
        err.contains("malformed.yaml: not a valid app manifest"),
        "{err}"
    );
    still_serving();

    // A manifest that parses but does not validate names the component and field.
    let invalid = s.dir.path().join("invalid.yaml");
    std::fs::write(
        &invalid,
        std::fs::read_to_string(&v1)
            .unwrap()
            .replace("target: { name: hello }", "target: { name: nobody }"),
    )
    .unwrap();
    let err = host.cli_err(&["app", "deploy", invalid.to_str().unwrap()]);
    assert!(
        err.contains("component `http`: traits[0].properties.target"),
        "{err}"
    );
    assert!(err.contains("`nobody`"), "{err}");
    still_serving();

    // A core module is not a component.
    let core = s.dir.path().join("core.wasm");
    std::fs::write(
        &core,
        wat::parse_str("(module (func (export \"f\")))").unwrap(),
    )
    .unwrap();
    let m = s.manifest("hello", "v2", &[route("hello", &core, port, "/hello")]);
    let err = host.cli_err(&["app", "deploy", m.to_str().unwrap()]);
    assert!(
        err.contains("is a core WebAssembly module, not a component"),
        "{err}"
    );
    still_serving();

    // A file that is not WebAssembly at all.
    let text = s.dir.path().join("text.wasm");
    std::fs::write(&text, "not wasm").unwrap();
    let m = s.manifest("hello", "v3", &[route("hello", &text, port, "/hello")]);
    let err = host.cli_err(&["app", "deploy", m.to_str().unwrap()]);
    assert!(err.contains("is not a WebAssembly file"), "{err}");
    still_serving();

    // A component whose import nothing provides: the import is named.
    let kv = s.dir.path().join("kv.wasm");
    std::fs::write(
        &kv,
        wat::parse_str(r#"(component (import "wasi:keyvalue/store@0.2.0-draft" (instance (export "get" (func (param "key" string) (result string))))))"#).unwrap(),
    )
    .unwrap();
    let m = s.manifest("hello", "v4", &[route("hello", &kv, port, "/hello")]);
    let err = host.cli_err(&["app", "deploy", m.to_str().unwrap()]);
    assert!(err.contains("wasi:keyvalue/store@0.2.0-draft"), "{err}");
    still_serving();

    // A route to a component that exports no HTTP handler.
    let empty = s.dir.path().join("empty.wasm");
    std::fs::write(&empty, wat::parse_str("(component)").unwrap()).unwrap();
    let m = s.manifest("hello", "v5", &[route("hello", &empty, port, "/hello")]);
    let err = host.cli_err(&["app", "deploy", m.to_str().unwrap()]);
    assert!(
        err.contains(
            "exports neither `wasi:http/incoming-handler@0.2.x` nor `wasi:http/handler@0.3.0`"
        ),
        "{err}"
    );
    still_serving();

    // A route another app already serves.
    let thief = s.manifest("thief", "v1", &[route("thief", &g.hello, port, "/hello")]);
    let err = host.cli_err(&["app", "deploy", thief.to_str().unwrap()]);
    assert!(err.contains("already served by app `hello`"), "{err}");
    still_serving();

    // None of the refused versions was stored.
    let status = host.cli_ok(&["app", "status", "hello"]);
    assert!(status.contains("versions:  v1\n"), "{status}");
}

#[test]
fn a_batch_deploy_serves_the_apps_that_pass_and_names_each_refusal() {
    let g = guests();
    let s = Scene::new();
    let port = s.port;
    let mut host = Host::start(&[]);
    host.deploy(&s.manifest(
        "running",
        "v1",
        &[route("running", &g.hello, port, "/taken")],
    ));
    let app = |name: &str, version: &str, path: &str| {
        s.manifest(name, version, &[route(name, &g.hello, port, path)])
    };
    let batch = [
        app("app0", "v1", "/app0"),
        app("app1", "v1", "/app1"),
        // Takes a route an earlier app of the batch takes.
        app("clash", "v1", "/app1"),
        // Takes a route another app serves.
        app("thief", "v1", "/taken"),
        // The same app twice in one batch.
        app("app0", "v2", "/other"),
        // A running app gives up its route, and a later app of the batch takes it.
        app("running", "v2", "/moved"),
        app("newcomer", "v1", "/taken"),
        app("app2", "v1", "/app2"),
    ];
    let mut args = vec!["app", "deploy", "--json"];
    args.extend(batch.iter().map(|p| p.to_str().unwrap()));
    let out = host.cli(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("3 of 8 apps were not deployed (the others are serving)"),
        "{stderr}"
    );
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = outcome["results"].as_array().unwrap();
    let refusal = |i: usize| {
        let refused = &results[i]["refused"];
        assert_eq!(refused["status"], 422, "{refused}");
        assert!(refused["origin"]
            .as_str()
            .unwrap()
            .ends_with(batch[i].file_name().unwrap().to_str().unwrap()));
        refused["error"].as_str().unwrap().to_string()
    };
    assert!(refusal(2).contains("/app1 is already served by app `app1`"));
    assert!(refusal(3).contains("/taken is already served by app `running`"));
    assert!(refusal(4).contains("app `app0` is given more than once in one deploy"));
    for (i, name) in [
        (0, "app0"),
        (1, "app1"),
        (5, "running"),
        (6, "newcomer"),
        (7, "app2"),
    ] {
        assert_eq!(results[i]["deployed"]["app"], name, "{}", results[i]);
    }
    assert_eq!(results[5]["deployed"]["previous"], "v1");

    let answers = |host: &Host| {
        for path in ["/app0", "/app1", "/app2", "/moved", "/taken"] {
            let (status, body) = get(&format!("http://127.0.0.1:{port}{path}"));
            assert_eq!(status, 200, "{path}: {body}\n{}", host.log());
        }
        assert_eq!(get(&format!("http://127.0.0.1:{port}/other")).0, 404);
    };
    answers(&host);
    // Stored together: a restarted host serves the same apps.
    host.stop();
    host.restart(&[]);
    answers(&host);
    let list = host.cli_ok(&["app", "list"]);
    for name in ["app0", "app1", "app2", "running", "newcomer"] {
        assert!(list.contains(name), "{list}");
    }
    assert!(!list.contains("clash") && !list.contains("thief"), "{list}");
}

#[test]
fn redeploying_an_unchanged_component_compiles_nothing() {
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    let port = s.port;
    let v1 = s.manifest("hello", "v1", &[route("hello", &g.hello, port, "/hello")]);
    assert_eq!(host.deploy(&v1)["compiled"], 1);
    let compilations = host.status()["compilations"].as_u64().unwrap();

    // A new version of the app around the same component.
    let v2 = s.manifest("hello", "v2", &[route("hello", &g.hello, port, "/hello2")]);
    let outcome = host.deploy(&v2);
    assert_eq!(outcome["compiled"], 0, "{outcome}");
    assert_eq!(outcome["previous"], "v1");
    // The same version again: nothing to do at all.
    let outcome = host.deploy(&v2);
    assert_eq!(outcome["unchanged"], true, "{outcome}");
    assert_eq!(
        host.status()["compilations"].as_u64().unwrap(),
        compilations
    );
    assert_eq!(get(&format!("http://127.0.0.1:{port}/hello2")).0, 200);
    assert_eq!(get(&format!("http://127.0.0.1:{port}/hello")).0, 404);
}

#[test]
fn a_restarted_host_serves_the_same_apps() {
    let g = guests();
    let s = Scene::new();
    let port = s.port;
    let hello = s.manifest("hello", "v1", &[route("hello", &g.hello, port, "/hello")]);
    // The first run deploys from the command line, the second is given nothing.
    let mut host = Host::start(&[hello.to_str().unwrap()]);
    assert_eq!(get(&format!("http://127.0.0.1:{port}/hello")).0, 200);
    host.stop();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "host still listening"
    );

    host.restart(&[]);
    let (status, body) = get(&format!("http://127.0.0.1:{port}/hello"));
    assert_eq!(
        (status, body.as_str()),
        (200, "Hello from Rust! You asked for /hello\n")
    );
    let list = host.cli_ok(&["app", "list"]);
    assert!(list.contains("hello") && list.contains("v1"), "{list}");
    // Compiled code came from the on-disk cache.
    assert_eq!(host.status()["compilations"], 0);
}

#[test]
fn a_new_version_under_load_fails_no_request() {
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    let port = s.port;
    let v1 = s.manifest("greeter", "v1", &[route("hello", &g.hello, port, "/hello")]);
    // v2 swaps the Rust component for the Python one on the same route: a real change, and one
    // that takes seconds to compile while the load runs.
    let v2 = s.manifest(
        "greeter",
        "v2",
        &[route("hello", &g.hello_py, port, "/hello")],
    );
    host.deploy(&v1);

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let rust = Arc::new(AtomicU64::new(0));
    let python = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, failures, rust, python) =
                (stop.clone(), failures.clone(), rust.clone(), python.clone());
            std::thread::spawn(move || {
                let client = http();
                let started = Instant::now();
                // Bounded: the loop ends when told or after two minutes.
                while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120)
                {
                    match client.get(format!("http://127.0.0.1:{port}/hello")).send() {
                        Ok(r) if r.status() == 200 => {
                            let body = r.text().unwrap_or_default();
                            if body.starts_with("Hello from Rust") {
                                rust.fetch_add(1, Ordering::Relaxed);
                            } else if body.starts_with("Hello from Python") {
                                python.fetch_add(1, Ordering::Relaxed);
                            } else {
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(300));
    let outcome = host.deploy(&v2);
    assert_eq!(outcome["version"], "v2");
    // Keep the load on the new version for a while, then stop.
    let switched = python.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(30);
    while python.load(Ordering::Relaxed) < switched + 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let (rust, python, failures) = (
        rust.load(Ordering::Relaxed),
        python.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
    );
    assert!(rust > 0 && python > 0, "saw rust={rust} python={python}");
    assert_eq!(
        failures, 0,
        "failed requests during the switch (rust={rust} python={python})"
    );
}

/// What `request` answers `each` times on each of four threads at once.
fn four_at_a_time(each: usize, request: impl Fn() -> String + Sync) -> Vec<String> {
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| (0..each).map(|_| request()).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    })
}

/// The manifest of app `name`: `image` served at `path`, its instances reused as `reuse` says.
fn reused(
    s: &Scene,
    name: &str,
    image: &std::path::Path,
    path: &str,
    reuse: &str,
) -> std::path::PathBuf {
    s.manifest(
        name,
        "v1",
        &[Route {
            properties: reuse,
            ..route(name, image, s.port, path)
        }],
    )
}

/// What `path/count` of a hello example answers: how many requests its instance has served.
fn served_by_instance(port: u16, path: &str) -> String {
    let (status, body) = get(&format!("http://127.0.0.1:{port}{path}/count"));
    assert_eq!(status, 200, "{body}");
    body.trim().to_string()
}

#[test]
fn warm_reuse_is_opt_in_bounded_and_reclaimed() {
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    let port = s.port;
    let fresh = s.manifest("fresh", "v1", &[route("fresh", &g.hello, port, "/fresh")]);
    let warm = reused(
        &s,
        "warm",
        &g.hello,
        "/warm",
        "reuse: { requests: 3, idle: 3s }",
    );
    host.deploy(&fresh);
    host.deploy(&warm);
    let count = |path: &str| served_by_instance(port, path);

    // Fresh by default: every request meets a new instance, whose memory shows nothing of the
    // last one's (its marks on 64 disjoint pages, more regions than one page-table scan of a
    // reset reports), sequentially and four at a time through reused slots.
    let seen: Vec<String> = (0..3).map(|_| count("/fresh")).collect();
    assert_eq!(seen, ["1", "1", "1"]);
    let seen = four_at_a_time(8, || count("/fresh"));
    assert!(seen.iter().all(|c| c == "1"), "{seen:?}");
    // Those fresh instances are the same few reset in place once they answered (not made anew):
    // what they held besides memory is put back too. A resource the guest never drops would
    // keep its handle, and the next request's resource would get another.
    let ready = host.cli_ok(&["app", "status", "fresh"]);
    assert!(ready.contains("reset in place once it answered"), "{ready}");
    support::wait_until(
        Duration::from_secs(10),
        "a reset instance to be ready",
        || {
            let status = host.cli_ok(&["app", "status", "fresh"]);
            (!status.contains("; 0 ready")).then_some(())
        },
    );
    let handle = |_| {
        let (status, body) = get(&format!("http://127.0.0.1:{port}/fresh/handle"));
        assert_eq!(status, 200, "{body}");
        body.trim().to_string()
    };
    let seen: Vec<String> = (0..5).map(handle).collect();
    assert!(seen.iter().all(|h| *h == seen[0]), "{seen:?}");
    let seen: Vec<String> = (0..3).map(|_| count("/fresh")).collect();
    assert_eq!(seen, ["1", "1", "1"]);
    // Its monotonic clock starts with the request, as a new instance's does, not when the
    // instance was reset after the request before (which would tell when that one ended).
    std::thread::sleep(Duration::from_millis(1500));
    let (status, body) = get(&format!("http://127.0.0.1:{port}/fresh/clock"));
    assert_eq!(status, 200, "{body}");
    let since_start: u64 = body.trim().parse().expect("nanoseconds");
    assert!(since_start < 1_000_000_000, "{since_start} ns");
    // And its random generators are seeded anew.
    let seeds: std::collections::HashSet<String> = (0..3)
        .map(|_| get(&format!("http://127.0.0.1:{port}/fresh/seed")).1)
        .collect();
    assert_eq!(seeds.len(), 3, "{seeds:?}");
    // Opted in: one instance serves three requests, then a new one takes over.
    let seen: Vec<String> = (0..5).map(|_| count("/warm")).collect();
    assert_eq!(seen, ["1", "2", "3", "1", "2"]);
    let status = host.cli_ok(&["app", "status", "warm"]);
    assert!(status.contains("1 warm instance(s)"), "{status}");
    // Idle past its policy, the instance is reclaimed.
    std::thread::sleep(Duration::from_millis(5000));
    let status = host.cli_ok(&["app", "status", "warm"]);
    assert!(status.contains("0 warm instance(s)"), "{status}");
    assert_eq!(count("/warm"), "1");
}

/// Swap for the length of a test: the machine's own when it has some, else a swap file made
/// and switched on for it (root only), switched off and removed when dropped.
struct Swap {
    file: Option<tempfile::TempDir>,
}

impl Swap {
    fn on() -> Result<Swap, String> {
        let swaps = std::fs::read_to_string("/proc/swaps").map_err(|e| e.to_string())?;
        if swaps.lines().count() > 1 {
            return Ok(Swap { file: None });
        }
        // Next to the build, on disk: swap on tmpfs is refused.
        let dir =
            tempfile::tempdir_in(support::repo().join("target")).map_err(|e| e.to_string())?;
        let file = dir.path().join("swap");
        let run = |program: &str, args: &[&str]| -> Result<(), String> {
            let out = std::process::Command::new(program)
                .args(args)
                .output()
                .map_err(|e| format!("{program}: {e}"))?;
            out.status.success().then_some(()).ok_or_else(|| {
                format!("{program}: {}", String::from_utf8_lossy(&out.stderr).trim())
            })
        };
        let path = file.to_str().unwrap();
        run("fallocate", &["-l", "128M", path])?;
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| e.to_string())?;
        run("mkswap", &[path])?;
        run("swapon", &[path])?;
        Ok(Swap { file: Some(dir) })
    }
}

impl Drop for Swap {
    fn drop(&mut self) {
        if let Some(dir) = &self.file {
            let _ = std::process::Command::new("swapoff")
                .arg(dir.path().join("swap"))
                .status();
        }
    }
}

/// Asks the kernel to page out every private writable mapping of process `pid` now, as memory
/// pressure would; returns the kB of it then in swap.
#[allow(unsafe_code)]
fn page_out(pid: u32) -> u64 {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor, closed below.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    assert!(
        pidfd >= 0,
        "pidfd_open: {}",
        std::io::Error::last_os_error()
    );
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (range, perms) = (fields.next().unwrap(), fields.next().unwrap());
        if !(perms.starts_with("rw") && perms.ends_with('p')) {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = usize::from_str_radix(start, 16).unwrap();
        let end = usize::from_str_radix(end, 16).unwrap();
        let iov = libc::iovec {
            iov_base: start as *mut libc::c_void,
            iov_len: end - start,
        };
        // SAFETY: the kernel reads one iovec from `iov`, which outlives the call; the range is
        // the other process's and only advised, never touched from here. A range that vanished
        // meanwhile fails harmlessly.
        unsafe {
            libc::syscall(
                libc::SYS_process_madvise,
                pidfd,
                &iov as *const libc::iovec,
                1usize,
                libc::MADV_PAGEOUT,
                0u32,
            )
        };
    }
    // SAFETY: `pidfd` is the descriptor opened above and is not used after this.
    unsafe { libc::close(pidfd as libc::c_int) };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmSwap:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
// Without swap there is nothing to test, and switching it on takes root: it says why it stops.
#[allow(clippy::print_stderr)]
fn a_page_swapped_out_before_the_reset_is_reset_too() {
    let swap = match Swap::on() {
        Ok(swap) => swap,
        Err(why) => {
            eprintln!("skipped: this machine has no swap and none could be switched on ({why})");
            return;
        }
    };
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    let port = s.port;
    let warm = reused(
        &s,
        "warm",
        &g.hello,
        "/warm",
        "reuse: { requests: 100, idle: 1s }",
    );
    let fresh = s.manifest("fresh", "v1", &[route("fresh", &g.hello, port, "/fresh")]);
    host.deploy(&warm);
    host.deploy(&fresh);
    // A reused instance keeps what it wrote, here two requests' marks; then the kernel swaps
    // its memory out while it sits idle, as it would under memory pressure.
    let count = |path: &str| served_by_instance(port, path);
    assert_eq!([count("/warm"), count("/warm")], ["1", "2"]);
    assert!(page_out(host.pid()) > 0, "nothing was swapped out");
    // It retires once idle past its second, and its slot is reset: the next instance of the same
    // component is given that slot and must not find the marks, swapped out or not.
    support::wait_until(
        Duration::from_secs(10),
        "the warm instance to retire",
        || {
            host.cli_ok(&["app", "status", "warm"])
                .contains("0 warm instance(s)")
                .then_some(())
        },
    );
    let seen: Vec<String> = (0..6).map(|_| count("/fresh")).collect();
    assert!(seen.iter().all(|c| c == "1"), "{seen:?}");
    drop(swap);
}

#[test]
fn a_python_guest_resets_its_scattered_pages_and_still_starts_every_request_fresh() {
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    let port = s.port;
    let fresh = s.manifest("py", "v1", &[route("py", &g.hello_py, port, "/py")]);
    let warm = reused(
        &s,
        "py-warm",
        &g.hello_py,
        "/py-warm",
        "reuse: { requests: 3, idle: 30s }",
    );
    let rust = s.manifest("rust", "v1", &[route("rust", &g.hello, port, "/rust")]);
    host.deploy(&fresh);
    host.deploy(&warm);
    host.deploy(&rust);
    // CPython's image is over 10 MB: it runs on the engine that keeps up to 16 MiB of dirtied
    // pages resident between instances; the Rust hello stays on the one that keeps 1 MiB.
    let status = host.cli_ok(&["app", "status", "py"]);
    assert!(status.contains("large memory image"), "{status}");
    let status = host.cli_ok(&["app", "status", "rust"]);
    assert!(
        status.contains("reset by the pages a request dirtied"),
        "{status}"
    );
    // A reused CPython instance is reset once, when it retires: on the large-image engine the
    // heap it grew would stay resident in its slot for later fresh instances to copy back.
    let status = host.cli_ok(&["app", "status", "py-warm"]);
    assert!(
        status.contains("reset by the pages a request dirtied") && !status.contains("large"),
        "{status}"
    );
    let count = |path: &str| served_by_instance(port, path);
    // Each request writes 2 MiB the next would see if its memory were not reset: in the image,
    // and on the heap past it, besides the few hundred pages CPython dirties all over its image
    // (far more disjoint regions than one page-table scan reports). Slots are reused from one
    // request to the next, so these go through the reset many times, sequentially and four at
    // a time.
    let seen: Vec<String> = (0..12).map(|_| count("/py")).collect();
    assert!(seen.iter().all(|c| c == "1"), "{seen:?}");
    let seen = four_at_a_time(6, || count("/py"));
    assert!(seen.iter().all(|c| c == "1"), "{seen:?}");
    // Those go through the reset in place of the same few instances, heap grown past the
    // image and all.
    let status = host.cli_ok(&["app", "status", "py"]);
    assert!(
        status.contains("reset in place once it answered"),
        "{status}"
    );
    // What the guest keeps does show when an instance is reused.
    let seen: Vec<String> = (0..4).map(|_| count("/py-warm")).collect();
    assert_eq!(seen, ["1", "2", "3", "1"]);
    let (status, body) = get(&format!("http://127.0.0.1:{port}/py"));
    assert_eq!(
        (status, body.as_str()),
        (200, "Hello from Python! You asked for /py\n")
    );
}

/// A host that takes request bodies up to 1 MiB, serving hello on `/hello` of its scene's port.
fn hello_with_a_1mib_body_limit() -> (Host, Scene) {
    let g = guests();
    let host = Host::start(&["--max-request-body", "1MiB"]);
    let s = Scene::new();
    host.deploy(&s.manifest("hello", "v1", &[route("hello", &g.hello, s.port, "/hello")]));
    (host, s)
}

#[test]
fn a_request_body_over_the_limit_is_refused_and_costs_nothing_else() {
    use std::io::{Read as _, Write as _};
    let (_host, scene) = hello_with_a_1mib_body_limit();
    let port = scene.port;

    // The declared size alone decides: the host answers before reading the body (a client that
    // kept writing it could meet a closed connection, so this one sends only the headers).
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST /hello/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
        2 * 1024 * 1024
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("larger than the limit of 1048576 bytes"),
        "{answer}"
    );
    // Under the limit, the same route echoes as before.
    let small = http()
        .post(format!("http://127.0.0.1:{port}/hello/echo"))
        .body(vec![7u8; 512 * 1024])
        .send()
        .unwrap();
    assert_eq!(small.status(), 200);
    assert_eq!(small.bytes().unwrap().len(), 512 * 1024);
}

#[test]
fn a_client_expecting_100_continue_hears_it_before_the_answer() {
    use std::io::{Read as _, Write as _};
    let (_host, scene) = hello_with_a_1mib_body_limit();
    let port = scene.port;
    let ask = |length: usize| {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            stream,
            "POST /hello/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n\
             Expect: 100-continue\r\n\r\n"
        )
        .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut first = vec![0u8; 4096];
        let n = stream.read(&mut first).unwrap();
        (stream, String::from_utf8_lossy(&first[..n]).into_owned())
    };
    // hello sets its answer before it reads the body: the client still hears to go on first,
    // and does not wait out its expect timeout.
    let (mut stream, first) = ask(5);
    assert!(
        first.starts_with("HTTP/1.1 100 Continue\r\n\r\n"),
        "{first}"
    );
    stream.write_all(b"hello").unwrap();
    let mut answer = first.into_bytes();
    while !answer.ends_with(b"0\r\n\r\n") {
        let mut more = vec![0u8; 4096];
        let n = stream.read(&mut more).unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&more[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("\r\n5\r\nhello\r\n"), "{answer}");
    // A body the host refuses by its declared size is never asked for.
    let (_, first) = ask(2 * 1024 * 1024);
    assert!(first.starts_with("HTTP/1.1 413"), "{first}");
}

#[test]
fn a_chunked_body_over_the_limit_is_never_answered_as_a_whole() {
    let (_host, scene) = hello_with_a_1mib_body_limit();
    let port = scene.port;
    // Sent without a length (chunked), so the host learns the size only as the body arrives;
    // hello answers at once and echoes as it reads, so its 200 is already out by then.
    let sent = http()
        .post(format!("http://127.0.0.1:{port}/hello/echo"))
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(vec![
            7u8;
            2 * 1024 * 1024
        ])))
        .send();
    match sent {
        Err(_) => {}
        Ok(response) if response.status() == 413 => {
            let body = response.text().unwrap();
            assert!(
                body.contains("larger than the limit of 1048576 bytes"),
                "{body}"
            );
        }
        Ok(response) => {
            let status = response.status();
            let body = response.bytes();
            assert!(
                body.is_err(),
                "a body over the limit was answered {status} as if whole ({} bytes)",
                body.map(|b| b.len()).unwrap_or_default()
            );
        }
    }
    // Under the limit and chunked, the echo is whole.
    let small = http()
        .post(format!("http://127.0.0.1:{port}/hello/echo"))
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(vec![
            7u8;
            512 * 1024
        ])))
        .send()
        .unwrap();
    assert_eq!(small.status(), 200);
    assert_eq!(small.bytes().unwrap().len(), 512 * 1024);
}

#[test]
fn clients_that_never_finish_their_headers_are_disconnected_on_both_listeners() {
    use std::io::{Read as _, Write as _};
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    host.deploy(&s.manifest("hello", "v1", &[route("hello", &g.hello, s.port, "/hello")]));
    let (control, _) = host.control();
    let ingress = format!("127.0.0.1:{}", s.port);
    let probes: Vec<_> = [ingress, control]
        .into_iter()
        .flat_map(|address| {
            ["", "GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n"]
                .map(|partial| (address.clone(), partial))
        })
        .map(|(address, partial)| {
            std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(&address).unwrap();
                stream.write_all(partial.as_bytes()).unwrap();
                // The host's header-read timeout is 10 s; a connection still open at 25 s is held.
                stream
                    .set_read_timeout(Some(Duration::from_secs(25)))
                    .unwrap();
                let mut answer = Vec::new();
                let closed = stream.read_to_end(&mut answer);
                (address, partial, closed.map_err(|e| e.kind()))
            })
        })
        .collect();
    for probe in probes {
        let (address, partial, closed) = probe.join().unwrap();
        assert!(
            closed.is_ok(),
            "{address} kept a connection open whose headers never came ({partial:?}): {closed:?}"
        );
    }
}

#[test]
fn the_state_dir_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let g = guests();
    let mut host = Host::start(&[]);
    // A state dir made by hand with the usual modes is closed up when the host starts.
    host.stop();
    std::fs::set_permissions(host.state.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    host.restart(&[]);
    let s = Scene::new();
    host.deploy(&s.manifest("hello", "v1", &[route("hello", &g.hello, s.port, "/hello")]));
    let (control, token) = host.control();
    let stored = http()
        .put(format!("http://{control}/v1/secrets/api-key"))
        .bearer_auth(&token)
        .body("s3cret")
        .send()
        .unwrap();
    assert!(stored.status().is_success(), "{}", stored.status());
    let mut pending = vec![host.state.path().to_path_buf()];
    let mut seen = 0;
    while let Some(path) = pending.pop() {
        let meta = std::fs::metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with(".log"))
        {
            continue; // the test's own capture of the host's output
        }
        assert_eq!(mode & 0o077, 0, "{} has mode {mode:o}", path.display());
        seen += 1;
        if meta.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    // The state store, the secrets, the uploaded component and its compiled form at least.
    assert!(seen >= 6, "only {seen} entries in the state dir");
}

#[test]
fn a_file_that_is_not_a_component_is_neither_uploaded_nor_stored() {
    use sha2::Digest as _;
    let host = Host::start(&[]);
    let s = Scene::new();
    let components = host.state.path().join("components");
    let stored = || std::fs::read_dir(&components).unwrap().count();
    let before = stored();
    let private = s.dir.path().join("shadow");
    std::fs::write(&private, "root:$6$secret-hash:19000:0:99999:7:::\n").unwrap();
    let m = s.manifest("leak", "v1", &[route("leak", &private, s.port, "/leak")]);
    let err = host.cli_err(&["app", "deploy", m.to_str().unwrap()]);
    assert!(
        err.contains("is not a WebAssembly file") && err.contains("nothing was uploaded"),
        "{err}"
    );
    // A client that skips the check meets the host's: the bytes are refused, not kept.
    let bytes = std::fs::read(&private).unwrap();
    let digest = hex::encode(sha2::Sha256::digest(&bytes));
    let (control, token) = host.control();
    let response = http()
        .put(format!("http://{control}/v1/components/{digest}"))
        .bearer_auth(&token)
        .body(bytes)
        .send()
        .unwrap();
    assert_eq!(response.status(), 400);
    let body = response.text().unwrap();
    assert!(
        body.contains("not a WebAssembly file") && body.contains("nothing was stored"),
        "{body}"
    );
    let core = wat::parse_str("(module)").unwrap();
    let digest = hex::encode(sha2::Sha256::digest(&core));
    let response = http()
        .put(format!("http://{control}/v1/components/{digest}"))
        .bearer_auth(&token)
        .body(core)
        .send()
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().unwrap().contains("core WebAssembly module"));
    assert_eq!(
        stored(),
        before,
        "refused bytes were kept in the components dir"
    );
}

/// Sets the modification time of every file in `dir` an hour back, as if uploaded long ago.
fn age_files(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let file = std::fs::File::options()
            .append(true)
            .open(entry.path())
            .unwrap();
        file.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
    }
}

/// The files of `dir` whose bytes are those of `component`.
fn copies_of(dir: &std::path::Path, component: &std::path::Path) -> usize {
    let wanted = std::fs::read(component).unwrap();
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read(e.path()).is_ok_and(|bytes| bytes == wanted))
        .count()
}

#[test]
fn only_the_last_versions_are_kept_with_the_components_they_use() {
    let g = guests();
    let mut host = Host::start(&["--keep-versions", "2"]);
    let s = Scene::new();
    let port = s.port;
    let components = host.state.path().join("components");
    let version = |v: &str, image: &std::path::Path| {
        s.manifest("kept", v, &[route("web", image, port, "/web")])
    };
    host.deploy(&version("v1", &g.misbehave));
    host.deploy(&version("v2", &g.hello));
    // A refused deploy's upload is kept only while a deploy might still be using it.
    let unlinked = write_yaml(
        s.dir.path(),
        "unlinked",
        &format!(
            "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata: {{ name: unlinked }}\n\
             spec:\n  components:\n    - name: c\n      type: component\n      properties: {{ image: {} }}\n",
            g.counter.display()
        ),
    );
    host.cli_err(&["app", "deploy", unlinked.to_str().unwrap()]);
    assert_eq!(copies_of(&components, &g.counter), 1);
    age_files(&components);
    host.deploy(&version("v3", &g.fetch));

    let status = host.cli_ok(&["app", "status", "kept", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        status["versions"],
        serde_json::json!(["v2", "v3"]),
        "{status}"
    );
    assert_eq!(
        copies_of(&components, &g.misbehave),
        0,
        "v1's component is kept"
    );
    assert_eq!(
        copies_of(&components, &g.counter),
        0,
        "the refused upload is kept"
    );
    assert_eq!(
        copies_of(&components, &g.hello),
        1,
        "v2's component is gone"
    );
    assert_eq!(copies_of(&components, &g.fetch), 1);

    // After a restart (which compacts the store) the app serves v3 with its history intact.
    host.stop();
    host.restart(&["--keep-versions", "2"]);
    let status = host.cli_ok(&["app", "status", "kept", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        status["versions"],
        serde_json::json!(["v2", "v3"]),
        "{status}"
    );
    // fetch, asked for no URL, says so: v3 answers.
    let (code, body) = get(&format!("http://127.0.0.1:{port}/web"));
    assert_eq!(code, 502, "{body}");
    assert!(body.starts_with("fetch "), "{body}");
}

#[test]
fn an_app_given_to_weft_up_whose_port_is_taken_fails_alone() {
    let g = guests();
    let s = Scene::new();
    let hello = s.manifest("hello", "v1", &[route("hello", &g.hello, s.port, "/hello")]);
    // Another program holds this port.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = taken.local_addr().unwrap().port();
    let blocked = s.manifest(
        "blocked",
        "v1",
        &[route("misbehave", &g.misbehave, busy_port, "/misbehave")],
    );
    let host = Host::start(&[blocked.to_str().unwrap(), hello.to_str().unwrap()]);
    assert_eq!(
        get(&format!("http://127.0.0.1:{}/hello", s.port)).0,
        200,
        "the app beside the blocked one is not served"
    );
    let log = host.log();
    assert!(
        log.contains("app `blocked` is not served") && log.contains(&busy_port.to_string()),
        "{log}"
    );
    let listed = host.cli_ok(&["app", "list"]);
    assert!(
        listed.contains("hello") && !listed.contains("blocked"),
        "{listed}"
    );
    drop(taken);
}

#[test]
fn a_guest_printing_in_a_loop_cannot_flood_the_host_log() {
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    host.deploy(&s.manifest(
        "chatty",
        "v1",
        &[Route {
            // A long call runs at low priority; on a machine busy with the other tests, 1,000
            // writes from a debug build can take a while.
            properties: "limits: { timeout: 60s }",
            ..route("misbehave", &g.misbehave, s.port, "/misbehave")
        }],
    ));
    let spam = format!("http://127.0.0.1:{}/misbehave/spam", s.port);
    for _ in 0..2 {
        assert_eq!(get(&spam), (200, "ok\n".to_string()));
    }
    // Each of the two instances printed 1,000 lines; each keeps its first 100, says so once.
    let log = host.log();
    let kept = log.matches("misbehave: spam line").count();
    assert_eq!(kept, 200, "lines of guest output in the log");
    assert_eq!(
        log.matches("the rest of its output is dropped").count(),
        2,
        "{log}"
    );
    assert!(log.contains("misbehave: spam line 99") && !log.contains("misbehave: spam line 100"));
}

#[test]
fn control_api_bodies_are_bounded_per_route() {
    let host = Host::start(&[]);
    let (control, token) = host.control();
    // Only the headers are sent: the host answers from the declared size alone (a client still
    // writing a body the host will not read could meet a reset connection instead).
    let declare = |method: &str, path: &str, len: usize| {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(&control).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {control}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
        )
        .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut answer = [0u8; 512];
        let n = stream.read(&mut answer).unwrap();
        String::from_utf8_lossy(&answer[..n]).into_owned()
    };
    let secret = declare("PUT", "/v1/secrets/big", 128 * 1024);
    assert!(secret.starts_with("HTTP/1.1 413"), "{secret}");
    let manifest = declare("POST", "/v1/apps", 80 * 1024 * 1024);
    assert!(manifest.starts_with("HTTP/1.1 413"), "{manifest}");
    assert!(
        manifest.contains("larger than the 67108864 bytes /v1/apps accepts"),
        "{manifest}"
    );
    // Component uploads are larger (rust_and_python_apps_served_through_the_cli uploads an
    // 18 MB CPython component): their route keeps its own, far higher bound.
    let keys = http()
        .get(format!("http://{control}/v1/secrets"))
        .bearer_auth(&token)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(!keys.contains("big"), "{keys}");
    // A small secret still goes in.
    let small = http()
        .put(format!("http://{control}/v1/secrets/small"))
        .bearer_auth(&token)
        .body("s3cret")
        .send()
        .unwrap();
    assert!(small.status().is_success(), "{}", small.status());
}

#[test]
fn stopping_the_host_lets_requests_in_flight_finish() {
    let g = guests();
    let mut host = Host::start(&[]);
    let s = Scene::new();
    let port = s.port;
    let app = s.manifest(
        "sleepy",
        "v1",
        &[route("misbehave", &g.misbehave, port, "/misbehave")],
    );
    host.deploy(&app);

    let in_flight =
        std::thread::spawn(move || get(&format!("http://127.0.0.1:{port}/misbehave/sleep/3000")));
    // Once the request is running in its instance, stop the host as Ctrl-C would.
    let started = Instant::now();
    while !host
        .cli_ok(&["app", "status", "sleepy"])
        .contains("active:    1 instance(s)")
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the request never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    host.stop();
    assert_eq!(in_flight.join().unwrap(), (200, "ok\n".to_string()));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the stopped host still accepts connections"
    );
    assert!(
        host.log().contains("finishing requests in flight"),
        "{}",
        host.log()
    );
}

/// A plain HTTP server on loopback answering every request with `body`, for as long as the test
/// runs; returns its port.
fn upstream(body: &'static str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            use std::io::{BufRead as _, Write as _};
            let mut reader = std::io::BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn outgoing_http_reaches_only_the_granted_hosts() {
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    let port = s.port;
    let allowed = upstream("from the allowed upstream");
    let other = upstream("from an upstream nobody granted");
    let app = s.manifest(
        "fetch",
        "v1",
        &[Route {
            outgoing: Some(&format!("127.0.0.1:{allowed}")),
            ..route("fetch", &g.fetch, port, "/fetch")
        }],
    );
    host.deploy(&app);

    let (status, body) = get(&format!(
        "http://127.0.0.1:{port}/fetch?http://127.0.0.1:{allowed}/x"
    ));
    assert_eq!((status, body.as_str()), (200, "from the allowed upstream"));
    let (status, body) = get(&format!(
        "http://127.0.0.1:{port}/fetch?http://127.0.0.1:{other}/x"
    ));
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");

    // Without an http-client link, no host at all.
    let ungranted = s.manifest("fetch", "v2", &[route("fetch", &g.fetch, port, "/fetch")]);
    host.deploy(&ungranted);
    let (status, body) = get(&format!(
        "http://127.0.0.1:{port}/fetch?http://127.0.0.1:{allowed}/x"
    ));
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");
    host.deploy(&app);
    // Granted again, the allowed host answers again.
    let (status, _) = get(&format!(
        "http://127.0.0.1:{port}/fetch?http://127.0.0.1:{allowed}/"
    ));
    assert_eq!(status, 200);
}
