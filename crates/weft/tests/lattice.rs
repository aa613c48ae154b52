//! End-to-end tests of the lattice: a real `nats-server -js` and three `weft up --nats` host
//! processes on loopback, each serving every route on its own port; hosts killed with SIGKILL.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::*;

/// A lattice of hosts sharing one NATS server; each host has its own HTTP port.
struct Lattice {
    nats: Server,
    hosts: BTreeMap<String, (Host, u16, String)>,
    scene: Scene,
}

impl Lattice {
    /// `hosts`: (id, zone) of each host to start.
    fn start(hosts: &[(&str, &str)]) -> Lattice {
        let mut lattice = Lattice {
            nats: Server::nats(),
            hosts: BTreeMap::new(),
            scene: Scene::new(),
        };
        for (id, zone) in hosts {
            lattice.add(id, zone);
        }
        lattice.wait_for_hosts(hosts.len());
        lattice
    }

    fn args(&self, id: &str, zone: &str, port: u16) -> Vec<String> {
        vec![
            "--nats".into(),
            self.nats.url(),
            "--lattice".into(),
            "test".into(),
            "--label".into(),
            format!("zone={zone}"),
            "--host-id".into(),
            id.into(),
            "--http".into(),
            format!("127.0.0.1:{port}"),
        ]
    }

    fn add(&mut self, id: &str, zone: &str) {
        let port = free_port();
        let args = self.args(id, zone, port);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let host = Host::start(&argv);
        self.hosts.insert(id.into(), (host, port, zone.into()));
    }

    fn host(&self, id: &str) -> &Host {
        &self.hosts[id].0
    }

    /// Any host still running, to drive the CLI through.
    fn any(&mut self) -> &Host {
        let id = self
            .hosts
            .iter_mut()
            .find_map(|(id, (h, _, _))| h.is_running().then(|| id.clone()))
            .expect("no host is running");
        &self.hosts[&id].0
    }

    fn url(&self, id: &str, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.hosts[id].1)
    }

    /// SIGKILL: no lease release, no goodbye, as a crash.
    fn kill(&mut self, id: &str) {
        self.hosts.get_mut(id).unwrap().0.kill();
    }

    /// Starts host `id` again on its state dir (same identity) and port.
    fn restart(&mut self, id: &str) {
        let (_, port, zone) = &self.hosts[id];
        let args = self.args(id, &zone.clone(), *port);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        self.hosts.get_mut(id).unwrap().0.restart(&argv);
    }

    fn hosts_json(&mut self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.any().cli_ok(&["get", "hosts", "--json"])).unwrap()
    }

    fn wait_for_hosts(&mut self, n: usize) {
        wait_until(
            Duration::from_secs(30),
            "every host to hear every other",
            || {
                let hosts = self.hosts_json();
                (hosts.iter().filter(|h| h["alive"] == true).count() == n).then_some(())
            },
        );
    }

    fn status(&mut self, app: &str) -> serde_json::Value {
        serde_json::from_str(&self.any().cli_ok(&["app", "status", app, "--json"])).unwrap()
    }

    /// Waits until `app` is in `phase`; returns its status.
    fn wait_phase(&mut self, app: &str, phase: &str, within: Duration) -> serde_json::Value {
        wait_until(within, &format!("app `{app}` to be {phase}"), || {
            let status = self.status(app);
            (status["phase"] == phase).then_some(status)
        })
    }

    fn leader(&mut self) -> Option<String> {
        self.hosts_json()
            .into_iter()
            .find(|h| h["leader"] == true && h["alive"] == true)
            .map(|h| h["id"].as_str().unwrap().to_string())
    }

    /// An app of one component `name` routed at `/name`; `props` is added to its properties,
    /// `scaler` and `extra` to its traits (`extra` may go on to add nodes).
    fn manifest(
        &self,
        name: &str,
        image: &Path,
        props: &str,
        scaler: &str,
        extra: &str,
    ) -> PathBuf {
        let image = image.display();
        let yaml = format!(
            r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {{ name: {name}, annotations: {{ version: v1 }} }}
spec:
  components:
    - name: {name}
      type: component
      properties: {{ image: {image}{props} }}
{traits}{scaler}
{extra}
{http}"#,
            traits = if scaler.is_empty() && extra.is_empty() {
                ""
            } else {
                "      traits:\n"
            },
            http = http_server(name, self.scene.port, &format!("/{name}")),
        );
        write_yaml(self.scene.dir.path(), name, &yaml)
    }
}

/// The instance caps each host runs `app` with, from `weft get inventory`.
fn caps(lattice: &mut Lattice, app: &str) -> BTreeMap<String, u64> {
    let hosts: Vec<serde_json::Value> =
        serde_json::from_str(&lattice.any().cli_ok(&["get", "inventory", "--json"])).unwrap();
    hosts
        .iter()
        .filter(|h| h["alive"] == true)
        .filter_map(|h| {
            let running = h["apps"]
                .as_array()?
                .iter()
                .find(|a| a["app"] == app && a["phase"] == "deployed")?;
            let cap = running["components"][0]["max_instances"].as_u64()?;
            Some((h["id"].as_str()?.to_string(), cap))
        })
        .collect()
}

const SPREAD_2_TO_1: &str = "        - type: spreadscaler
          properties:
            instances: 3
            spread:
              - { name: east, requirements: { zone: a }, weight: 2 }
              - { name: west, requirements: { zone: b }, weight: 1 }";

#[test]
fn an_app_spread_two_to_one_lands_two_to_one_and_every_host_serves_it() {
    let mut lattice = Lattice::start(&[("h1", "a"), ("h2", "b"), ("h3", "b")]);
    let app = lattice.manifest("spread", &guests().hello, "", SPREAD_2_TO_1, "");
    let out = lattice
        .host("h2")
        .cli_ok(&["app", "deploy", app.to_str().unwrap()]);
    assert!(out.contains("deployed spread v1"), "{out}");
    let status = lattice.wait_phase("spread", "deployed", Duration::from_secs(30));
    assert_eq!(status["hosts"], serde_json::json!({ "h1": 2, "h2": 1 }));

    // What each host reports running: zone a holds two instances, zone b one, h3 none.
    let caps = wait_until(Duration::from_secs(10), "inventory to settle", || {
        let caps = caps(&mut lattice, "spread");
        (caps.len() == 2).then_some(caps)
    });
    assert_eq!(caps, [("h1".into(), 2), ("h2".into(), 1)].into());

    // A request entering any host reaches the app, h3 forwarding over NATS.
    for id in ["h1", "h2", "h3"] {
        let (status, body) = get(&lattice.url(id, "/spread"));
        assert_eq!(status, 200, "via {id}: {body}");
        assert!(body.contains("Hello from Rust"), "via {id}: {body}");
    }
    let text = lattice.host("h3").cli_ok(&["get", "inventory", "h3"]);
    assert!(text.contains("no apps"), "{text}");

    // A requirement no host meets: Waiting, naming it, never an endless "reconciling".
    let gpu = lattice.manifest(
        "gpu",
        &guests().hello,
        "",
        "        - type: spreadscaler
          properties:
            instances: 1
            spread: [{ name: gpus, requirements: { gpu: \"yes\" } }]",
        "",
    );
    lattice
        .host("h1")
        .cli_ok(&["app", "deploy", gpu.to_str().unwrap()]);
    let status = lattice.wait_phase("gpu", "waiting", Duration::from_secs(15));
    let reason = status["reason"].as_str().unwrap();
    assert!(reason.contains("gpu=yes"), "{reason}");
    let (code, body) = get(&lattice.url("h1", "/gpu"));
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("gpu"), "{body}");

    // Undeploy reaches every host: the route is gone everywhere.
    lattice.host("h3").cli_ok(&["app", "undeploy", "spread"]);
    wait_until(Duration::from_secs(15), "the route to go", || {
        let gone = ["h1", "h2", "h3"]
            .iter()
            .all(|id| get(&lattice.url(id, "/spread")).0 == 404);
        gone.then_some(())
    });
}

#[test]
fn a_killed_host_s_app_runs_elsewhere_within_ten_seconds_and_a_killed_leader_is_replaced() {
    let mut lattice = Lattice::start(&[("h1", "a"), ("h2", "a"), ("h3", "b")]);
    let pinned = lattice.manifest(
        "pinned",
        &guests().hello,
        "",
        "        - type: spreadscaler
          properties:
            instances: 1
            spread: [{ name: east, requirements: { zone: a } }]",
        "",
    );
    lattice
        .host("h3")
        .cli_ok(&["app", "deploy", pinned.to_str().unwrap()]);
    let status = lattice.wait_phase("pinned", "deployed", Duration::from_secs(30));
    let running: Vec<String> = status["hosts"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(running.len(), 1, "{status}");
    let victim = running[0].clone();
    let survivor = if victim == "h1" { "h2" } else { "h1" };
    assert_eq!(get(&lattice.url("h3", "/pinned")).0, 200);

    lattice.kill(&victim);
    let killed = Instant::now();
    wait_until(Duration::from_secs(10), "requests to succeed again", || {
        (get(&lattice.url("h3", "/pinned")).0 == 200).then_some(())
    });
    let moved_in = killed.elapsed();
    assert!(moved_in < Duration::from_secs(10), "took {moved_in:?}");
    let status = lattice.wait_phase("pinned", "deployed", Duration::from_secs(5));
    assert_eq!(status["hosts"], serde_json::json!({ survivor: 1 }));
    let events = status["events"].to_string();
    assert!(
        events.contains(&format!("host {victim} lost"))
            && events.contains(&format!("moved from {victim} to {survivor}")),
        "{events}"
    );
    let hosts = lattice.hosts_json();
    let dead = hosts.iter().find(|h| h["id"] == victim.as_str()).unwrap();
    assert_eq!(dead["alive"], false, "{dead}");

    // The same identity rejoins cleanly: one entry, alive, and it is placed on again.
    lattice.restart(&victim);
    lattice.wait_for_hosts(3);
    let hosts = lattice.hosts_json();
    assert_eq!(hosts.len(), 3, "{hosts:?}");
    wait_until(
        Duration::from_secs(10),
        "the restarted host to serve",
        || (get(&lattice.url(&victim, "/pinned")).0 == 200).then_some(()),
    );

    // Kill the leader: another host takes the lease within its TTL and keeps reconciling.
    let leader = wait_until(Duration::from_secs(10), "a leader", || lattice.leader());
    lattice.kill(&leader);
    let killed = Instant::now();
    let next = wait_until(Duration::from_secs(10), "a new leader", || {
        lattice.leader().filter(|l| *l != leader)
    });
    let took = killed.elapsed();
    // The lease's TTL is 5 s; a follower tries every half second.
    assert!(
        took < Duration::from_secs(7),
        "{next} took over after {took:?}"
    );
    let fresh = lattice.manifest("fresh", &guests().hello, "", "", "");
    lattice
        .any()
        .cli_ok(&["app", "deploy", fresh.to_str().unwrap()]);
    lattice.wait_phase("fresh", "deployed", Duration::from_secs(15));
    let entry = lattice
        .hosts
        .keys()
        .find(|id| **id != leader)
        .unwrap()
        .clone();
    assert_eq!(get(&lattice.url(&entry, "/fresh")).0, 200);
    let status = lattice.wait_phase("pinned", "deployed", Duration::from_secs(10));
    assert!(
        !status["hosts"].as_object().unwrap().contains_key(&leader),
        "{status}"
    );
}

#[test]
fn no_acknowledged_counter_write_is_lost_across_a_host_kill() {
    let mut lattice = Lattice::start(&[("h1", "a"), ("h2", "a"), ("h3", "b")]);
    let kv = format!(
        "        - type: link
          properties: {{ target: {{ name: kv }}, namespace: wasi, package: keyvalue, interfaces: [store, atomics] }}
    - name: kv
      type: capability
      properties:
        image: weft:keyvalue
        config: [{{ name: kv, properties: {{ backend: nats, url: \"{}\" }} }}]",
        lattice.nats.url()
    );
    let counter = lattice.manifest(
        "counter",
        &guests().counter,
        ", secrets: [{ name: token, properties: { key: counter-token } }]",
        "        - type: spreadscaler
          properties:
            instances: 2
            spread: [{ name: east, requirements: { zone: a } }]",
        &kv,
    );
    lattice
        .host("h3")
        .cli_ok(&["app", "deploy", counter.to_str().unwrap()]);
    let status = lattice.wait_phase("counter", "deployed", Duration::from_secs(30));
    assert_eq!(status["hosts"], serde_json::json!({ "h1": 1, "h2": 1 }));

    // Four clients count through h3 (which forwards to h1 and h2) while h1 is killed.
    let url = lattice.url("h3", "/counter/hits");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let client = http();
                let (mut acked, mut failed) = (0u64, 0u64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match client.post(&url).send() {
                        Ok(r) if r.status().is_success() => acked += 1,
                        _ => failed += 1,
                    }
                }
                (acked, failed)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    lattice.kill("h1");
    std::thread::sleep(Duration::from_secs(8));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, failed) = clients
        .into_iter()
        .map(|t| t.join().unwrap())
        .fold((0, 0), |(a, f), (x, y)| (a + x, f + y));
    assert!(acked > 50, "only {acked} increments were acknowledged");

    let (code, body) = get(&url);
    assert_eq!(code, 200, "{body}");
    let count: u64 = body.trim().parse().unwrap();
    // Every acknowledged increment is there; an unacknowledged one may or may not be.
    assert!(
        count >= acked && count <= acked + failed,
        "count {count}, acknowledged {acked}, failed {failed}"
    );
    let status = lattice.wait_phase("counter", "deployed", Duration::from_secs(10));
    assert_eq!(status["hosts"], serde_json::json!({ "h2": 2 }));
}

#[test]
fn a_link_to_another_app_s_component_on_another_host_is_called_over_nats() {
    let mut lattice = Lattice::start(&[("h1", "a"), ("h2", "c"), ("h3", "b")]);
    let greeter = lattice.manifest(
        "greeter",
        &guests().greeter_py,
        "",
        "        - type: spreadscaler
          properties: { instances: 2, spread: [{ name: a, requirements: { zone: a } }] }",
        "",
    );
    let greeter_text = std::fs::read_to_string(&greeter).unwrap();
    // The greeter has no route: other apps call it.
    let cut = greeter_text.find("    - name: http").unwrap();
    std::fs::write(&greeter, &greeter_text[..cut]).unwrap();
    lattice
        .host("h1")
        .cli_ok(&["app", "deploy", greeter.to_str().unwrap()]);
    let greet = lattice.manifest(
        "greet",
        &guests().greet,
        "",
        "        - type: spreadscaler
          properties: { instances: 2, spread: [{ name: b, requirements: { zone: b } }] }
        - type: link
          properties: { target: { name: greeter }, namespace: weft, package: greet, interfaces: [greeter] }
    - name: greeter
      type: component
      properties: { application: { name: greeter, component: greeter } }",
        "",
    );
    lattice
        .host("h2")
        .cli_ok(&["app", "deploy", greet.to_str().unwrap()]);
    lattice.wait_phase("greeter", "deployed", Duration::from_secs(60));
    let status = lattice.wait_phase("greet", "deployed", Duration::from_secs(30));
    assert_eq!(status["hosts"], serde_json::json!({ "h3": 2 }));

    // h2 runs neither app: its request goes to h3 (greet), whose call goes to h1 (greeter).
    let (code, body) = get(&lattice.url("h2", "/greet?name=Ada&tags=x,y"));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("Hello, Ada! (from Python)"), "{body}");
    assert!(body.contains("tags: X,Y"), "{body}");

    // Without the greeter anywhere the call fails with a reason, and greet keeps serving.
    lattice.host("h1").cli_ok(&["app", "undeploy", "greeter"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (code, body) = loop {
        let (code, body) = get(&lattice.url("h3", "/greet?name=Ada"));
        if code == 500 || Instant::now() > deadline {
            break (code, body);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(code, 500, "the greeter did not go: {body}");
    assert!(body.contains("greeter"), "{body}");
}

#[test]
fn a_leader_paused_past_its_lease_steps_down_and_cannot_overwrite_the_placements() {
    let mut lattice = Lattice::start(&[("h1", "a"), ("h2", "a"), ("h3", "b")]);
    let stale = wait_until(Duration::from_secs(15), "a leader", || lattice.leader());
    let other = lattice
        .hosts
        .keys()
        .find(|id| **id != stale)
        .unwrap()
        .clone();

    // Paused, the leader neither renews its lease nor sends heartbeats: another host takes over.
    lattice.host(&stale).signal("STOP");
    let next = wait_until(Duration::from_secs(15), "another leader", || {
        let hosts: Vec<serde_json::Value> =
            serde_json::from_str(&lattice.host(&other).cli_ok(&["get", "hosts", "--json"]))
                .unwrap();
        hosts
            .iter()
            .find(|h| h["leader"] == true && h["alive"] == true && h["id"] != stale.as_str())
            .map(|h| h["id"].as_str().unwrap().to_string())
    });
    // The new leader places an app the paused one never saw.
    let app = lattice.manifest("late", &guests().hello, "", "", "");
    lattice
        .host(&other)
        .cli_ok(&["app", "deploy", app.to_str().unwrap()]);
    let placed = wait_until(Duration::from_secs(20), "the new app placed", || {
        let status: serde_json::Value = serde_json::from_str(
            &lattice
                .host(&other)
                .cli_ok(&["app", "status", "late", "--json"]),
        )
        .unwrap();
        (status["phase"] == "deployed").then_some(status["hosts"].clone())
    });

    // Woken, the stale leader finds the lease gone and steps down; whatever it had in flight
    // cannot replace the placements, so the new app stays placed.
    lattice.host(&stale).signal("CONT");
    wait_until(
        Duration::from_secs(10),
        "the stale leader to step down",
        || {
            let log = lattice.host(&stale).log();
            (log.contains("lost the leader lease") || log.contains("compare-and-set failed"))
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    let hosts = lattice.hosts_json();
    let leaders: Vec<&str> = hosts
        .iter()
        .filter(|h| h["leader"] == true && h["alive"] == true)
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert_eq!(leaders, [next.as_str()], "{hosts:?}");
    let status: serde_json::Value =
        serde_json::from_str(&lattice.host(&stale).cli_ok(&["status", "--json"])).unwrap();
    assert_eq!(status["lattice"]["leader"], next.as_str(), "{status}");
    let late: serde_json::Value = serde_json::from_str(
        &lattice
            .host(&stale)
            .cli_ok(&["app", "status", "late", "--json"]),
    )
    .unwrap();
    assert_eq!(late["phase"], "deployed", "{late}");
    assert!(!placed.as_object().unwrap().is_empty(), "{placed}");
    assert!(!late["hosts"].as_object().unwrap().is_empty(), "{late}");
    assert_eq!(get(&lattice.url(&stale, "/late")).0, 200);
}

/// The due times of the ticks `log` shows the ticker handling for schedule `clock`.
fn ticks_in(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| l.split("tick clock ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn a_schedule_ticks_once_per_lattice_across_a_leader_kill() {
    let mut lattice = Lattice::start(&[("h1", "a"), ("h2", "a"), ("h3", "b")]);
    let app = lattice.manifest(
        "ticks",
        &guests().ticker,
        "",
        "",
        "        - type: link
          properties: { target: { name: kv }, namespace: wasi, package: keyvalue, interfaces: [store, atomics] }
    - name: kv
      type: capability
      properties: { image: weft:keyvalue }
    - name: clock
      type: capability
      properties: { image: weft:schedule }
      traits:
        - type: link
          properties:
            target: { name: ticks }
            namespace: weft
            package: schedule
            interfaces: [handler]
            source: { config: [{ name: when, properties: { every: 1s } }] }",
    );
    lattice
        .host("h1")
        .cli_ok(&["app", "deploy", app.to_str().unwrap()]);
    let status = lattice.wait_phase("ticks", "deployed", Duration::from_secs(30));
    assert_eq!(status["hosts"].as_object().unwrap().len(), 3, "{status}");
    let all_ticks = |lattice: &Lattice| -> Vec<(String, u64)> {
        lattice
            .hosts
            .iter()
            .flat_map(|(id, (host, _, _))| {
                ticks_in(&host.log()).into_iter().map(|t| (id.clone(), t))
            })
            .collect()
    };
    wait_until(Duration::from_secs(10), "the first ticks", || {
        (all_ticks(&lattice).len() >= 2).then_some(())
    });
    std::thread::sleep(Duration::from_secs(4));

    // The leader dies; the others go on ticking, and no tick is handled twice.
    let leader = wait_until(Duration::from_secs(10), "a leader", || lattice.leader());
    lattice.kill(&leader);
    let killed_at = weft_now_ms();
    std::thread::sleep(Duration::from_secs(6));
    let ticks = all_ticks(&lattice);
    let mut dues: Vec<u64> = ticks.iter().map(|(_, due)| *due).collect();
    dues.sort_unstable();
    let handled = dues.len();
    dues.dedup();
    assert_eq!(dues.len(), handled, "a tick was handled twice: {ticks:?}");
    // At most the tick in flight on the killed host is lost.
    let expected = (dues.last().unwrap() - dues.first().unwrap()) / 1000 + 1;
    assert!(
        dues.len() as u64 + 1 >= expected,
        "{} of {expected} ticks handled: {ticks:?}",
        dues.len()
    );
    assert!(
        *dues.last().unwrap() > killed_at + 4000,
        "no tick after the kill: {ticks:?}"
    );
}

fn weft_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn weft_call_reaches_a_component_on_another_host() {
    let mut lattice = Lattice::start(&[("h1", "a"), ("h2", "b")]);
    let app = write_yaml(
        lattice.scene.dir.path(),
        "calc",
        &format!(
            "apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {{ name: calc, annotations: {{ version: v1 }} }}
spec:
  components:
    - name: calc
      type: component
      properties: {{ image: {} }}
      traits:
        - type: spreadscaler
          properties:
            instances: 1
            spread: [{{ name: east, requirements: {{ zone: a }} }}]
",
            guests().calc.display()
        ),
    );
    lattice
        .host("h2")
        .cli_ok(&["app", "deploy", app.to_str().unwrap()]);
    let status = lattice.wait_phase("calc", "deployed", Duration::from_secs(30));
    assert_eq!(status["hosts"], serde_json::json!({ "h1": 1 }));

    // Through h2, which does not run it: the call crosses to h1 and its results come back.
    let h2 = lattice.host("h2");
    let out = h2.cli_ok(&["call", "calc/calc", "weft:calc/calc.add", "2", "40"]);
    assert_eq!(out.trim(), "42");
    let out = h2.cli_ok(&[
        "call",
        "calc/calc",
        "weft:calc/calc.move-by",
        "{x: 1, y: 2}",
        "10",
        "feet",
    ]);
    assert_eq!(out.trim(), "{x: 4, y: 2}");
    // A wrong argument is refused by the host that runs it, naming the type it expects.
    let e = h2.cli_err(&["call", "calc/calc", "weft:calc/calc.add", "2", "\"x\""]);
    assert!(e.contains("host h1") && e.contains("must be a s32"), "{e}");
    let e = h2.cli_err(&["call", "calc/nope", "weft:calc/calc.add", "2", "3"]);
    assert!(e.contains("has no component `nope`"), "{e}");
}
