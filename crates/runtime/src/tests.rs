use super::*;

fn runtime(dir: &Path) -> Arc<Runtime> {
    Runtime::new(dir, false, 1 << 30).unwrap()
}

#[test]
fn refuses_files_that_are_not_components() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let err = rt.load("text", b"hello").err().unwrap().to_string();
    assert!(err.contains("not a WebAssembly file"), "{err}");
    let core = wat::parse_str("(module)").unwrap();
    let err = rt.load("core", &core).err().unwrap().to_string();
    assert!(
        err.contains("core WebAssembly module, not a component"),
        "{err}"
    );
}

#[test]
fn names_the_unsatisfied_import() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let bytes =
        wat::parse_str(r#"(component (import "acme:ledger/books@1.0.0" (instance (export "get" (func (param "key" string) (result string))))))"#)
            .unwrap();
    let loaded = rt.load("ledger-user", &bytes).unwrap();
    let err = rt
        .http_workload(
            "ledger-user",
            &loaded,
            Default::default(),
            None,
            open(),
            meter(),
        )
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("acme:ledger/books@1.0.0"), "{err}");
    // A WASI 0.2 component is linked without WASI 0.3: the error must not offer it.
    assert!(err.contains("to a WASI 0.2 component"), "{err}");
    assert!(!err.contains("0.3.0"), "{err}");
}

fn none() -> std::sync::Arc<Grants> {
    std::sync::Arc::new(Grants::none("test/component"))
}

fn open() -> Access {
    Access::grants_only(none())
}

#[test]
fn a_capability_import_without_a_link_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let bytes =
        wat::parse_str(r#"(component (import "wasi:keyvalue/store@0.2.0-draft" (instance)))"#)
            .unwrap();
    let loaded = rt.load("kv-user", &bytes).unwrap();
    let err = rt.check_imports("kv-user", &loaded, &open()).unwrap_err();
    assert!(matches!(err, RuntimeError::NotGranted(_)), "{err}");
    let err = err.to_string();
    assert!(err.contains("wasi:keyvalue/store@0.2.0-draft"), "{err}");
    assert!(err.contains("no link granting it"), "{err}");
}

#[test]
fn a_component_without_a_handler_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let bytes = wat::parse_str("(component)").unwrap();
    let loaded = rt.load("empty", &bytes).unwrap();
    let err = rt
        .http_workload("empty", &loaded, Default::default(), None, open(), meter())
        .err()
        .unwrap();
    assert!(matches!(err, RuntimeError::NoHttpHandler { .. }), "{err}");
}

#[test]
fn compiled_code_is_reused_across_runtimes() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = wat::parse_str("(component)").unwrap();
    let first = runtime(dir.path());
    assert!(first.load("a", &bytes).unwrap().compiled);
    assert!(!first.load("a", &bytes).unwrap().compiled);
    assert_eq!(first.compilations(), 1);
    drop(first);
    let second = runtime(dir.path());
    assert!(!second.load("a", &bytes).unwrap().compiled);
    assert_eq!(second.compilations(), 0);
}

#[test]
fn falls_back_or_pools_but_always_starts() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::new(dir.path(), true, 1 << 30).unwrap();
    assert!(matches!(
        rt.allocator(),
        Allocator::Pooling | Allocator::OnDemand
    ));
}

#[test]
fn workloads_of_one_component_share_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let bytes = wat::parse_str("(component)").unwrap();
    let a = rt.load("a", &bytes).unwrap();
    let b = rt.load("b", &bytes).unwrap();
    assert!(Arc::ptr_eq(&a.code, &b.code));
    assert_eq!(rt.compilations(), 1);
}

fn meter() -> crate::WorkloadMeter {
    crate::WorkloadMeter::new(crate::WorkloadLabels {
        app: "test".into(),
        version: "v1".into(),
        component: "c".into(),
    })
}

/// A component that needs component-model async: it imports a function taking a stream.
fn concurrent_component() -> Vec<u8> {
    wat::parse_str(r#"(component (import "acme:pipe/sink" (instance (export "take" (func (param "s" (stream u8)))))))"#)
        .unwrap()
}

#[test]
fn components_go_to_the_engine_they_need() {
    let plain = wat::parse_str("(component)").unwrap();
    assert_eq!(EngineKind::of(&plain), EngineKind::Plain);
    assert_eq!(
        EngineKind::of(&concurrent_component()),
        EngineKind::Concurrent
    );
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    assert_eq!(rt.load("p", &plain).unwrap().code.kind(), EngineKind::Plain);
    let loaded = rt.load("c", &concurrent_component()).unwrap();
    assert_eq!(loaded.code.kind(), EngineKind::Concurrent);
    drop((loaded, rt));
    // The cache remembers which engine compiled it.
    let again = runtime(dir.path());
    let loaded = again.load("c", &concurrent_component()).unwrap();
    assert!(!loaded.compiled);
    assert_eq!(loaded.code.kind(), EngineKind::Concurrent);
}

/// A component whose one core module puts `bytes` of data in its memory at instantiation.
fn component_with_image(bytes: usize) -> Vec<u8> {
    let pages = bytes.div_ceil(65536) + 1;
    let data = "x".repeat(bytes);
    wat::parse_str(format!(
        r#"(component (core module (memory {pages}) (data (i32.const 0) "{data}")))"#
    ))
    .unwrap()
}

#[test]
fn a_large_memory_image_gets_an_engine_of_its_own_and_links_share_one() {
    let small = component_with_image(64 << 10);
    let large = component_with_image(engine::LARGE_IMAGE_BYTES as usize + 1);
    assert_eq!(engine::largest_data_image(&small), 64 << 10);
    assert_eq!(EngineKind::of(&small), EngineKind::Plain);
    assert_eq!(EngineKind::of(&large), EngineKind::LargeImage);
    assert_eq!(
        EngineKind::of(&concurrent_component()),
        EngineKind::Concurrent
    );

    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let digest = digest_of(&small);
    let own = rt.load("small", &small).unwrap();
    assert_eq!(own.code.kind(), EngineKind::Plain);
    // Linked to a large one, the small one is loaded again for the large one's engine (the
    // engines differ only in how they reset memory, so the compiled artifact is the same); its
    // own code stays what a lookup by digest finds.
    let for_link = rt
        .load_for("small", &small, EngineKind::LargeImage)
        .unwrap();
    assert_eq!(for_link.code.kind(), EngineKind::LargeImage);
    assert!(!Arc::ptr_eq(&own.code, &for_link.code));
    let again = rt.loaded_for(&digest, EngineKind::LargeImage).unwrap();
    assert!(Arc::ptr_eq(&again.code, &for_link.code));
    let found = rt.loaded(&digest).unwrap();
    assert_eq!(found.code.kind(), EngineKind::Plain);
    assert!(!rt.load("small", &small).unwrap().compiled);
    drop((own, for_link, found, rt));

    // From the cache, a fresh host picks each component's own engine again, whatever else the
    // cache holds for it.
    let again = runtime(dir.path());
    let loaded = again.load("small", &small).unwrap();
    assert!(!loaded.compiled);
    assert_eq!(loaded.code.kind(), EngineKind::Plain);
    let loaded = again.load("large", &large).unwrap();
    assert_eq!(loaded.code.kind(), EngineKind::LargeImage);
    // A WASI 0.3 component stays on its engine whatever a link asks.
    let p3 = again
        .load_for("p3", &concurrent_component(), EngineKind::LargeImage)
        .unwrap();
    assert_eq!(p3.code.kind(), EngineKind::Concurrent);
    let digest = digest_of(&concurrent_component());
    assert!(Arc::ptr_eq(&again.loaded(&digest).unwrap().code, &p3.code));
}

#[test]
fn a_link_across_wasi_generations_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let source = wat::parse_str(
        r#"(component (import "acme:pipe/sink" (instance (export "ping" (func)))))"#,
    )
    .unwrap();
    let source = rt.load("source", &source).unwrap();
    let target = rt.load("target", &concurrent_component()).unwrap();
    let interfaces = vec!["acme:pipe/sink".to_string()];
    let err = rt
        .link_components(
            "source",
            &source,
            &[LinkTarget {
                name: "target",
                loaded: &target,
                interfaces: &interfaces,
            }],
            &[],
        )
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("WASI 0.2 component"), "{err}");
    assert!(err.contains("`target` a WASI 0.3"), "{err}");
}
