//! End-to-end: components pushed to and deployed from a real OCI registry (Debian's
//! `docker-registry`, distribution 2.8) on a free loopback port.

mod support;

use std::path::Path;

use support::*;

/// The `sha256:…` a push printed after `what`.
fn printed_digest(output: &str, what: &str) -> String {
    let at = output
        .find(what)
        .unwrap_or_else(|| panic!("no {what} in {output}"));
    output[at + what.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// How many times the registry served the blob `digest` (`sha256:…`).
fn blob_fetches(registry: &Server, digest: &str) -> usize {
    registry
        .log()
        .lines()
        .filter(|l| {
            l.contains(&format!("GET /v2/weft/web/blobs/{digest} ")) && l.contains("\" 200 ")
        })
        .count()
}

#[test]
fn components_travel_through_an_oci_registry_by_tag_and_by_digest() {
    let g = guests();
    let mut registry = Server::registry();
    let host = Host::start(&[]);
    let s = Scene::new();
    let port = s.port;
    let tag = format!("127.0.0.1:{}/weft/web:1.0", registry.port);
    let app = |version: &str| {
        s.manifest(
            "web",
            version,
            &[route("web", Path::new(&tag), port, "/web")],
        )
    };

    let pushed = host.cli_ok(&["push", g.hello.to_str().unwrap(), &tag]);
    let hello_digest = printed_digest(&pushed, "component digest: ");
    host.deploy(&app("v1"));
    let (status, body) = get(&format!("http://127.0.0.1:{port}/web"));
    assert_eq!(status, 200);
    assert!(body.starts_with("Hello from Rust"), "{body}");
    let status = host.cli_ok(&["app", "status", "web", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let component = &status["components"][0];
    assert_eq!(component["image"], tag.as_str(), "{status}");
    assert_eq!(
        format!("sha256:{}", component["digest"].as_str().unwrap()),
        hello_digest
    );

    // A new component under the same tag: the redeploy follows the tag.
    let pushed = host.cli_ok(&["push", g.fetch.to_str().unwrap(), &tag]);
    let fetch_digest = printed_digest(&pushed, "component digest: ");
    let manifest_ref = printed_digest(&pushed, " as ");
    host.deploy(&app("v2"));
    let (status, body) = get(&format!("http://127.0.0.1:{port}/web"));
    assert_eq!(status, 502, "fetch answers now: {body}");
    assert!(body.starts_with("fetch "), "{body}");
    // A host that holds a digest does not fetch it again, whatever app asks.
    let other = s.manifest(
        "web2",
        "v1",
        &[route("web2", Path::new(&tag), port, "/web2")],
    );
    host.deploy(&other);
    assert_eq!(
        blob_fetches(&registry, &fetch_digest),
        1,
        "{}",
        registry.log()
    );

    // Pulling by digest gives the very bytes pushed.
    let out = s.dir.path().join("pulled.wasm");
    let pulled = host.cli_ok(&["pull", &manifest_ref, "-o", out.to_str().unwrap()]);
    assert!(pulled.contains(&fetch_digest), "{pulled}");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&g.fetch).unwrap()
    );

    // A reference that does not exist, and a registry that is down, fail the deploy naming the
    // reference and the registry's answer; the running version keeps serving.
    let missing = format!("127.0.0.1:{}/weft/web:no-such-tag", registry.port);
    let broken = s.manifest(
        "web",
        "v3",
        &[route("web", Path::new(&missing), port, "/web")],
    );
    let refused = host.cli_err(&["app", "deploy", broken.to_str().unwrap()]);
    assert!(
        refused.contains(&missing) && refused.contains("registry"),
        "{refused}"
    );
    registry.kill();
    let refused = host.cli_err(&["app", "deploy", app("v4").to_str().unwrap()]);
    assert!(refused.contains(&tag), "{refused}");
    let (status, _) = get(&format!("http://127.0.0.1:{port}/web"));
    assert_eq!(status, 502, "v2 still serves");
}
