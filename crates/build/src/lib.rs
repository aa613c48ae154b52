//! `weft build`: turns a guest project (Rust or Python) into `DIR/build/<name>.wasm`.
//!
//! Rust builds with rustup's `wasm32-wasip2` target when it is installed. When it is not (rustup
//! cannot download targets on every machine), Debian's `rustc-web` toolchain builds the standard
//! library for wasm itself (`-Zbuild-std`) and `wasm-component-ld` links the component.
//! Python builds with `componentize-py`, JavaScript with `componentize-js`, Go with Go's own
//! wasip1 target and `wit-bindgen go` (see [`go`]).

mod go;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The wasi:http WIT the host serves, for Python projects that bring no `wit/` folder.
const BUNDLED_WIT: &[(&str, &str)] = &[
    ("world.wit", include_str!("../wit/world.wit")),
    ("deps/cli.wit", include_str!("../wit/deps/cli.wit")),
    ("deps/clocks.wit", include_str!("../wit/deps/clocks.wit")),
    (
        "deps/filesystem.wit",
        include_str!("../wit/deps/filesystem.wit"),
    ),
    ("deps/http.wit", include_str!("../wit/deps/http.wit")),
    ("deps/io.wit", include_str!("../wit/deps/io.wit")),
    ("deps/random.wit", include_str!("../wit/deps/random.wit")),
    ("deps/sockets.wit", include_str!("../wit/deps/sockets.wit")),
];

/// The world a Python project targets unless told otherwise.
pub const DEFAULT_PYTHON_WORLD: &str = "wasi:http/proxy";

/// Why a build failed; each says what to install or change.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "{} is not a component project: it has no Cargo.toml (Rust), app.py (Python), \
         package.json (JavaScript) or go.mod (Go)",
        .0.display()
    )]
    UnknownProject(PathBuf),
    #[error("{0}")]
    Toolchain(String),
    #[error("`{command}` failed in {}:\n{output}", dir.display())]
    Failed {
        command: String,
        dir: PathBuf,
        output: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
    let context = context.into();
    move |source| BuildError::Io { context, source }
}

/// Options of one build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The WIT world of a Python project (default: `wasi:http/proxy`).
    pub world: Option<String>,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Built {
    pub path: PathBuf,
    pub size: u64,
    pub elapsed: Duration,
    /// How it was built, for the user: "rustup target", "Debian rustc-web", "componentize-py".
    pub toolchain: &'static str,
}

/// Builds the project in `dir` into `dir/build/<name>.wasm`.
pub fn build(dir: &Path, options: &BuildOptions) -> Result<Built, BuildError> {
    let dir = dir
        .canonicalize()
        .map_err(io(format!("cannot open {}", dir.display())))?;
    let started = Instant::now();
    let (path, toolchain) = if dir.join("Cargo.toml").is_file() {
        build_rust(&dir)?
    } else if dir.join("app.py").is_file() {
        build_python(&dir, options)?
    } else if dir.join("package.json").is_file() {
        build_js(&dir, options)?
    } else if dir.join("go.mod").is_file() {
        go::build_go(&dir, options)?
    } else {
        return Err(BuildError::UnknownProject(dir));
    };
    let size = std::fs::metadata(&path)
        .map_err(io(format!("cannot read {}", path.display())))?
        .len();
    Ok(Built {
        path,
        size,
        elapsed: started.elapsed(),
        toolchain,
    })
}

/// Runs a manifest's own build command (`properties.build.command`) with `sh -c` in `dir`; its
/// output is shown when it fails.
pub fn run_command(command: &str, dir: &Path) -> Result<(), BuildError> {
    let mut shell = Command::new("sh");
    shell.arg("-c").arg(command);
    run(shell, dir)
}

fn run(mut command: Command, dir: &Path) -> Result<(), BuildError> {
    let shown = format!("{command:?}");
    tracing::info!(command = %shown, "building");
    let output = command
        .current_dir(dir)
        .output()
        .map_err(io(format!("cannot run {shown}")))?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    // The end of a compiler's output holds the error; keep the message readable.
    let tail: Vec<&str> = text.lines().rev().take(60).collect();
    Err(BuildError::Failed {
        command: shown,
        dir: dir.to_path_buf(),
        output: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    })
}

#[derive(serde::Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    target_directory: PathBuf,
    workspace_root: PathBuf,
}

#[derive(serde::Deserialize)]
struct Package {
    name: String,
    manifest_path: PathBuf,
    targets: Vec<Target>,
}

#[derive(serde::Deserialize)]
struct Target {
    name: String,
    crate_types: Vec<String>,
}

/// Environment a parent cargo (as under `cargo test`) leaves behind that would redirect the
/// guest's build.
const CARGO_ENV_TO_CLEAR: &[&str] = &[
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTDOC",
    "CARGO_MAKEFLAGS",
    "CARGO_PRIMARY_PACKAGE",
];

fn cargo_command(program: &str) -> Command {
    let mut command = Command::new(program);
    for var in CARGO_ENV_TO_CLEAR {
        command.env_remove(var);
    }
    command
}

fn build_rust(dir: &Path) -> Result<(PathBuf, &'static str), BuildError> {
    let route = RustRoute::detect()?;
    let mut metadata = cargo_command(route.cargo());
    metadata.args(["metadata", "--no-deps", "--format-version", "1"]);
    let output = metadata
        .current_dir(dir)
        .output()
        .map_err(io("cannot run cargo metadata"))?;
    if !output.status.success() {
        return Err(BuildError::Failed {
            command: "cargo metadata".into(),
            dir: dir.to_path_buf(),
            output: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let metadata: Metadata = serde_json::from_slice(&output.stdout)
        .map_err(|e| BuildError::Toolchain(format!("cannot read cargo metadata: {e}")))?;
    let manifest = dir.join("Cargo.toml");
    let package = metadata
        .packages
        .iter()
        .find(|p| p.manifest_path == manifest)
        .ok_or_else(|| {
            BuildError::Toolchain(format!(
                "{} is not a package of its cargo workspace",
                manifest.display()
            ))
        })?;
    let target = package
        .targets
        .iter()
        .find(|t| t.crate_types.iter().any(|c| c == "cdylib" || c == "bin"))
        .ok_or_else(|| {
            BuildError::Toolchain(format!(
                "package `{}` has no cdylib or bin target; add `[lib] crate-type = [\"cdylib\"]`",
                package.name
            ))
        })?;

    // A project of its own (as `weft new` writes) may share one target directory with others,
    // so the standard library for wasm is built once: only when asked, because cargo cannot
    // tell two standalone crates of the same name apart and would hand one the other's build.
    let target_directory = match shared_target_dir() {
        Some(shared) if metadata.workspace_root == dir => shared,
        _ => metadata.target_directory,
    };
    let mut cargo = cargo_command(route.cargo());
    cargo.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--package",
        &package.name,
    ]);
    cargo.arg("--target-dir").arg(&target_directory);
    route.configure(&mut cargo);
    let artifact = target_directory
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", target.name.replace('-', "_")));
    // Cargo copies a crate's output to this path when it builds it, but not again when the crate
    // is fresh: another crate of the same name in a shared target dir may have written it since.
    // Removed, it is always copied anew from this crate's own output.
    let _ = std::fs::remove_file(&artifact);
    run(cargo, dir)?;

    let out_dir = dir.join("build");
    std::fs::create_dir_all(&out_dir)
        .map_err(io(format!("cannot create {}", out_dir.display())))?;
    let out = out_dir.join(format!("{}.wasm", package.name));
    std::fs::copy(&artifact, &out).map_err(io(format!(
        "cannot copy {} to {}",
        artifact.display(),
        out.display()
    )))?;
    Ok((out, route.describe()))
}

/// Where standalone projects build when they share a target dir: `WEFT_CARGO_TARGET_DIR`.
fn shared_target_dir() -> Option<PathBuf> {
    std::env::var_os("WEFT_CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

/// How Rust reaches wasm32-wasip2 on this machine.
enum RustRoute {
    Rustup,
    Debian,
}

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_STD_SRC: &str = "/usr/lib/rustlib/src/rust/library";
const WASI_LIBC: &str = "/usr/lib/wasm32-wasi";
const WASM_LD: &str = "/usr/lib/llvm-19/bin/wasm-ld";

impl RustRoute {
    fn detect() -> Result<Self, BuildError> {
        let rustup_has_target = Command::new("rustup")
            .args(["target", "list", "--installed"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .is_some_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.trim() == "wasm32-wasip2")
            });
        if rustup_has_target {
            return Ok(RustRoute::Rustup);
        }
        let missing: Vec<&str> = [
            (DEBIAN_RUSTC, "rustc-web"),
            (DEBIAN_CARGO, "cargo-web"),
            (DEBIAN_STD_SRC, "rust-web-src"),
            (WASI_LIBC, "wasi-libc"),
            (WASM_LD, "lld-19"),
        ]
        .into_iter()
        .filter(|(path, _)| !Path::new(path).exists())
        .map(|(_, package)| package)
        .collect();
        let has_linker = Command::new("wasm-component-ld")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if missing.is_empty() && has_linker {
            return Ok(RustRoute::Debian);
        }
        let mut advice = String::from(
            "no toolchain for wasm32-wasip2: run `rustup target add wasm32-wasip2`, or, where rustup cannot download",
        );
        if !missing.is_empty() {
            advice.push_str(&format!(", `apt-get install {}`", missing.join(" ")));
        }
        if !has_linker {
            advice.push_str(", `cargo install wasm-component-ld`");
        }
        advice.push_str(" (scripts/setup.sh does all of it)");
        Err(BuildError::Toolchain(advice))
    }

    fn cargo(&self) -> &'static str {
        match self {
            RustRoute::Rustup => "cargo",
            RustRoute::Debian => DEBIAN_CARGO,
        }
    }

    fn configure(&self, cargo: &mut Command) {
        if let RustRoute::Debian = self {
            cargo
                .env("RUSTC", DEBIAN_RUSTC)
                .env("RUSTC_BOOTSTRAP", "1")
                .env(
                    "RUSTFLAGS",
                    format!(
                        "-L {WASI_LIBC} -C link-self-contained=no -C link-arg=--wasm-ld-path={WASM_LD}"
                    ),
                )
                .env("CARGO_TARGET_WASM32_WASIP2_LINKER", "wasm-component-ld")
                .args(["-Zbuild-std=std,panic_abort"]);
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            RustRoute::Rustup => "rustup target wasm32-wasip2",
            RustRoute::Debian => "Debian rustc-web with -Zbuild-std",
        }
    }
}

fn build_python(dir: &Path, options: &BuildOptions) -> Result<(PathBuf, &'static str), BuildError> {
    let has_componentize = Command::new("componentize-py")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_componentize {
        return Err(BuildError::Toolchain(
            "componentize-py is not installed: run `pip install componentize-py==0.25.1` \
             (scripts/setup.sh does it)"
                .into(),
        ));
    }
    // The project's own WIT as it is; else the bundled wasi:http WIT, written for this build.
    let bundled;
    let wit_dir = if dir.join("wit").is_dir() {
        dir.join("wit")
    } else {
        bundled = project_wit(&dir.join("wit"), None)?;
        bundled.path().to_path_buf()
    };
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("app")
        .to_string();
    let out_dir = dir.join("build");
    std::fs::create_dir_all(&out_dir)
        .map_err(io(format!("cannot create {}", out_dir.display())))?;
    let out = out_dir.join(format!("{name}.wasm"));
    let mut command = Command::new("componentize-py");
    command
        .arg("-d")
        .arg(&wit_dir)
        .arg("-w")
        .arg(
            options
                .world
                .clone()
                .or_else(|| own_world(&wit_dir, &name))
                .as_deref()
                .unwrap_or(DEFAULT_PYTHON_WORLD),
        )
        .arg("componentize")
        .arg("app")
        .arg("-o")
        .arg(&out);
    run(command, dir)?;
    Ok((out, "componentize-py"))
}

/// The componentize-js weft's setup installs; its engine decides the WASI version JS builds for.
pub const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js@0.23.0";

/// The world a JavaScript project without WIT of its own builds for.
const DEFAULT_JS_WORLD: &str = "weft:guest/http";

fn build_js(dir: &Path, options: &BuildOptions) -> Result<(PathBuf, &'static str), BuildError> {
    let engine = componentize_js_engine().ok_or_else(|| {
        BuildError::Toolchain(format!(
            "componentize-js is not installed: run `npm install -g {COMPONENTIZE_JS}` \
             (scripts/setup.sh does it)"
        ))
    })?;
    let version = engine_wasi_version(&engine).unwrap_or_else(|| {
        tracing::warn!(engine = %engine.display(), "cannot tell which WASI 0.2 version componentize-js serves; assuming 0.2.10");
        "0.2.10".to_string()
    });
    let entry = js_entry(dir)?;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("app")
        .to_string();
    // The WIT the engine was built against: WASI's packages at its version, the project's own
    // WIT (if any) on top, its WASI references moved to that version too.
    let own = dir.join("wit");
    let wit = project_wit(&own, Some(&version))?;
    let world = options
        .world
        .clone()
        .or_else(|| own_world(&own, &name))
        .unwrap_or_else(|| DEFAULT_JS_WORLD.to_string());
    let out_dir = dir.join("build");
    std::fs::create_dir_all(&out_dir)
        .map_err(io(format!("cannot create {}", out_dir.display())))?;
    let out = out_dir.join(format!("{name}.wasm"));
    let mut command = Command::new("componentize-js");
    command
        .arg(&entry)
        .arg("--wit")
        .arg(wit.path())
        .arg("--world-name")
        .arg(&world)
        .arg("-o")
        .arg(&out);
    run(command, dir)?;
    Ok((out, "componentize-js"))
}

/// The module a JavaScript project starts from: package.json's `main`, else app.js, index.js or
/// src/index.js.
fn js_entry(dir: &Path) -> Result<PathBuf, BuildError> {
    let manifest = std::fs::read_to_string(dir.join("package.json"))
        .map_err(io("cannot read package.json"))?;
    let manifest: serde_json::Value = serde_json::from_str(&manifest)
        .map_err(|e| BuildError::Toolchain(format!("package.json is not valid JSON: {e}")))?;
    let declared = manifest["main"].as_str().map(|m| dir.join(m));
    declared
        .into_iter()
        .chain(["app.js", "index.js", "src/index.js"].map(|f| dir.join(f)))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            BuildError::Toolchain(format!(
                "{} has no JavaScript to build: set `main` in package.json, or write app.js",
                dir.display()
            ))
        })
}

/// Writes `contents` to `path`, creating its directory.
fn write_file(path: &Path, contents: &[u8]) -> Result<(), BuildError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(io(format!("cannot create {}", parent.display())))?;
    }
    std::fs::write(path, contents).map_err(io(format!("cannot write {}", path.display())))
}

/// The project's WIT (`own`, if it exists) in a temporary dir, with WASI 0.2's packages added
/// under deps/ where it brings none; every WASI reference moved to `retarget` when given.
fn project_wit(own: &Path, retarget: Option<&str>) -> Result<tempfile::TempDir, BuildError> {
    let wit = tempfile::tempdir().map_err(io("cannot create a temporary WIT dir"))?;
    let write = |path: &Path, text: &str| match retarget {
        Some(version) => write_file(path, retarget_wasi(text, version).as_bytes()),
        None => write_file(path, text.as_bytes()),
    };
    if own.is_dir() {
        copy_wit(own, wit.path(), &write)?;
    }
    for (file, text) in BUNDLED_WIT {
        let is_root = !file.starts_with("deps/");
        let target = wit.path().join(file);
        if (is_root && own.is_dir()) || target.exists() {
            continue;
        }
        write(&target, text)?;
    }
    Ok(wit)
}

/// Copies the project's WIT files (and its deps) into `to`.
fn copy_wit(
    from: &Path,
    to: &Path,
    write: &dyn Fn(&Path, &str) -> Result<(), BuildError>,
) -> Result<(), BuildError> {
    let entries = std::fs::read_dir(from).map_err(io(format!("cannot read {}", from.display())))?;
    for entry in entries {
        let entry = entry.map_err(io("cannot read the WIT dir"))?;
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_wit(&path, &target, write)?;
        } else if path.extension().is_some_and(|x| x == "wit") {
            let text = std::fs::read_to_string(&path)
                .map_err(io(format!("cannot read {}", path.display())))?;
            write(&target, &text)?;
        }
    }
    Ok(())
}

/// `text` with every `wasi:…@0.2.N` reference (and WASI package declaration) at `version`, and
/// no `@since` gate newer than it (those items exist in the engine's version only if it has them).
fn retarget_wasi(text: &str, version: &str) -> String {
    let moved = retarget_references(text, version);
    let patch = |v: &str| v.strip_prefix("0.2.").and_then(|p| p.parse::<u32>().ok());
    let Some(target) = patch(version) else {
        return moved;
    };
    let gate = "@since(version = ";
    let mut out = String::with_capacity(moved.len());
    let mut rest = moved.as_str();
    while let Some(at) = rest.find(gate) {
        let (before, from) = rest.split_at(at + gate.len());
        out.push_str(before);
        let end = from.find(')').unwrap_or(from.len());
        let (gated, after) = from.split_at(end);
        match patch(gated) {
            Some(n) if n > target => out.push_str(version),
            _ => out.push_str(gated),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

fn retarget_references(text: &str, version: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("wasi:") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        // The reference ends at the first character a WIT name cannot hold.
        let end = from
            .find(|c: char| {
                !(c.is_ascii_alphanumeric()
                    || matches!(c, ':' | '/' | '-' | '@' | '.' | '{' | '}' | ','))
            })
            .unwrap_or(from.len());
        let (reference, after) = from.split_at(end);
        match reference.find("@0.2.") {
            Some(v) => {
                let digits = reference[v + 5..]
                    .find(|c: char| !c.is_ascii_digit())
                    .map_or(reference.len(), |d| v + 5 + d);
                out.push_str(&reference[..v + 1]);
                out.push_str(version);
                out.push_str(&reference[digits..]);
            }
            None => out.push_str(reference),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The engine (`starlingmonkey_embedding.wasm`) of the componentize-js on PATH.
fn componentize_js_engine() -> Option<PathBuf> {
    let bin = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("componentize-js"))
            .find(|p| p.is_file())
    })?;
    let cli = bin.canonicalize().ok()?;
    let engine = cli
        .parent()?
        .parent()?
        .join("lib/starlingmonkey_embedding.wasm");
    engine.is_file().then_some(engine)
}

/// The WASI 0.2 version the engine exports its HTTP handler at (`0.2.10` for 0.23.0).
fn engine_wasi_version(engine: &Path) -> Option<String> {
    let bytes = std::fs::read(engine).ok()?;
    let needle = b"wasi:http/incoming-handler@";
    let at = bytes.windows(needle.len()).position(|w| w == needle)? + needle.len();
    let version: String = bytes[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .map(|b| char::from(*b))
        .collect();
    version.starts_with("0.2.").then_some(version)
}

/// The world a project with its own WIT builds by default: the one named like the project.
fn own_world(wit_dir: &Path, project: &str) -> Option<String> {
    let declares = |text: &str| {
        text.lines()
            .any(|l| l.trim_start().starts_with(&format!("world {project} ")))
    };
    let entries = std::fs::read_dir(wit_dir).ok()?;
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "wit"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .any(|text| declares(&text))
        .then(|| project.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasi_references_move_to_the_engine_s_version_and_nothing_else_does() {
        let text = "package wasi:http@0.2.12;\nworld w {\n  include wasi:http/proxy@0.2.12;\n  \
                    import weft:greet/greeter@0.1.0;\n  use wasi:io/streams@0.2.3.{input-stream};\n  \
                    @since(version = 0.2.12)\n  f: func();\n  @since(version = 0.2.0)\n}\n";
        let moved = retarget_wasi(text, "0.2.10");
        assert_eq!(
            moved,
            "package wasi:http@0.2.10;\nworld w {\n  include wasi:http/proxy@0.2.10;\n  \
             import weft:greet/greeter@0.1.0;\n  use wasi:io/streams@0.2.10.{input-stream};\n  \
             @since(version = 0.2.10)\n  f: func();\n  @since(version = 0.2.0)\n}\n"
        );
    }

    #[test]
    fn an_empty_dir_is_not_a_project() {
        let dir = tempfile::tempdir().unwrap();
        let err = build(dir.path(), &BuildOptions::default()).unwrap_err();
        assert!(matches!(err, BuildError::UnknownProject(_)), "{err}");
    }

    #[test]
    fn the_bundled_wit_declares_the_http_world() {
        assert!(BUNDLED_WIT[0].1.contains("include wasi:http/proxy@0.2.12"));
        assert!(BUNDLED_WIT
            .iter()
            .any(|(name, text)| *name == "deps/http.wit"
                && text.contains("package wasi:http@0.2.12")));
    }
}
