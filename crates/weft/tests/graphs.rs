//! End-to-end tests of apps as graphs of components: the platform harness in front of an app,
//! joined in-process by a component link.

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use support::*;

/// An app whose route leads to the harness, which reaches `inner` through its link.
fn guarded_app(dir: &Path, app: &str, port: u16, inner: &Path) -> PathBuf {
    let harness = guests().harness.display().to_string();
    let inner = inner.display().to_string();
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
          properties: {{ name: inner, target: {{ name: app }}, namespace: wasi, package: http, interfaces: [incoming-handler] }}
    - name: app
      type: component
      properties: {{ image: {inner} }}
    - name: http
      type: capability
      properties: {{ image: weft:http-server }}
      traits:
        - type: link
          properties:
            target: {{ name: harness }}
            namespace: wasi
            package: http
            interfaces: [incoming-handler]
            source: {{ config: [{{ name: r, properties: {{ address: "127.0.0.1:{port}", path: /{app} }} }}] }}
"#
    );
    let file = dir.join(format!("{app}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    file
}

fn put_secret(host: &Host, key: &str, value: &str) {
    let put = std::process::Command::new(WEFT)
        .arg("--state-dir")
        .arg(host.state.path())
        .args(["secret", "put", key])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(value);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
}

trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &str) -> std::process::Output;
}

impl OutputWithStdin for std::process::Command {
    fn output_with_stdin(&mut self, input: &str) -> std::process::Output {
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

#[test]
fn the_python_app_behind_the_rust_harness() {
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    put_secret(&host, "platform-token", "let-me-in");
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
    put_secret(&host, "platform-token", "t");
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
fn a_component_link_is_not_a_way_out() {
    // The inner answers only through the harness: a request to its name from a component
    // without the link is refused like any ungranted host.
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    let app = s.manifest(
        "fetch",
        "v1",
        &[Route {
            component: "fetch",
            image: &g.fetch,
            port: s.port,
            path: "/fetch",
            properties: "",
            outgoing: None,
        }],
    );
    host.deploy(&app);
    let (status, body) = get(&format!("http://127.0.0.1:{}/fetch?http://inner/", s.port));
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");
}
