//! What the end-to-end tests share: guests built from `examples/`, a real `weft up` process on
//! free loopback ports, and the real CLI pointed at it.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Paths of the example components, built once per test run with `weft build`.
pub struct Guests {
    pub hello: PathBuf,
    pub hello_py: PathBuf,
    pub misbehave: PathBuf,
    pub fetch: PathBuf,
    pub counter: PathBuf,
    pub blobs: PathBuf,
    pub messenger: PathBuf,
    pub relay: PathBuf,
    pub ticker: PathBuf,
    pub inbox: PathBuf,
    pub todo: PathBuf,
    pub tasks: PathBuf,
    pub harness: PathBuf,
    pub greet: PathBuf,
    pub greeter_py: PathBuf,
    pub calc: PathBuf,
}

pub fn guests() -> &'static Guests {
    static GUESTS: OnceLock<Guests> = OnceLock::new();
    GUESTS.get_or_init(|| {
        let build_with = |project: &str, args: &[&str]| -> PathBuf {
            let dir = repo().join("examples").join(project);
            let out = Command::new(WEFT)
                .arg("build")
                .arg(&dir)
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "weft build {project} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let built = dir.join("build").join(format!("{project}.wasm"));
            assert!(
                built.is_file(),
                "{} missing after weft build",
                built.display()
            );
            // A private copy: a test that rebuilds an example (a patched harness) cannot change
            // what the others deploy.
            let copy = private_dir().join(format!("{project}.wasm"));
            std::fs::copy(&built, &copy).unwrap();
            copy
        };
        let build = |project: &str| build_with(project, &[]);
        Guests {
            hello: build("hello"),
            misbehave: build("misbehave"),
            fetch: build("fetch"),
            counter: build("counter"),
            blobs: build("blobs"),
            messenger: build("messenger"),
            relay: build("relay"),
            ticker: build("ticker"),
            inbox: build("inbox"),
            todo: build("todo"),
            tasks: build("tasks"),
            harness: build("harness"),
            greet: build("greet"),
            greeter_py: build("greeter-py"),
            hello_py: build("hello-py"),
            calc: build("calc"),
        }
    })
}

/// Builds an example only some tests use (a JavaScript one takes componentize-js ~20 s) and
/// returns a private copy of it; built once per test process.
pub fn extra_guest(project: &str) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = built.iter().find(|(p, _)| p == project) {
        return path.clone();
    }
    let _ = guests();
    let dir = repo().join("examples").join(project);
    let out = Command::new(WEFT).arg("build").arg(&dir).output().unwrap();
    assert!(
        out.status.success(),
        "weft build {project} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = private_dir().join(format!("{project}.wasm"));
    std::fs::copy(dir.join("build").join(format!("{project}.wasm")), &copy).unwrap();
    built.push((project.to_string(), copy.clone()));
    copy
}

/// A directory that lives as long as the test process.
pub fn private_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// Builds the harness example stamped with `version`; returns a private copy of it.
pub fn harness_build(version: &str) -> PathBuf {
    stamped_build("harness", version)
}

/// Builds the harness example `project` (`harness`, `harness-p3`) stamped with `version`;
/// returns a private copy of it.
pub fn stamped_build(project: &str, version: &str) -> PathBuf {
    let _ = guests();
    let dir = repo().join("examples").join(project);
    let out = Command::new(WEFT)
        .arg("build")
        .arg(&dir)
        .env("WEFT_HARNESS_VERSION", version)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = private_dir().join(format!("{project}-{version}.wasm"));
    std::fs::copy(dir.join(format!("build/{project}.wasm")), &copy).unwrap();
    copy
}

/// A port nobody listens on right now, below Linux's ephemeral range (32768 and up) so that no
/// outgoing connection's local port takes it between now and the moment a host binds it.
/// Never the same port twice in one test process.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let port = 20_000 + (random % 12_000) as u16;
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
}

/// One HTTP-routed component, as a test writes it into a manifest.
pub struct Route<'a> {
    pub component: &'a str,
    pub image: &'a Path,
    pub port: u16,
    pub path: &'a str,
    /// Extra `properties` lines, e.g. `limits: { timeout: 1s }`.
    pub properties: &'a str,
    /// When set, a link granting outgoing HTTP to these `allowed_hosts`.
    pub outgoing: Option<&'a str>,
}

/// A manifest with one component per route, written to `dir/<name>-<version>.yaml`.
pub fn write_manifest(dir: &Path, name: &str, version: &str, routes: &[Route<'_>]) -> PathBuf {
    let mut text = format!(
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: {name}\n  annotations: {{ version: {version} }}\nspec:\n  components:\n"
    );
    for r in routes {
        text.push_str(&format!(
            "    - name: {}\n      type: component\n      properties:\n        image: {}\n",
            r.component,
            r.image.display()
        ));
        if !r.properties.is_empty() {
            text.push_str(&format!("        {}\n", r.properties));
        }
        if let Some(hosts) = r.outgoing {
            text.push_str(&format!(
                "      traits:\n        - type: link\n          properties:\n            target: {{ name: client }}\n            namespace: wasi\n            package: http\n            interfaces: [outgoing-handler]\n            source:\n              config: [{{ name: egress, properties: {{ allowed_hosts: \"{hosts}\" }} }}]\n"
            ));
        }
    }
    if routes.iter().any(|r| r.outgoing.is_some()) {
        text.push_str("    - name: client\n      type: capability\n      properties: { image: weft:http-client }\n");
    }
    text.push_str("    - name: http\n      type: capability\n      properties: { image: weft:http-server }\n      traits:\n");
    for r in routes {
        text.push_str(&format!(
            "        - type: link\n          properties:\n            target: {{ name: {} }}\n            namespace: wasi\n            package: http\n            interfaces: [incoming-handler]\n            source:\n              config: [{{ name: route, properties: {{ address: \"127.0.0.1:{}\", path: {} }} }}]\n",
            r.component, r.port, r.path
        ));
    }
    let path = dir.join(format!("{name}-{version}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Where a test writes its manifests and which port its apps listen on.
pub struct Scene {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Scene {
    /// A fresh manifest dir and a free port.
    pub fn new() -> Scene {
        Scene {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
        }
    }

    /// Writes a manifest for `routes` into this scene's dir.
    pub fn manifest(&self, name: &str, version: &str, routes: &[Route<'_>]) -> PathBuf {
        write_manifest(self.dir.path(), name, version, routes)
    }
}

/// A `weft up` process with its own state dir and control port; killed when dropped.
pub struct Host {
    pub state: tempfile::TempDir,
    child: Option<Child>,
    log: PathBuf,
    env: Vec<(String, String)>,
}

impl Host {
    /// Starts `weft up ARGS…` on a fresh state dir.
    pub fn start(args: &[&str]) -> Host {
        Host::start_with_env(args, &[])
    }

    /// Starts `weft up ARGS…` on a fresh state dir with `env` added to its environment.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Host {
        let state = tempfile::tempdir().unwrap();
        let mut host = Host {
            state,
            child: None,
            log: PathBuf::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        host.restart(args);
        host
    }

    /// Starts `weft up ARGS…` again on the same state dir (after `stop`).
    pub fn restart(&mut self, args: &[&str]) {
        assert!(self.child.is_none(), "stop the host first");
        let _ = std::fs::remove_file(self.state.path().join("control.json"));
        let n = std::fs::read_dir(self.state.path()).unwrap().count();
        self.log = self.state.path().join(format!("weft-{n}.log"));
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(WEFT)
            .arg("--state-dir")
            .arg(self.state.path())
            .arg("up")
            .args(["--control-addr", "127.0.0.1:0"])
            .args(args)
            .env("WEFT_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if self.state.path().join("control.json").exists()
                && self.cli(&["status"]).status.success()
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("weft up exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "weft up did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The host process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the host is not running").id()
    }

    /// The control API's address (`127.0.0.1:PORT`) and its bearer token.
    pub fn control(&self) -> (String, String) {
        let endpoint = std::fs::read_to_string(self.state.path().join("control.json")).unwrap();
        let endpoint: serde_json::Value = serde_json::from_str(&endpoint).unwrap();
        let url = endpoint["url"].as_str().unwrap();
        let token = std::fs::read_to_string(self.state.path().join("control-token")).unwrap();
        (
            url.trim_start_matches("http://").to_string(),
            token.trim().to_string(),
        )
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Stops the host the way Ctrl-C would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the process.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the host is not running");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Kills the process with SIGKILL, as a crash would; the state dir stays for `restart`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Everything the host has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs the CLI against this host.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(WEFT)
            .arg("--state-dir")
            .arg(self.state.path())
            .args(args)
            .env_remove("WEFT_URL")
            .env_remove("WEFT_TOKEN")
            .output()
            .unwrap()
    }

    /// Runs the CLI and insists it succeeds; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "weft {args:?} failed:\n{}\n--- host log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs the CLI and insists it fails; returns stderr.
    pub fn cli_err(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            !out.status.success(),
            "weft {args:?} should have failed but printed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// Deploys a manifest through the CLI; returns the outcome as JSON.
    pub fn deploy(&self, manifest: &Path) -> serde_json::Value {
        let out = self.cli_ok(&["app", "deploy", "--json", manifest.to_str().unwrap()]);
        serde_json::from_str(&out).unwrap()
    }

    /// The host's status as JSON.
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.cli_ok(&["status", "--json"])).unwrap()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A blocking HTTP client with a generous timeout.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// GET a URL; returns status and body.
pub fn get(url: &str) -> (u16, String) {
    let response = http()
        .get(url)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().unwrap())
}

/// A backing server (`redis-server`, `nats-server -js`, `postgres`) on a free loopback port, with
/// its data in a temp dir; killed when dropped, restartable on the same port.
pub struct Server {
    program: &'static str,
    /// The command that runs it, when not `program` itself (PostgreSQL as its own user).
    exec: Vec<String>,
    args: Vec<String>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Server {
    /// `redis-server` without persistence: a restart starts empty.
    pub fn redis() -> Server {
        Server::redis_with(&[])
    }

    /// `redis-server` that lets in only clients giving `password`.
    pub fn redis_requiring(password: &str) -> Server {
        Server::redis_with(&["--requirepass", password])
    }

    /// `redis-server` with `extra` arguments.
    pub fn redis_with(extra: &[&str]) -> Server {
        let port = free_port();
        let args = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ];
        Server::start(
            "redis-server",
            args.iter().chain(extra).map(|a| a.to_string()).collect(),
            port,
        )
    }

    /// `nats-server` with JetStream, its store in the server's temp dir.
    pub fn nats() -> Server {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let args = vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-js".into(),
            "-sd".into(),
            dir.path().display().to_string(),
        ];
        let mut server = Server::start("nats-server", args, port);
        server.dir = dir;
        server
    }

    /// Debian's `docker-registry` (distribution 2.8), its storage and access log in its dir.
    pub fn registry() -> Server {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{ level: info, accesslog: {{ disabled: false }} }}\n\
                 storage: {{ filesystem: {{ rootdirectory: {} }} }}\n\
                 http: {{ addr: 127.0.0.1:{port} }}\n",
                dir.path().join("storage").display()
            ),
        )
        .unwrap();
        let args = vec!["serve".to_string(), config.display().to_string()];
        let mut server = Server::start("docker-registry", args, port);
        server.dir = dir;
        server
    }

    /// Prometheus (Debian's `prometheus`) scraping `target` (`127.0.0.1:PORT`) every second,
    /// presenting the token in `token_file` as its bearer token.
    pub fn prometheus(target: &str, token_file: &Path) -> Server {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
                 scrape_configs:\n\
                 - job_name: weft\n\
                 \x20 authorization: {{ type: Bearer, credentials_file: {} }}\n\
                 \x20 static_configs: [{{ targets: [\"{target}\"] }}]\n",
                token_file.display()
            ),
        )
        .unwrap();
        let args = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ];
        let mut server = Server::start("prometheus", args, port);
        server.dir = dir;
        server
    }

    /// A PostgreSQL cluster of its own (`initdb`, then `postgres`), trusting local connections
    /// as user `postgres`; run as the `postgres` user when the tests run as root, as PostgreSQL
    /// refuses to run as root.
    pub fn postgres() -> Server {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is not installed (run scripts/setup.sh)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("postgres").is_file())
            .max()
            .expect("no PostgreSQL server binaries under /usr/lib/postgresql");
        let as_postgres: Vec<String> = if running_as_root() {
            let id = |flag: &str| -> u32 {
                let out = Command::new("id")
                    .args([flag, "postgres"])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
            };
            std::os::unix::fs::chown(dir.path(), Some(id("-u")), Some(id("-g"))).unwrap();
            [
                "setpriv",
                "--reuid=postgres",
                "--regid=postgres",
                "--clear-groups",
                "--",
            ]
            .map(String::from)
            .to_vec()
        } else {
            Vec::new()
        };
        let data = dir.path().join("data");
        let mut initdb = as_postgres.clone();
        initdb.push(bin.join("initdb").display().to_string());
        let initdb = Command::new(&initdb[0])
            .args(&initdb[1..])
            .args(["-D", &data.display().to_string(), "-U", "postgres"])
            .args(["--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let mut exec = as_postgres;
        exec.push(bin.join("postgres").display().to_string());
        let args = vec![
            "-D".to_string(),
            data.display().to_string(),
            "-p".into(),
            port.to_string(),
            "-k".into(),
            dir.path().display().to_string(),
            "-c".into(),
            "listen_addresses=127.0.0.1".into(),
            "-c".into(),
            "fsync=off".into(),
        ];
        let mut server = Server {
            program: "postgres",
            exec,
            args,
            port,
            dir,
            child: None,
        };
        server.restart();
        server
    }

    /// What the server wrote to stdout and stderr (for a registry: its access log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        std::env::temp_dir().join(format!("weft-test-{}-{}.log", self.program, self.port))
    }

    fn start(program: &'static str, args: Vec<String>, port: u16) -> Server {
        let mut server = Server {
            program,
            exec: vec![program.to_string()],
            args,
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        server.restart();
        server
    }

    /// `redis://…`, `nats://…` or `postgres://…` for this server.
    pub fn url(&self) -> String {
        match self.program {
            "redis-server" => format!("redis://127.0.0.1:{}", self.port),
            "postgres" => format!("postgres://postgres@127.0.0.1:{}/postgres", self.port),
            _ => format!("nats://127.0.0.1:{}", self.port),
        }
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "kill the server first");
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(&self.exec[0])
            .args(&self.exec[1..])
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {} (run scripts/setup.sh): {e}", self.program)
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{} did not start:\n{}",
                self.program,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server outright, as a crash would; PostgreSQL gets a fast shutdown instead
    /// (SIGINT), so that it can start again on the same data.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.program == "postgres" {
                let _ = Command::new("kill")
                    .args(["-INT", &child.id().to_string()])
                    .status();
                let deadline = Instant::now() + Duration::from_secs(20);
                while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(self.log_path());
    }
}

/// The http-server node of a manifest, routing `path` on `port` to `target`.
pub fn http_server(target: &str, port: u16, path: &str) -> String {
    http_routes(port, &[(target, "incoming-handler", path)])
}

/// The http-server node of a manifest with one route on `port` per `(target, interface, path)`;
/// the interface is the target's export: `incoming-handler` (WASI 0.2) or `handler` (0.3).
pub fn http_routes(port: u16, routes: &[(&str, &str, &str)]) -> String {
    let mut node = String::from(
        "    - name: http\n      type: capability\n      properties: { image: weft:http-server }\n      traits:\n",
    );
    for (target, interface, path) in routes {
        node.push_str(&format!(
            r#"        - type: link
          properties:
            target: {{ name: {target} }}
            namespace: wasi
            package: http
            interfaces: [{interface}]
            source: {{ config: [{{ name: r, properties: {{ address: "127.0.0.1:{port}", path: {path} }} }}] }}
"#
        ));
    }
    node
}

/// The component node of the platform harness (`examples/harness`), its `platform-token`
/// secret granted, linked to the component `inner` of the same app.
pub fn harness_node(inner: &str) -> String {
    format!(
        r#"    - name: harness
      type: component
      properties:
        image: {harness}
        secrets: [{{ name: token, properties: {{ key: platform-token }} }}]
      traits:
        - type: link
          properties: {{ name: inner, target: {{ name: {inner} }}, namespace: wasi, package: http, interfaces: [incoming-handler] }}
"#,
        harness = guests().harness.display(),
    )
}

/// Writes `yaml` as `<name>.yaml` in `dir`.
pub fn write_yaml(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    file
}

/// A route to `component` with no extra properties.
pub fn route<'a>(component: &'a str, image: &'a Path, port: u16, path: &'a str) -> Route<'a> {
    Route {
        component,
        image,
        port,
        path,
        properties: "",
        outgoing: None,
    }
}

/// Sets a secret through the CLI, the value on standard input; returns what the CLI printed.
pub fn put_secret(host: &Host, key: &str, value: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new(WEFT)
        .arg("--state-dir")
        .arg(host.state.path())
        .args(["secret", "put", key])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(value.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
            {
                found.push(path);
            }
        }
    }
    found
}

/// Whether the tests run as root.
fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// The ticker on `every` (or a `cron:` when `every` starts with `cron:`), counting in `kv`.
pub fn ticker_app(s: &Scene, app: &str, when: &str, kv: &str) -> PathBuf {
    let image = guests().ticker.display().to_string();
    let when = match when.strip_prefix("cron:") {
        Some(cron) => format!("cron: \"{cron}\""),
        None => format!("every: {when}"),
    };
    let yaml = format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {{ name: {app} }}
spec:
  components:
    - name: ticker
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
    - name: clock
      type: capability
      properties: {{ image: weft:schedule }}
      traits:
        - type: link
          properties:
            target: {{ name: ticker }}
            namespace: weft
            package: schedule
            interfaces: [handler]
            source: {{ config: [{{ name: when, properties: {{ {when} }} }}] }}
{http}"#,
        http = http_server("ticker", s.port, &format!("/{app}")),
    );
    write_yaml(s.dir.path(), app, &yaml)
}

/// Polls `check` every 200 ms until it gives a value; panics naming `what` after `within`.
pub fn wait_until<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `nats-server -c` running `config` (given its port and JetStream store dir), with the config
/// file in the server's dir.
pub fn nats_configured(config: impl FnOnce(u16, &Path) -> String) -> Server {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nats.conf");
    std::fs::write(&file, config(port, &dir.path().join("js"))).unwrap();
    let mut server = Server::start(
        "nats-server",
        vec!["-c".into(), file.display().to_string()],
        port,
    );
    server.dir = dir;
    server
}

/// A manifest serving the counter component at `path`, its key-value link's config `kv` (the
/// properties inside the braces, e.g. `backend: redis, url: "…"`), its `token` secret granted
/// from the key `<app>-token`.
pub fn counter_app_on(dir: &Path, app: &str, port: u16, path: &str, kv: &str) -> PathBuf {
    let image = guests().counter.display().to_string();
    let yaml = format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {{ name: {app}, annotations: {{ version: v1 }} }}
spec:
  components:
    - name: counter
      type: component
      properties:
        image: {image}
        secrets: [{{ name: token, properties: {{ key: {app}-token }} }}]
      traits:
        - type: link
          properties: {{ target: {{ name: kv }}, namespace: wasi, package: keyvalue, interfaces: [store, atomics] }}
    - name: kv
      type: capability
      properties:
        image: weft:keyvalue
        config: [{{ name: kv, properties: {{ {kv} }} }}]
{http}"#,
        http = http_server("counter", port, path),
    );
    write_yaml(dir, app, &yaml)
}

/// What a load thread saw: requests answered, failures, harness versions.
pub type Seen = (u64, Vec<String>, BTreeSet<String>);

/// Requests to `/app-{i}/` of `apps` apps, round robin from 4 threads with a bearer token, until
/// stopped: what a fleet of apps sees while its harness is patched.
pub struct FleetLoad {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Seen>>,
}

impl FleetLoad {
    /// Starts the 4 threads against `port`.
    pub fn start(port: u16, apps: usize, token: &str) -> FleetLoad {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..4)
            .map(|t| {
                let stop = stop.clone();
                let token = token.to_string();
                std::thread::spawn(move || {
                    let client = http();
                    let (mut ok, mut failed, mut seen) = (0u64, Vec::new(), BTreeSet::new());
                    let mut i = t;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let app = i % apps;
                        let result = client
                            .get(format!("http://127.0.0.1:{port}/app-{app}/"))
                            .bearer_auth(&token)
                            .send();
                        match result {
                            Ok(r) if r.status().is_success() => {
                                seen.insert(
                                    r.headers()["x-harness-version"]
                                        .to_str()
                                        .unwrap()
                                        .to_string(),
                                );
                                ok += 1;
                            }
                            Ok(r) => failed.push(format!(
                                "app-{app}: {} {}",
                                r.status(),
                                r.text().unwrap_or_default()
                            )),
                            Err(e) => failed.push(format!("app-{app}: {e}")),
                        }
                        i += 4;
                    }
                    (ok, failed, seen)
                })
            })
            .collect();
        FleetLoad { stop, threads }
    }

    /// Stops the threads; returns the requests answered, the failures and the harness versions
    /// seen.
    pub fn stop(self) -> Seen {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (mut ok, mut failed, mut seen) = (0, Vec::new(), BTreeSet::new());
        for thread in self.threads {
            let (n, f, s) = thread.join().unwrap();
            ok += n;
            failed.extend(f);
            seen.extend(s);
        }
        (ok, failed, seen)
    }
}

/// The platform app: it owns the harness (its image and its secret), and serves nothing itself.
pub fn platform_app(dir: &Path, version: &str, harness: &Path) -> PathBuf {
    let yaml = format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {{ name: platform, annotations: {{ version: {version} }} }}
spec:
  components:
    - name: harness
      type: component
      properties:
        image: {}
        secrets: [{{ name: token, properties: {{ key: platform-token }} }}]
"#,
        harness.display()
    );
    let file = dir.join(format!("platform-{version}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    file
}

/// An app whose route goes through the platform's shared harness to its own component `inner`
/// (image `inner`), linked by `interface` (`incoming-handler` for the 0.2 harness, `handler`
/// for the 0.3 middleware).
pub fn dependent_app(dir: &Path, app: &str, port: u16, inner: &Path, interface: &str) -> PathBuf {
    let yaml = format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {{ name: {app} }}
spec:
  components:
    - name: harness
      type: component
      properties: {{ application: {{ name: platform, component: harness }} }}
      traits:
        - type: link
          properties: {{ name: inner, target: {{ name: hello }}, namespace: wasi, package: http, interfaces: [{interface}] }}
    - name: hello
      type: component
      properties: {{ image: {} }}
{http}"#,
        inner.display(),
        http = http_server("harness", port, &format!("/{app}")),
    );
    write_yaml(dir, app, &yaml)
}
