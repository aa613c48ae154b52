//! The developer's tools against real components: `weft call` with WAVE values of every shape,
//! `weft inspect` on Rust and Python components (a file, a deployed component) and on one whose
//! import nothing satisfies, and `weft app validate` offline.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{extra_guest, get, guests, http_server, write_yaml, Host, Scene, WEFT};

/// A manifest of one component and no route.
fn single_component_app(s: &Scene, app: &str, component: &str, image: &Path) -> PathBuf {
    write_yaml(
        s.dir.path(),
        app,
        &format!(
            "apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {app}
spec:
  components:
    - name: {component}
      type: component
      properties:
        image: {}
",
            image.display()
        ),
    )
}

fn calc_app(s: &Scene) -> PathBuf {
    single_component_app(s, "calc", "calc", &guests().calc)
}

/// Runs the CLI with no host.
fn weft<const N: usize>(args: [&str; N]) -> Output {
    Command::new(WEFT).args(args).output().unwrap()
}

/// Runs the CLI with no host, `path` last.
fn weft_with(args: &[&str], path: impl AsRef<std::ffi::OsStr>) -> Output {
    Command::new(WEFT).args(args).arg(path).output().unwrap()
}

#[test]
fn weft_call_passes_and_prints_every_shape_of_value_in_wave() {
    let s = Scene::new();
    let host = Host::start(&[calc_app(&s).to_str().unwrap()]);
    let call = |args: &[&str]| {
        let mut all = vec!["call", "calc/calc"];
        all.extend_from_slice(args);
        host.cli_ok(&all).trim().to_string()
    };
    // Numbers, with the interface's version left out and written out.
    assert_eq!(call(&["weft:calc/calc.add", "2", "40"]), "42");
    assert_eq!(call(&["weft:calc/calc@0.1.0.add", "-2", "-40"]), "-42");
    // Results, both cases.
    assert_eq!(call(&["weft:calc/calc.divide", "1.0", "4.0"]), "ok(0.25)");
    assert_eq!(
        call(&["weft:calc/calc.divide", "1", "0"]),
        r#"err("cannot divide 1 by zero")"#
    );
    // Lists and options.
    assert_eq!(
        call(&["weft:calc/calc.find", r#"["a", "b", "c"]"#, r#""c""#]),
        "some(2)"
    );
    assert_eq!(call(&["weft:calc/calc.find", "[]", r#""c""#]), "none");
    assert_eq!(
        call(&["weft:calc/calc.shout", r#"["hi", "there"]"#, r#"some("?")"#]),
        r#""HI THERE?""#
    );
    assert_eq!(
        call(&["weft:calc/calc.shout", r#"["hi"]"#, "none"]),
        r#""HI!""#
    );
    // Records and enums.
    assert_eq!(
        call(&["weft:calc/calc.move-by", "{x: 1, y: 2}", "10", "feet"]),
        "{x: 4, y: 2}"
    );
    // JSON output: one WAVE text per result.
    let json: Vec<String> = serde_json::from_str(&host.cli_ok(&[
        "call",
        "calc/calc",
        "weft:calc/calc.add",
        "1",
        "2",
        "--json",
    ]))
    .unwrap();
    assert_eq!(json, ["3"]);

    // Errors name what was expected.
    let e = host.cli_err(&["call", "calc/calc", "weft:calc/calc.add", "1"]);
    assert!(
        e.contains("takes 2 argument(s), 1 given") && e.contains("add(a: s32, b: s32) -> s32"),
        "{e}"
    );
    let e = host.cli_err(&[
        "call",
        "calc/calc",
        "weft:calc/calc.move-by",
        "{x: 1}",
        "1",
        "feet",
    ]);
    assert!(
        e.contains("argument `p` must be a record { x: s32, y: s32 }"),
        "{e}"
    );
    let e = host.cli_err(&[
        "call",
        "calc/calc",
        "weft:calc/calc.move-by",
        "{x: 1, y: 1}",
        "1",
        "miles",
    ]);
    assert!(e.contains("enum { metres, feet }"), "{e}");
    let e = host.cli_err(&["call", "calc/calc", "weft:calc/calc.nope"]);
    assert!(
        e.contains("has no function `nope`") && e.contains("`add`"),
        "{e}"
    );
    let e = host.cli_err(&["call", "calc/calc", "weft:other/x.f"]);
    assert!(
        e.contains("exports no interface `weft:other/x`") && e.contains("weft:calc/calc@0.1.0.add"),
        "{e}"
    );
    let e = host.cli_err(&["call", "calc/other", "weft:calc/calc.add", "1", "2"]);
    assert!(
        e.contains("has no component `other`") && e.contains("calc"),
        "{e}"
    );
    let e = host.cli_err(&["call", "nope/calc", "weft:calc/calc.add", "1", "2"]);
    assert!(e.contains("no app named `nope`"), "{e}");
    let e = host.cli_err(&["call", "calc", "weft:calc/calc.add"]);
    assert!(e.contains("not APP/COMPONENT"), "{e}");
}

#[test]
fn weft_call_reaches_a_python_component_and_the_host_keeps_serving() {
    let s = Scene::new();
    let manifest = single_component_app(&s, "greeter", "greeter", &guests().greeter_py);
    let host = Host::start(&[manifest.to_str().unwrap()]);
    let out = host.cli_ok(&[
        "call",
        "greeter/greeter",
        "weft:greet/greeter.greet",
        r#""Ada""#,
        r#"["x", "y"]"#,
    ]);
    assert_eq!(
        out.trim(),
        r#"{message: "Hello, Ada! (from Python)", length: 25, tags: ["X", "Y"]}"#
    );
}

#[test]
fn weft_inspect_shows_the_world_and_what_satisfies_each_import() {
    // Rust, from a file: key-value needs a link, config and logging need none, WASI is there.
    let out = weft(["inspect", guests().counter.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("digest:    sha256:"), "{text}");
    let line = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no line for {name} in\n{text}"))
            .to_string()
    };
    assert!(line("wasi:keyvalue/atomics@0.2.0-draft").contains("needs a link to a keyvalue node"));
    assert!(line("wasi:config/store@0.2.0-draft").contains("(always)"));
    assert!(line("wasi:io/streams@").contains("WASI 0.2"));
    assert!(
        text.contains("export wasi:keyvalue/watcher@0.2.0-draft;"),
        "{text}"
    );
    assert!(text.contains("weft provides every import"), "{text}");
    assert!(
        line("memory:").contains("reset by the pages a request dirtied"),
        "{text}"
    );

    // Python, as JSON: its own interface is printed in full.
    let out = weft(["inspect", "--json", guests().greeter_py.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bytes = std::fs::read(&guests().greeter_py).unwrap();
    assert_eq!(json["size"], bytes.len() as u64);
    // CPython's interpreter image: over 10 MB of data, so it gets the large-image engine.
    assert!(json["data_image"].as_u64().unwrap() > 10 << 20, "{json}");
    assert!(json["exports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "weft:greet/greeter@0.1.0"));
    let wit = json["wit"].as_str().unwrap();
    assert!(
        wit.contains("greet: func(name: string, tags: list<string>) -> greeting;"),
        "{wit}"
    );
    assert!(json["imports"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["provider"]["by"] == "wasi"));

    // An import nothing provides is named.
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("odd.wasm");
    std::fs::write(
        &odd,
        wat::parse_str(
            r#"(component
                 (import "example:missing/thing@1.0.0" (instance (export "poke" (func))))
                 (import "wasi:cli/environment@0.3.0-rc-2025-09-16" (instance))
                 (import "wasi:cli/stdout@0.3.0" (instance)))"#,
        )
        .unwrap(),
    )
    .unwrap();
    let out = weft(["inspect", odd.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("2 import(s) nothing in weft provides"),
        "{text}"
    );
    assert!(text.contains("example:missing/thing@1.0.0"), "{text}");
    assert!(
        text.contains("weft serves WASI 0.2 (0.2.x) and 0.3.0; this is 0.3.0-rc-2025-09-16"),
        "{text}"
    );
    assert!(
        text.contains("wasi:cli/stdout@0.3.0") && text.contains("WASI 0.3.0 (always)"),
        "{text}"
    );

    // Not a component: said so.
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, wat::parse_str("(module)").unwrap()).unwrap();
    let out = weft(["inspect", core.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("core WebAssembly module"));
}

#[test]
fn weft_inspect_reads_a_deployed_component_from_its_host() {
    let s = Scene::new();
    let host = Host::start(&[calc_app(&s).to_str().unwrap()]);
    let out = host.cli_ok(&["inspect", "calc/calc"]);
    assert!(
        out.contains("move-by: func(p: point, dx: s32, unit: unit) -> point;"),
        "{out}"
    );
    let digest = weft_digest(&guests().calc);
    assert!(out.contains(&format!("sha256:{digest}")), "{out}");
    let e = host.cli_err(&["inspect", "calc/nope"]);
    assert!(e.contains("has no component `nope`"), "{e}");

    // A host of its own is the one host `weft get hosts` lists, with what it runs.
    let hosts: serde_json::Value =
        serde_json::from_str(&host.cli_ok(&["get", "hosts", "--json"])).unwrap();
    let hosts = hosts.as_array().unwrap();
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert_eq!(hosts[0]["alive"], true);
    assert_eq!(hosts[0]["apps"][0]["app"], "calc");
    assert_eq!(hosts[0]["apps"][0]["phase"], "deployed");
    let id = hosts[0]["id"].as_str().unwrap().to_string();
    let text = host.cli_ok(&["get", "hosts"]);
    assert!(text.contains(&id) && text.contains("yes"), "{text}");
    let inventory = host.cli_ok(&["get", "inventory", &id]);
    assert!(inventory.contains("calc"), "{inventory}");
    let e = host.cli_err(&["get", "inventory", "elsewhere"]);
    assert!(e.contains("not in a lattice"), "{e}");

    // The host's address and token given on the command line, with no state dir to find them.
    let (address, token) = host.control();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = Command::new(WEFT)
        .arg("--state-dir")
        .arg(elsewhere.path())
        .args([
            "app",
            "list",
            "--url",
            &format!("http://{address}"),
            "--token",
            &token,
        ])
        .env_remove("WEFT_URL")
        .env_remove("WEFT_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("calc"));
    // Only commands that talk to a host take those flags.
    let help = String::from_utf8(weft(["build", "--help"]).stdout).unwrap();
    assert!(
        !help.contains("--url") && help.contains("Global options"),
        "{help}"
    );
    let help = String::from_utf8(weft(["call", "--help"]).stdout).unwrap();
    assert!(
        help.contains("Host connection") && help.contains("--url"),
        "{help}"
    );
}

fn weft_digest(path: &std::path::Path) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn weft_app_validate_checks_a_manifest_and_its_components_offline() {
    let ok = weft_with(
        &["app", "validate"],
        support::repo().join("examples/counter/app.yaml"),
    );
    // examples/counter/build/counter.wasm exists once guests() built it.
    let _ = guests();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // The counter with its key-value link taken out: refused, naming the import.
    let s = Scene::new();
    let manifest = single_component_app(&s, "unlinked", "counter", &guests().counter);
    let out = weft(["app", "validate", manifest.to_str().unwrap()]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains(
            "imports `wasi:keyvalue/store@0.2.0-draft` but has no link to a keyvalue capability"
        ),
        "{e}"
    );

    // A manifest that does not parse names its problem.
    let broken = write_yaml(
        s.dir.path(),
        "broken",
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\n",
    );
    let out = weft(["app", "validate", broken.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("metadata"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = weft(["completions", shell]);
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains("inspect") && text.contains("deploy"),
            "{shell}"
        );
    }
}

#[test]
fn a_javascript_component_calls_a_rust_export_in_process() {
    let s = Scene::new();
    let manifest = write_yaml(
        s.dir.path(),
        "greet-js",
        &format!(
            "apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: greet-js
spec:
  components:
    - name: greet-js
      type: component
      properties:
        image: {js}
      traits:
        - type: link
          properties: {{ target: {{ name: greeter }}, namespace: weft, package: greet, interfaces: [greeter] }}
    - name: greeter
      type: component
      properties:
        image: {rust}
{http}",
            js = extra_guest("greet-js").display(),
            rust = extra_guest("greeter-rs").display(),
            http = http_server("greet-js", s.port, "/greet-js"),
        ),
    );
    let _host = Host::start(&[manifest.to_str().unwrap()]);
    let (status, body) = get(&format!(
        "http://127.0.0.1:{}/greet-js?name=Ada&tags=x,y",
        s.port
    ));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body.trim(),
        "Hello, Ada! (from Rust) length=23 tags=X,Y (asked from JavaScript)"
    );
    // A string beyond ASCII crosses JS → Rust → JS unchanged; its length is counted in chars.
    let (status, body) = get(&format!(
        "http://127.0.0.1:{}/greet-js?name=Zo%C3%AB%20%F0%9F%A6%80",
        s.port
    ));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("Hello, Zo\u{eb} \u{1f980}! (from Rust) length=25 "),
        "{body}"
    );

    // Inspected: a JS component, its link-only import named as such.
    let out = weft_with(&["inspect", "--json"], extra_guest("greet-js"));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let imports = json["imports"].as_array().unwrap();
    let greeter = imports
        .iter()
        .find(|i| i["name"] == "weft:greet/greeter@0.1.0")
        .unwrap();
    assert_eq!(greeter["provider"]["by"], "nothing");
    assert!(json["exports"].as_array().unwrap().iter().any(|e| e
        .as_str()
        .unwrap()
        .starts_with("wasi:http/incoming-handler@0.2.")));
}

#[test]
fn a_go_component_s_strings_cross_to_rust_and_back_unchanged() {
    let s = Scene::new();
    let manifest = write_yaml(
        s.dir.path(),
        "greet-go",
        &format!(
            "apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: greet-go
spec:
  components:
    - name: greet
      type: component
      properties:
        image: {rust}
      traits:
        - type: link
          properties: {{ target: {{ name: greeter }}, namespace: weft, package: greet, interfaces: [greeter] }}
    - name: greeter
      type: component
      properties:
        image: {go}
    - name: hello
      type: component
      properties:
        image: {hello}
{http}{hello_route}",
            rust = guests().greet.display(),
            go = extra_guest("greeter-go").display(),
            hello = extra_guest("hello-go").display(),
            http = http_server("greet", s.port, "/greet"),
            hello_route = http_server("hello", s.port, "/hello-go").replace("name: http\n", "name: http2\n"),
        ),
    );
    let host = Host::start(&[manifest.to_str().unwrap()]);
    // The Rust component calls the Go one in-process: name and tags go in, a record comes back.
    let (status, body) = get(&format!(
        "http://127.0.0.1:{}/greet?name=Ada&tags=x,y",
        s.port
    ));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("Hello, Ada! (from Go)") && body.contains("X,Y"),
        "{body}"
    );
    // A string beyond ASCII, straight into the Go export and back.
    let out = host.cli_ok(&[
        "call",
        "greet-go/greeter",
        "weft:greet/greeter.greet",
        "\"Zo\u{eb} \u{1f980}\"",
        "[\"\u{e9}t\u{e9}\"]",
    ]);
    assert_eq!(
        out.trim(),
        "{message: \"Hello, Zo\u{eb} \u{1f980}! (from Go)\", length: 23, tags: [\"\u{c9}T\u{c9}\"]}"
    );
    // The Go hello answers over HTTP.
    let (status, body) = get(&format!("http://127.0.0.1:{}/hello-go/x", s.port));
    assert_eq!(
        (status, body.trim()),
        (200, "Hello from hello-go! You asked for /hello-go/x")
    );

    // Inspected: a Go component exports its interface, and WASI satisfies every import.
    let out = weft_with(&["inspect", "--json"], extra_guest("greeter-go"));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["exports"],
        serde_json::json!(["weft:greet/greeter@0.1.0"])
    );
    assert!(json["imports"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["provider"]["by"] == "wasi"));
}
