//! The manifest format end to end: parsed, validated and locked against the capabilities this
//! host provides, as a deploy does it.

use std::path::Path;
use std::time::Duration;

use weft_capabilities::catalog;
use weft_manifest::*;

fn parse(text: &str, origin: &str) -> Result<App, ManifestError> {
    parse_app(text, origin, catalog())
}

const HELLO: &str = r#"
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: hello
  annotations: { version: v0.1.0 }
spec:
  components:
    - name: hello
      type: component
      properties:
        image: ./build/hello.wasm
        limits: { memory: 32MiB, timeout: 2s }
      traits:
        - type: spreadscaler
          properties: { instances: 7 }
    - name: http
      type: capability
      properties: { image: ghcr.io/wasmcloud/http-server:0.23.0 }
      traits:
        - type: link
          properties:
            target: { name: hello }
            namespace: wasi
            package: http
            interfaces: [incoming-handler]
            source:
              config: [{ name: route, properties: { address: "127.0.0.1:9090", path: /hello/ } }]
"#;

#[test]
fn parses_the_documented_format() {
    let app = parse(HELLO, "app.yaml").unwrap();
    assert_eq!(app.name, "hello");
    assert_eq!(app.version.as_deref(), Some("v0.1.0"));
    let c = &app.components[0];
    assert_eq!(c.limits.max_memory, 32 << 20);
    assert_eq!(c.limits.timeout, Duration::from_secs(2));
    assert_eq!(c.limits.max_instances, 7);
    assert_eq!(
        app.routes,
        vec![HttpRoute {
            component: "hello".into(),
            address: "127.0.0.1:9090".parse().unwrap(),
            host: None,
            path: "/hello".into(),
        }]
    );
    assert_eq!(app.capabilities[0].kind, "http-server");
    assert_eq!(app.capabilities[0].backend, "hyper");
}

#[test]
fn route_defaults_to_root_on_the_default_address() {
    let text = HELLO.replace(
        r#"source:
              config: [{ name: route, properties: { address: "127.0.0.1:9090", path: /hello/ } }]"#,
        "",
    );
    let app = parse(&text, "app.yaml").unwrap();
    assert_eq!(app.routes[0].path, "/");
    assert_eq!(app.routes[0].address.to_string(), DEFAULT_HTTP_ADDRESS);
}

fn error_of(text: &str) -> String {
    parse(text, "app.yaml").unwrap_err().to_string()
}

#[test]
fn yaml_syntax_errors_name_the_file() {
    let msg = error_of("apiVersion: [unclosed");
    assert!(
        msg.starts_with("app.yaml: not a valid app manifest"),
        "{msg}"
    );
}

#[test]
fn a_missing_field_is_refused_and_a_typo_in_weft_s_own_extensions_too() {
    // `imag` is not read; the image it should have been is then missing.
    let msg = error_of(&HELLO.replace("image: ./build/hello.wasm", "imag: ./build/hello.wasm"));
    assert!(msg.contains("image"), "{msg}");
    // `limits` is weft's extension, not wadm's: a misspelt key there is an error.
    let msg = error_of(&HELLO.replace("memory: 32MiB", "memroy: 32MiB"));
    assert!(msg.contains("memroy"), "{msg}");
}

/// A manifest as wadm accepts it, with what weft reads but does not act on.
const WADM: &str = r#"
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: kvcounter
  annotations: { version: v0.0.1, description: "a wadm app" }
spec:
  policies:
    - name: nats-kv
      type: policy.secret.wasmcloud.dev/v1alpha1
      properties: { backend: nats-kv }
  components:
    - name: counter
      type: component
      properties:
        image: ./build/counter.wasm
        id: counter
        config: [{ name: shared-config }]
      traits:
        - type: spreadscaler
          properties: { instances: 2 }
        - type: link
          properties:
            target:
              name: kv
              config: [{ name: kv-link, properties: { url: "redis://127.0.0.1:6380" } }]
              secrets: [{ name: pw, properties: { policy: nats-kv, key: redis-pw } }]
            source: { name: counter }
            namespace: wasi
            package: keyvalue
            interfaces: [store, atomics]
    - name: kv
      type: capability
      properties: { image: ghcr.io/wasmcloud/keyvalue-redis:0.28.1, experimental: true }
    - name: http
      type: capability
      properties: { image: ghcr.io/wasmcloud/http-server:0.23.0 }
      traits:
        - type: link
          properties:
            target: counter
            namespace: wasi
            package: http
            interfaces: [incoming-handler]
            source_config: [{ name: default-http, properties: { address: "127.0.0.1:9091" } }]
"#;

#[test]
fn what_wadm_accepts_deploys_and_what_weft_does_not_act_on_is_a_warning() {
    let app = parse(WADM, "wadm.yaml").unwrap();
    // The older `source_config` form routes like `source.config`.
    assert_eq!(app.routes[0].address, "127.0.0.1:9091".parse().unwrap());
    // The target's config reaches the backend.
    let grant = &app.components[0].grants[0];
    assert_eq!(
        grant.settings.get("url").map(String::as_str),
        Some("redis://127.0.0.1:6380")
    );
    let warnings = app.warnings.join("\n");
    for expected in [
        "spec.policies `nats-kv` (type policy.secret.wasmcloud.dev/v1alpha1) is not read",
        "the link to `kv` passes secrets",
        "config `shared-config` has no properties here",
        "component `kv`: properties.experimental is not read by weft",
    ] {
        assert!(warnings.contains(expected), "{expected}\nin:\n{warnings}");
    }
    assert_eq!(app.warnings.len(), 4, "{warnings}");
    assert!(parse(HELLO, "app.yaml").unwrap().warnings.is_empty());
}

#[test]
fn errors_name_the_component_and_field() {
    let msg = error_of(&HELLO.replace("memory: 32MiB", "memory: 32 parsecs"));
    assert!(
        msg.contains("component `hello`: properties.limits.memory"),
        "{msg}"
    );
    let msg = error_of(&HELLO.replace("target: { name: hello }", "target: { name: nope }"));
    assert!(
        msg.contains("component `http`: traits[0].properties.target"),
        "{msg}"
    );
    assert!(msg.contains("`nope`"), "{msg}");
    let msg = error_of(&HELLO.replace("path: /hello/", "pth: /hello/"));
    assert!(msg.contains("unknown key `pth`"), "{msg}");
    let msg = error_of(&HELLO.replace("127.0.0.1:9090", "localhost"));
    assert!(msg.contains("not an IP:port"), "{msg}");
    let msg = error_of(&HELLO.replace("ghcr.io/wasmcloud/http-server:0.23.0", "weft:teleport"));
    assert!(msg.contains("`weft:teleport` is not a capability"), "{msg}");
    let msg = error_of(&HELLO.replace("instances: 7", "instances: 0"));
    assert!(msg.contains("traits[0].properties.instances"), "{msg}");
}

#[test]
fn a_wasmcloud_provider_weft_has_no_counterpart_for_is_named_with_what_weft_offers() {
    let msg = error_of(&HELLO.replace(
        "ghcr.io/wasmcloud/http-server:0.23.0",
        "ghcr.io/wasmcloud/messaging-kafka:0.7.0",
    ));
    assert!(
        msg.contains("`ghcr.io/wasmcloud/messaging-kafka:0.7.0` is wasmCloud's Kafka messaging provider, which weft has no counterpart for")
            && msg.contains("in-process, on NATS or on Redis pub/sub"),
        "{msg}"
    );
}

#[test]
fn what_wasmclouds_own_examples_write_deploys_with_warnings() {
    // Blank annotations and a scaled provider, as wasmCloud's http-keyvalue-watcher writes them.
    let text = HELLO
        .replace(
            "  annotations: { version: v0.1.0 }",
            "  annotations:\n    version: v0.1.0\n    wasmcloud.dev/homepage:",
        )
        .replace(
            "      properties: { image: ghcr.io/wasmcloud/http-server:0.23.0 }\n      traits:\n",
            "      properties: { image: ghcr.io/wasmcloud/http-server:0.23.0 }\n      traits:\n        - type: spreadscaler\n          properties: { instances: 1 }\n",
        );
    let app = parse(&text, "app.yaml").unwrap();
    assert_eq!(app.warnings.len(), 1, "{:?}", app.warnings);
    assert!(
        app.warnings[0].contains("component `http`: traits[0]")
            && app.warnings[0].contains("scaler is not read"),
        "{:?}",
        app.warnings
    );
    assert_eq!(
        app.routes[0].component, "hello",
        "the link after the scaler is read"
    );
}

#[test]
fn missing_image_is_explained() {
    let msg = error_of(&HELLO.replace("image: ./build/hello.wasm", "image: ''"));
    assert!(msg.contains("properties.image: missing"), "{msg}");
}

#[test]
fn capability_images_are_recognised() {
    let resolve =
        |image: &str| resolve_image(catalog(), image).map(|(spec, backend)| (spec.name(), backend));
    for image in [
        "weft:http-server",
        "ghcr.io/wasmcloud/http-server:0.23.0",
        "ghcr.io/wasmcloud/http-server",
    ] {
        assert_eq!(resolve(image), Some(("http-server", "hyper")));
    }
    assert_eq!(
        resolve("ghcr.io/wasmcloud/keyvalue-nats:1"),
        Some(("keyvalue", "nats"))
    );
    assert_eq!(resolve("weft:keyvalue"), Some(("keyvalue", "memory")));
    assert_eq!(
        resolve("ghcr.io/wasmcloud/blobstore-fs:0.10"),
        Some(("blobstore", "filesystem"))
    );
    assert_eq!(
        resolve("ghcr.io/wasmcloud/sqldb-postgres:1"),
        Some(("postgres", "postgres"))
    );
}

#[test]
fn backend_config_is_typed_per_backend() {
    let kv = |config: &str| {
        format!(
            r#"
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {{ name: kv }}
spec:
  components:
    - name: app
      type: component
      properties: {{ image: ./app.wasm }}
      traits:
        - type: link
          properties: {{ target: store, namespace: wasi, package: keyvalue, interfaces: [store] }}
    - name: store
      type: capability
      properties:
        image: weft:keyvalue
        config: [{{ name: kv, properties: {{ {config} }} }}]
"#
        )
    };
    let app = parse(
        &kv("backend: nats, url: \"nats://10.0.0.1:4222\""),
        "kv.yaml",
    )
    .unwrap();
    let grant = &app.components[0].grants[0];
    assert_eq!(
        (grant.kind.as_str(), grant.backend.as_str()),
        ("keyvalue", "nats")
    );
    assert_eq!(
        grant.settings.get("url").map(String::as_str),
        Some("nats://10.0.0.1:4222")
    );
    assert!(!grant.settings.contains_key("backend"));
    let msg = error_of(&kv("backend: redis, bucket: b"));
    assert!(
        msg.contains("unknown key `bucket`; known keys: url"),
        "{msg}"
    );
    let msg = error_of(&kv("backend: dynamo"));
    assert!(
        msg.contains("`dynamo` is not a keyvalue backend; available: memory, file, redis, nats"),
        "{msg}"
    );
}

#[test]
fn a_locked_app_round_trips_through_json() {
    let app = parse(HELLO, "app.yaml").unwrap();
    let json = serde_json::to_string(&app).unwrap();
    assert_eq!(serde_json::from_str::<App>(&json).unwrap(), app);
}

#[test]
fn image_sources() {
    let base = Path::new("/apps/x");
    assert_eq!(
        image_source("./build/a.wasm", base),
        ImageSource::File("/apps/x/./build/a.wasm".into())
    );
    assert_eq!(
        image_source("file:///tmp/a.wasm", base),
        ImageSource::File("/tmp/a.wasm".into())
    );
    assert_eq!(
        image_source("ghcr.io/org/app:1.0", base),
        ImageSource::Oci("ghcr.io/org/app:1.0".into())
    );
}

#[test]
fn sizes_and_durations() {
    assert_eq!(parse_size("64MiB"), Ok(64 << 20));
    assert_eq!(parse_size("1Gi"), Ok(1 << 30));
    assert_eq!(parse_size("1000"), Ok(1000));
    assert_eq!(parse_size("2MB"), Ok(2_000_000));
    assert!(parse_size("lots").is_err());
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert!(parse_duration("5").is_err());
    assert!(parse_duration("0s").is_err());
}

#[test]
fn reuse_is_opt_in() {
    let app = parse(HELLO, "app.yaml").unwrap();
    assert_eq!(app.components[0].reuse, None);
    let text = HELLO.replace(
        "limits: { memory: 32MiB, timeout: 2s }",
        "limits: { memory: 32MiB, timeout: 2s }\n        reuse: { requests: 50, idle: 5s }",
    );
    let app = parse(&text, "app.yaml").unwrap();
    assert_eq!(
        app.components[0].reuse,
        Some(Reuse {
            max_requests: 50,
            idle: Duration::from_secs(5)
        })
    );
    let text = HELLO.replace(
        "limits: { memory: 32MiB, timeout: 2s }",
        "reuse: { requests: 0 }",
    );
    assert!(error_of(&text).contains("properties.reuse.requests"));
}

const FETCH: &str = r#"
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: { name: fetch }
spec:
  components:
    - name: fetch
      type: component
      properties: { image: ./build/fetch.wasm }
      traits:
        - type: link
          properties:
            target: { name: client }
            namespace: wasi
            package: http
            interfaces: [outgoing-handler]
            source:
              config: [{ name: egress, properties: { allowed_hosts: "API.example.com, 127.0.0.1:8081" } }]
    - name: client
      type: capability
      properties: { image: ghcr.io/wasmcloud/http-client:0.12.0 }
"#;

#[test]
fn an_http_client_link_grants_outgoing_http_to_its_hosts() {
    let app = parse(FETCH, "app.yaml").unwrap();
    assert_eq!(
        app.components[0].outgoing_http,
        Some(vec![
            "api.example.com".to_string(),
            "127.0.0.1:8081".to_string()
        ])
    );
}

#[test]
fn links_weft_cannot_serve_are_refused() {
    let msg = error_of(&FETCH.replace(
        "allowed_hosts: \"API.example.com, 127.0.0.1:8081\"",
        "hosts: x",
    ));
    assert!(msg.contains("unknown key `hosts`"), "{msg}");
    let unlisted = FETCH.replace(
        "source:\n              config: [{ name: egress, properties: { allowed_hosts: \"API.example.com, 127.0.0.1:8081\" } }]",
        "",
    );
    let msg =
        error_of(&unlisted.replace("ghcr.io/wasmcloud/http-client:0.12.0", "weft:http-client"));
    assert!(msg.contains("name the hosts it may call"), "{msg}");
    let msg = error_of(&FETCH.replace(
        "interfaces: [outgoing-handler]",
        "interfaces: [incoming-handler]",
    ));
    assert!(msg.contains("grants `wasi:http/outgoing-handler`"), "{msg}");
    let to_component = FETCH.replace(
        "      type: capability\n      properties: { image: ghcr.io/wasmcloud/http-client:0.12.0 }",
        "      type: component\n      properties: { image: ./other.wasm }",
    );
    let msg = error_of(&to_component);
    assert!(msg.contains("not by another component"), "{msg}");
}

#[test]
fn under_a_wasmcloud_provider_image_its_looser_default_applies_with_a_warning_unless_strict() {
    let unlisted = FETCH.replace(
        "source:\n              config: [{ name: egress, properties: { allowed_hosts: \"API.example.com, 127.0.0.1:8081\" } }]",
        "",
    );
    let app = parse(&unlisted, "app.yaml").unwrap();
    assert_eq!(app.components[0].outgoing_http, Some(vec!["*".to_string()]));
    assert_eq!(app.warnings.len(), 1, "{:?}", app.warnings);
    assert!(
        app.warnings[0].contains(
            "as ghcr.io/wasmcloud/http-client:0.12.0 does the component may call any host"
        ),
        "{:?}",
        app.warnings
    );
    let strict = unlisted.replace(
        "metadata: { name: fetch }",
        "metadata: { name: fetch, annotations: { weft.dev/strict: \"true\" } }",
    );
    let msg = error_of(&strict);
    assert!(
        msg.contains("asks for a strict deploy") && msg.contains("may call any host"),
        "{msg}"
    );
}

const HARNESSED: &str = r#"
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: { name: guarded }
spec:
  components:
    - name: harness
      type: component
      properties: { image: ./harness.wasm }
      traits:
        - type: link
          properties: { target: app, name: inner, namespace: wasi, package: http, interfaces: [incoming-handler] }
    - name: app
      type: component
      properties: { image: ./app.wasm }
    - name: http
      type: capability
      properties: { image: weft:http-server }
      traits:
        - type: link
          properties: { target: harness, namespace: wasi, package: http, interfaces: [incoming-handler] }
"#;

#[test]
fn a_component_link_for_http_is_served_in_process_by_its_name() {
    let app = parse(HARNESSED, "guarded.yaml").unwrap();
    assert_eq!(
        app.components[0].http_links,
        vec![HttpLink {
            authority: "inner".into(),
            target: "app".into(),
            handler: false,
        }]
    );
    let looped = HARNESSED.replace(
        "      properties: { image: ./app.wasm }\n",
        "      properties: { image: ./app.wasm }\n      traits:\n        - type: link\n          properties: { target: harness, namespace: wasi, package: http, interfaces: [incoming-handler] }\n",
    );
    let msg = error_of(&looped);
    assert!(
        msg.contains("component links form a loop: harness → app → harness"),
        "{msg}"
    );
    let wasi = HARNESSED.replace(
        "package: http, interfaces: [incoming-handler] }\n    - name: app",
        "package: ledger, interfaces: [books] }\n    - name: app",
    );
    assert!(error_of(&wasi).contains("served by weft itself or by capabilities"));
    let custom = wasi.replace(
        "namespace: wasi, package: ledger",
        "namespace: acme, package: ledger",
    );
    let app = parse(&custom, "custom.yaml").unwrap();
    assert_eq!(
        app.components[0].component_links,
        vec![ComponentLink {
            target: "app".into(),
            interfaces: vec!["acme:ledger/books".into()]
        }]
    );
}

#[test]
fn limits_above_what_a_host_can_honour_are_refused_naming_the_ceiling() {
    let memory = error_of(&HELLO.replace("memory: 32MiB", "memory: 64GiB"));
    assert!(
        memory.contains("properties.limits.memory") && memory.contains("at most 1GiB"),
        "{memory}"
    );
    let timeout = error_of(&HELLO.replace("timeout: 2s", "timeout: 100000h"));
    assert!(
        timeout.contains("properties.limits.timeout") && timeout.contains("at most 1h"),
        "{timeout}"
    );
    let instances = error_of(&HELLO.replace("instances: 7", "instances: 100000"));
    assert!(
        instances.contains("properties.instances") && instances.contains("at most 1000"),
        "{instances}"
    );
    // At the ceilings themselves, the manifest is accepted as written.
    let at_ceiling = HELLO
        .replace("memory: 32MiB", "memory: 1GiB")
        .replace("timeout: 2s", "timeout: 1h")
        .replace("instances: 7", "instances: 1000");
    let app = parse(&at_ceiling, "app.yaml").unwrap();
    let limits = app.components[0].limits;
    assert_eq!(limits.max_memory, MEMORY_CEILING);
    assert_eq!(limits.timeout, TIMEOUT_CEILING);
    assert_eq!(limits.max_instances, INSTANCES_CEILING);
}

#[test]
fn a_watcher_link_naming_no_keys_is_a_warning_not_an_error() {
    let text = r#"
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: { name: w }
spec:
  components:
    - name: w
      type: component
      properties: { image: ./w.wasm }
    - name: kv
      type: capability
      properties: { image: ghcr.io/wasmcloud/keyvalue-redis:0.30.0 }
      traits:
        - type: link
          properties:
            target: w
            namespace: wasi
            package: keyvalue
            interfaces: [watcher]
            target_config: [{ name: redis-url, properties: { url: "redis://127.0.0.1:6379" } }]
"#;
    let app = parse(text, "app.yaml").unwrap();
    assert_eq!(app.watches.len(), 1);
    assert!(
        app.warnings
            .iter()
            .any(|w| w.contains("names no keys") && w.contains("watch: \"SET@key,DEL@key\"")),
        "{:?}",
        app.warnings
    );
    assert_eq!(
        app.watches[0].settings.get("url").map(String::as_str),
        Some("redis://127.0.0.1:6379")
    );
}
