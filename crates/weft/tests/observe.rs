//! Observability end to end: Prometheus scraping a real host, and what /metrics says about
//! failures.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::{free_port, get, guests, http, route, Host, Route, Scene, Server};

/// One instant value of a PromQL query, once Prometheus has one.
fn query(prometheus: &Server, promql: &str) -> Option<f64> {
    let url = format!("http://127.0.0.1:{}/api/v1/query", prometheus.port);
    let response: serde_json::Value = http()
        .get(url)
        .query(&[("query", promql)])
        .send()
        .ok()?
        .json()
        .ok()?;
    let value = response["data"]["result"][0]["value"][1].as_str()?;
    value.parse().ok()
}

fn metrics(address: &str, token: Option<&str>) -> (u16, String) {
    let mut request = http().get(format!("http://{address}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

#[test]
fn prometheus_scrapes_every_request_the_clients_sent() {
    let g = guests();
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let host = Host::start(&["--metrics-addr", &metrics_addr]);
    let s = Scene::new();
    host.deploy(&s.manifest("hello", "v1", &[route("hello", &g.hello, s.port, "/hello")]));
    let (control, token) = host.control();

    // Metrics need the control token unless the operator opens them.
    assert_eq!(metrics(&metrics_addr, None).0, 401);
    assert_eq!(metrics(&control, None).0, 401);
    let (status, text) = metrics(&metrics_addr, Some(&token));
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("# TYPE weft_compilations counter"), "{text}");
    // An app that has served nothing has no series yet.
    assert!(!text.contains(r#"app="hello""#), "{text}");

    let prometheus = Server::prometheus(&metrics_addr, &host.state.path().join("control-token"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while query(&prometheus, r#"up{job="weft"}"#) != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped weft:\n{}",
            prometheus.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The load spans several scrapes, so Prometheus sees the counts rise.
    let sent = AtomicU64::new(0);
    let url = format!("http://127.0.0.1:{}/hello", s.port);
    let until = Instant::now() + Duration::from_secs(4);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                while Instant::now() < until {
                    let (code, body) = get(&url);
                    assert_eq!(code, 200, "{body}");
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let sent = sent.into_inner() as f64;

    let deadline = Instant::now() + Duration::from_secs(60);
    let counted = loop {
        let counted = query(
            &prometheus,
            r#"sum(weft_http_requests_total{app="hello",version="v1",component="hello"})"#,
        );
        if counted == Some(sent) || Instant::now() > deadline {
            break counted;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        counted,
        Some(sent),
        "Prometheus's count of the requests; its log:\n{}",
        prometheus.log()
    );
    assert_eq!(
        query(
            &prometheus,
            r#"sum(weft_http_requests_total{code="2xx",app="hello"})"#
        ),
        Some(sent)
    );
    let p99 = r#"histogram_quantile(0.99, sum by (le) (rate(weft_http_request_duration_seconds_bucket{app="hello"}[1m])))"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    let quantile = loop {
        let value = query(&prometheus, p99);
        if value.is_some_and(f64::is_finite) || Instant::now() > deadline {
            break value;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let quantile = quantile.expect("no p99 from Prometheus");
    assert!(
        quantile.is_finite() && quantile > 0.0 && quantile < 30.0,
        "p99 of {quantile} s"
    );
}

#[test]
fn metrics_name_failures_by_cause_and_forget_undeployed_apps() {
    let g = guests();
    let host = Host::start(&["--metrics-open"]);
    let s = Scene::new();
    host.deploy(&s.manifest(
        "misbehave",
        "v1",
        &[Route {
            properties: "limits: { memory: 32MiB, timeout: 1s }",
            ..route("misbehave", &g.misbehave, s.port, "/misbehave")
        }],
    ));
    let (control, _) = host.control();
    for (path, status) in [("ok", 200), ("trap", 500), ("loop", 503), ("hog", 500)] {
        let (code, body) = get(&format!("http://127.0.0.1:{}/misbehave/{path}", s.port));
        assert_eq!(code, status, "{path}: {body}");
    }
    let (code, _) = get(&format!("http://127.0.0.1:{}/nothing-here", s.port));
    assert_eq!(code, 404);

    // --metrics-open: no token needed.
    let (code, text) = metrics(&control, None);
    assert_eq!(code, 200, "{text}");
    let series = |name: &str, labels: &str| -> f64 {
        let prefix =
            format!("{name}{{app=\"misbehave\",version=\"v1\",component=\"misbehave\"{labels}}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(series("weft_http_errors_total", r#",cause="trap""#), 1.0);
    assert_eq!(series("weft_http_errors_total", r#",cause="timeout""#), 1.0);
    assert_eq!(series("weft_http_errors_total", r#",cause="memory""#), 1.0);
    assert_eq!(series("weft_http_requests_total", r#",code="2xx""#), 1.0);
    assert_eq!(series("weft_http_requests_total", r#",code="5xx""#), 3.0);
    assert_eq!(series("weft_http_request_duration_seconds_count", ""), 4.0);
    assert_eq!(series("weft_instances_live", ""), 0.0);
    assert!(series("weft_instances_created_total", "") >= 1.0);
    assert!(text.contains("weft_http_unrouted_total 1"), "{text}");
    assert!(text.contains("weft_compilations_total "), "{text}");

    // Capability calls by capability and the backend of the link in force: the counter's
    // default link is a file store, its `cache` link (chosen per call) an in-memory one.
    let counter = std::fs::read_to_string(support::repo().join("examples/counter/app.yaml"))
        .unwrap()
        .replace("./build/counter.wasm", &g.counter.display().to_string())
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{}", s.port));
    let counter = support::write_yaml(s.dir.path(), "counter", &counter);
    host.deploy(&counter);
    let post = |path: &str| {
        let response = http()
            .post(format!("http://127.0.0.1:{}{path}", s.port))
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
    };
    post("/counter/visits");
    post("/counter/visits?store=cache");
    let (_, text) = metrics(&control, None);
    let calls = |backend: &str| -> f64 {
        let prefix = format!(
            "weft_capability_calls_total{{capability=\"keyvalue\",backend=\"{backend}\"}} "
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .parse()
            .unwrap()
    };
    assert!(calls("file") >= 2.0, "{text}");
    assert!(calls("memory") >= 2.0, "{text}");

    host.cli_ok(&["app", "undeploy", "misbehave"]);
    let (_, text) = metrics(&control, None);
    assert!(
        !text.contains(r#"app="misbehave""#),
        "an undeployed app's series stay:\n{text}"
    );
}
