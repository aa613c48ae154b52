//! The dashboard in a real browser: headless Chromium, driven through chromedriver, signs in
//! with the control token, sees the apps and a request rate rise under load, and undeploys one.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use support::{free_port, get, guests, route, Host, Scene};

/// `chromedriver` on a free loopback port; killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start chromedriver (run scripts/setup.sh): {e}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of the element `locator` finds. The page re-renders its tables every second, so an
/// element found may be replaced before it is read: then it is found again.
async fn text_of(browser: &fantoccini::Client, locator: Locator<'_>) -> String {
    eventually(Duration::from_secs(10), &format!("{locator:?}"), || async {
        browser.find(locator).await.ok()?.text().await.ok()
    })
    .await
}

/// Polls `check` until it gives a value or `within` passes.
async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[test]
// The screenshot's path goes to the test's output, for whoever looks at the page.
#[allow(clippy::print_stdout)]
fn the_dashboard_signs_in_shows_live_rates_and_undeploys() {
    let g = guests();
    let host = Host::start(&[]);
    let s = Scene::new();
    host.deploy(&s.manifest("hello", "v1", &[route("hello", &g.hello, s.port, "/hello")]));
    host.deploy(&s.manifest(
        "second",
        "v1",
        &[route("second", &g.hello, s.port, "/second")],
    ));
    let (control, token) = host.control();
    let driver = Driver::start();
    let load_running = AtomicBool::new(true);
    let sent = AtomicU64::new(0);
    let hello = format!("http://127.0.0.1:{}/hello", s.port);
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    std::thread::scope(|scope| {
        runtime.block_on(async {
            let mut capabilities = serde_json::Map::new();
            capabilities.insert(
                "goog:chromeOptions".into(),
                serde_json::json!({
                    "binary": "/usr/bin/chromium",
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1400,1100"],
                }),
            );
            let browser =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(capabilities)
                    .connect(&format!("http://127.0.0.1:{}", driver.port))
                    .await
                    .expect("chromedriver would not start a Chromium session");
            let page = format!("http://{control}/");

            // A wrong token is refused on the login page.
            browser.goto(&page).await.unwrap();
            let field = browser.find(Locator::Id("login-token")).await.unwrap();
            field.send_keys("not-the-token").await.unwrap();
            browser
                .find(Locator::Id("login-submit"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            // The login page always holds the (hidden) error, so it is looked for on the page
            // the form's answer loads, until shown.
            eventually(
                Duration::from_secs(10),
                "the login page to say the token is wrong",
                || async {
                    let error = browser.find(Locator::Id("login-error")).await.ok()?;
                    error.is_displayed().await.ok()?.then_some(())
                },
            )
            .await;

            // The right one signs in; the token is in no URL.
            browser.goto(&page).await.unwrap();
            let field = browser.find(Locator::Id("login-token")).await.unwrap();
            field.send_keys(&token).await.unwrap();
            browser
                .find(Locator::Id("login-submit"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            for app in ["hello", "second"] {
                browser
                    .wait()
                    .for_element(Locator::Css(&format!("#apps tr[data-app={app}]")))
                    .await
                    .unwrap();
            }
            let url = browser.current_url().await.unwrap().to_string();
            assert!(!url.contains(&token), "{url}");
            let events = text_of(&browser, Locator::Id("events")).await;
            assert!(events.contains("hello v1 deployed"), "{events}");

            // A client runs: hello's request rate rises on the page without a reload.
            scope.spawn(|| {
                while load_running.load(Ordering::Relaxed) {
                    let (code, body) = get(&hello);
                    assert_eq!(code, 200, "{body}");
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            });
            let rate = eventually(Duration::from_secs(20), "hello's rate to rise", || async {
                let cell = browser
                    .find(Locator::Css("#apps tr[data-app=hello] td.rate"))
                    .await
                    .ok()?;
                let rate: f64 = cell.text().await.ok()?.parse().ok()?;
                (rate > 1.0).then_some(rate)
            })
            .await;
            let p99 = text_of(&browser, Locator::Css("#apps tr[data-app=hello] td.p99")).await;
            assert!(p99.parse::<f64>().is_ok(), "p99 cell: {p99}");
            std::fs::write(&screenshot, browser.screenshot().await.unwrap()).unwrap();
            load_running.store(false, Ordering::Relaxed);
            println!(
                "dashboard screenshot: {} (hello at {rate} req/s, p99 {p99} ms)",
                screenshot.display()
            );

            // Undeploy from the page: the row goes, and the host no longer runs it.
            eventually(
                Duration::from_secs(10),
                "a click on second's Undeploy",
                || async {
                    let button = browser
                        .find(Locator::Css("button.undeploy[data-app=second]"))
                        .await
                        .ok()?;
                    button.click().await.ok()
                },
            )
            .await;
            eventually(Duration::from_secs(10), "second's row to go", || async {
                let rows = browser
                    .find_all(Locator::Css("#apps tr[data-app=second]"))
                    .await
                    .ok()?;
                rows.is_empty().then_some(())
            })
            .await;
            eventually(Duration::from_secs(10), "the undeploy event", || async {
                let events = browser.find(Locator::Id("events")).await.ok()?;
                events
                    .text()
                    .await
                    .ok()?
                    .contains("second undeployed")
                    .then_some(())
            })
            .await;
            browser.close().await.unwrap();
        });
    });
    assert!(sent.load(Ordering::Relaxed) > 0);
    let err = host.cli_err(&["app", "status", "second"]);
    assert!(err.contains("second"), "{err}");
    let (code, _) = get(&format!("http://127.0.0.1:{}/second", s.port));
    assert_eq!(code, 404);
}
