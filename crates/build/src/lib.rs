//! `weft build`: turns a guest project (Rust or Python) into `DIR/build/<name>.wasm`.
//!
//! Rust builds with rustup's `wasm32-wasip2` target when it is installed. When it is not (rustup
//! cannot download targets on every machine), Debian's `rustc-web` toolchain builds the standard
//! library for wasm itself (`-Zbuild-std`) and `wasm-component-ld` links the component.
//! Python builds with `componentize-py`.

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
        "{} is not a component project: it has neither Cargo.toml (Rust) nor app.py (Python)",
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

    // A project of its own (as `weft new` writes) shares one target directory with every
    // other, so the standard library for wasm is built once per machine, not once per project.
    let target_directory = if metadata.workspace_root == dir {
        shared_target_dir().unwrap_or(metadata.target_directory)
    } else {
        metadata.target_directory
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
    run(cargo, dir)?;

    let artifact = target_directory
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", target.name.replace('-', "_")));
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

/// Where standalone projects build: `WEFT_CARGO_TARGET_DIR`, else `weft/cargo-target` under the
/// user's cache dir.
fn shared_target_dir() -> Option<PathBuf> {
    std::env::var_os("WEFT_CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("weft/cargo-target")))
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
    let bundled;
    let wit_dir = if dir.join("wit").is_dir() {
        dir.join("wit")
    } else {
        bundled = tempfile::tempdir().map_err(io("cannot create a temporary WIT dir"))?;
        for (name, text) in BUNDLED_WIT {
            let path = bundled.path().join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io("cannot write the bundled WIT"))?;
            }
            std::fs::write(&path, text).map_err(io("cannot write the bundled WIT"))?;
        }
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
