//! The developer loop as a user runs it: `weft new` from each template, then `weft dev` in the
//! project, which builds it, starts a host, deploys and serves it, and redeploys on every save.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{free_port, http, repo, WEFT};

/// A `weft dev` process in a project, with its own state dir and ports; stopped when dropped.
struct Dev {
    child: Child,
    log: PathBuf,
    http: u16,
    _state: tempfile::TempDir,
}

impl Dev {
    fn start(project: &Path) -> Dev {
        let state = tempfile::tempdir().unwrap();
        let log = state.path().join("dev.log");
        let http = free_port();
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(WEFT)
            .arg("--state-dir")
            .arg(state.path())
            .arg("dev")
            .arg(project)
            .args(["--control-addr", &format!("127.0.0.1:{}", free_port())])
            .args(["--http", &format!("127.0.0.1:{http}")])
            // Standalone projects share the examples' target dir, so std for wasm is not
            // built again for every template.
            .env("WEFT_CARGO_TARGET_DIR", repo().join("examples/target"))
            .env_remove("WEFT_URL")
            .env_remove("WEFT_TOKEN")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Dev {
            child,
            log,
            http,
            _state: state,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    /// Waits until `path` answers 200 with a body containing `text`.
    fn wait_for(&mut self, method: &str, path: &str, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let request = match method {
                "POST" => http().post(self.url(path)),
                _ => http().get(self.url(path)),
            };
            if let Ok(response) = request.send() {
                if response.status() == 200 {
                    let body = response.text().unwrap_or_default();
                    if body.contains(text) {
                        return body;
                    }
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("weft dev exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{path} never answered `{text}`:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the log holds `text` `times` times.
    fn wait_log(&self, text: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(300);
        while self.log().matches(text).count() < times {
            assert!(
                Instant::now() < deadline,
                "`{text}` never logged {times} time(s):\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops it as Ctrl-C would and insists it exits cleanly.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "weft dev exited with {status}:\n{}",
                    self.log()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Ctrl-C did not stop weft dev:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn new_project(dir: &Path, template: &str, name: &str) -> PathBuf {
    let out = Command::new(WEFT)
        .current_dir(dir)
        .args(["new", template, name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("weft dev"), "{text}");
    dir.join(name)
}

#[test]
fn every_template_serves_its_first_request_under_weft_dev_with_no_edit() {
    // The examples build std for wasm once, in the target dir the projects share.
    let _ = support::guests();
    let list = Command::new(WEFT).args(["new", "--list"]).output().unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for template in [
        "rust-http",
        "python-http",
        "js-http",
        "go-http",
        "rust-keyvalue",
    ] {
        assert!(list.contains(template), "{list}");
        let name = format!("my-{template}");
        let project = new_project(dir.path(), template, &name);
        let mut dev = Dev::start(&project);
        match template {
            "rust-harness" => {
                dev.wait_for(
                    "GET",
                    &format!("/{name}"),
                    &format!("Hello from {name}'s app!"),
                );
                let response = http().get(dev.url(&format!("/{name}"))).send().unwrap();
                let harness = response.headers()["x-harness"]
                    .to_str()
                    .unwrap()
                    .to_string();
                assert_eq!(harness, name);
            }
            "rust-keyvalue" => {
                dev.wait_for("POST", &format!("/{name}/visits"), "1");
                let (_, body) = support::get(&dev.url(&format!("/{name}/visits")));
                assert_eq!(body.trim(), "1");
            }
            _ => {
                dev.wait_for("GET", &format!("/{name}"), &format!("Hello from {name}!"));
            }
        }
        assert!(dev.log().contains("-dev."), "{}", dev.log());
        dev.stop();
    }
}

#[test]
fn a_save_switches_the_app_a_broken_save_keeps_it_and_no_request_fails() {
    let _ = support::guests();
    let dir = tempfile::tempdir().unwrap();
    let project = new_project(dir.path(), "rust-http", "loop");
    let source = project.join("src/lib.rs");
    let mut dev = Dev::start(&project);
    dev.wait_for("GET", "/loop", "Hello from loop!");

    // A client hitting the app throughout, counting anything but a 200.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let client = {
        let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
        let url = dev.url("/loop");
        std::thread::spawn(move || {
            let client = http();
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send() {
                    Ok(r) if r.status() == 200 => {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        failures.push(format!("{other:?}"));
                    }
                }
            }
            failures
        })
    };

    let edit = |from: &str, to: &str| {
        let text = std::fs::read_to_string(&source).unwrap();
        assert!(text.contains(from), "{from} not in the source");
        std::fs::write(&source, text.replace(from, to)).unwrap();
    };
    edit("Hello from loop!", "Howdy from loop!");
    dev.wait_for("GET", "/loop", "Howdy from loop!");

    // Broken: the compiler's error is printed and the last good version keeps answering.
    edit("let path = ", "let path: u32 = ");
    dev.wait_log("the previous version keeps serving", 1);
    assert!(
        dev.log().contains("error[E0308]: mismatched types"),
        "{}",
        dev.log()
    );
    let (status, body) = support::get(&dev.url("/loop"));
    assert_eq!((status, body.contains("Howdy from loop!")), (200, true));

    // Fixed, with new text: it switches.
    edit("let path: u32 = ", "let path = ");
    edit("Howdy from loop!", "Greetings from loop!");
    dev.wait_for("GET", "/loop", "Greetings from loop!");

    stop.store(true, Ordering::Relaxed);
    let failures = client.join().unwrap();
    assert!(served.load(Ordering::Relaxed) > 10, "the client barely ran");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests: {failures:?}"
    );
    dev.stop();
}

#[test]
fn a_manifest_s_own_build_command_serves_any_toolchain_under_weft_dev() {
    // The "toolchain" here is a shell command that copies whichever component `which.txt`
    // names: what any compiler's command line does, as far as weft can tell.
    let guests = support::guests();
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("custom");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("which.txt"),
        guests.hello.display().to_string(),
    )
    .unwrap();
    let manifest = "apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: custom
spec:
  components:
    - name: custom
      type: component
      properties:
        image: ./out/custom.wasm
        build:
          command: mkdir -p ../out && cp \"$(cat which.txt)\" ../out/custom.wasm
          workdir: src
    - name: http
      type: capability
      properties: { image: weft:http-server }
      traits:
        - type: link
          properties:
            target: { name: custom }
            namespace: wasi
            package: http
            interfaces: [incoming-handler]
            source:
              config: [{ name: route, properties: { address: \"127.0.0.1:8080\", path: /custom } }]
";
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::rename(project.join("which.txt"), project.join("src/which.txt")).unwrap();
    std::fs::write(project.join("app.yaml"), manifest).unwrap();

    let validated = Command::new(WEFT)
        .args(["app", "validate"])
        .arg(project.join("app.yaml"))
        .output()
        .unwrap();
    // Not built yet: valid, with a note that the image is missing.
    assert!(
        validated.status.success(),
        "{}",
        String::from_utf8_lossy(&validated.stderr)
    );

    let mut dev = Dev::start(&project);
    dev.wait_for("GET", "/custom", "Hello from Rust!");
    // A save changes what the command produces: the next build serves the other component.
    std::fs::write(
        project.join("src/which.txt"),
        guests.hello_py.display().to_string(),
    )
    .unwrap();
    dev.wait_for("GET", "/custom", "Hello from Python!");
    // A command that fails prints its output; the running version stays.
    std::fs::write(project.join("src/which.txt"), "/nonexistent/x.wasm").unwrap();
    dev.wait_log("the previous version keeps serving", 1);
    assert!(dev.log().contains("/nonexistent/x.wasm"), "{}", dev.log());
    let (status, body) = support::get(&dev.url("/custom"));
    assert_eq!((status, body.contains("Hello from Python!")), (200, true));
    dev.stop();

    // A build step must say what to run, inside the project.
    for (build, expected) in [
        ("{ workdir: src }", "properties.build.command"),
        (
            "{ command: make, workdir: ../elsewhere }",
            "inside the manifest's directory",
        ),
    ] {
        let bad = manifest.replace(
            "build:\n          command: mkdir -p ../out && cp \"$(cat which.txt)\" ../out/custom.wasm\n          workdir: src",
            &format!("build: {build}"),
        );
        assert_ne!(bad, manifest);
        std::fs::write(project.join("bad.yaml"), bad).unwrap();
        let out = Command::new(WEFT)
            .args(["app", "validate"])
            .arg(project.join("bad.yaml"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains(expected), "{e}");
    }
}
