//! `weft dev`: build, deploy and serve a project, then rebuild and redeploy it on every save.
//! A save that does not build leaves the running version serving; one that builds replaces it
//! the way any deploy does, with no failed request.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result};
use sha2::{Digest as _, Sha256};
use weft_client::Client;

/// Names under a project that never hold its sources: build outputs, caches, VCS data.
const IGNORED: &[&str] = &["build", "target", "node_modules", "__pycache__", ".weft"];

/// How long the tree must be quiet after a change before rebuilding (an editor's save is
/// several events).
const SETTLE: Duration = Duration::from_millis(300);

/// Whether a changed path is a source of the project rooted at `root`.
fn is_source(root: &Path, path: &Path) -> bool {
    let Ok(relative) = path.strip_prefix(root) else {
        return false;
    };
    let mut parts = relative.components().peekable();
    while let Some(part) = parts.next() {
        let name = part.as_os_str().to_string_lossy();
        if name.starts_with('.') || IGNORED.contains(&name.as_ref()) {
            return false;
        }
        // Editors' swap and backup files.
        if parts.peek().is_none() && (name.ends_with('~') || name.ends_with(".swp")) {
            return false;
        }
    }
    true
}

/// The version a dev build deploys as: the manifest's, marked as a dev build of this content.
fn dev_version(request: &weft_api::DeployRequest, declared: Option<&str>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(request.manifest.as_bytes());
    for (image, digest) in &request.images {
        hasher.update(image.as_bytes());
        hasher.update(digest.as_bytes());
    }
    let hash = hex::encode(hasher.finalize());
    format!("{}-dev.{}", declared.unwrap_or("v0"), &hash[..10])
}

/// A spinner on a terminal; plain lines otherwise (a log, a test).
struct Step(Option<indicatif::ProgressBar>);

impl Step {
    fn start(message: String) -> Self {
        use std::io::IsTerminal as _;
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new_spinner().with_message(message);
            bar.enable_steady_tick(Duration::from_millis(120));
            Step(Some(bar))
        } else {
            eprintln!("{message}");
            Step(None)
        }
    }

    fn finish(self, message: String) {
        match self.0 {
            Some(bar) => bar.finish_with_message(message),
            None => eprintln!("{message}"),
        }
    }

    fn fail(self) {
        if let Some(bar) = self.0 {
            bar.finish_and_clear();
        }
    }
}

/// What `weft dev` works on: the project and its manifest.
pub struct Project {
    pub root: PathBuf,
    pub manifest: PathBuf,
}

impl Project {
    /// The project in `dir` (its `app.yaml`), or the manifest `dir` names.
    pub fn find(dir: &Path) -> Result<Self> {
        let (root, manifest) = if dir.is_file() {
            let root = dir.parent().unwrap_or(Path::new(".")).to_path_buf();
            (root, dir.to_path_buf())
        } else {
            (dir.to_path_buf(), dir.join("app.yaml"))
        };
        if !manifest.is_file() {
            anyhow::bail!(
                "{} has no app.yaml; start a project with `weft new NAME`, or give the manifest: \
                 `weft dev path/to/app.yaml`",
                dir.display()
            );
        }
        let root = root
            .canonicalize()
            .with_context(|| format!("cannot open {}", root.display()))?;
        let manifest = manifest
            .canonicalize()
            .with_context(|| format!("cannot open {}", manifest.display()))?;
        Ok(Project { root, manifest })
    }

    /// Builds every component project of the manifest and deploys the result under a derived
    /// version. An error leaves whatever runs untouched.
    pub async fn build_and_deploy(
        &self,
        client: &Client,
        registries: &weft_oci::Registries,
        first: bool,
    ) -> Result<()> {
        let hint = if first {
            " (the first Rust build of a project compiles the standard library for wasm, which \
             takes minutes; componentize-py and componentize-js take some seconds)"
        } else {
            ""
        };
        let step = Step::start(format!("building {}{hint}", self.root.display()));
        let manifest = self.manifest.clone();
        let started = std::time::Instant::now();
        let prepared =
            tokio::task::spawn_blocking(move || weft_client::prepare_deploy(&manifest, true))
                .await?;
        let mut prepared = match prepared {
            Ok(prepared) => prepared,
            Err(e) => {
                step.fail();
                return Err(e.into());
            }
        };
        step.finish(format!("built in {:.1}s", started.elapsed().as_secs_f64()));
        let references: Vec<String> = prepared.references().map(str::to_string).collect();
        if references.is_empty() {
            prepared.resolve(registries).await?;
        } else {
            let step = Step::start(format!("resolving {}", references.join(", ")));
            match prepared.resolve(registries).await {
                Ok(()) => step.finish(format!("resolved {} image(s)", references.len())),
                Err(e) => {
                    step.fail();
                    return Err(e.into());
                }
            }
        }
        prepared.request.version = Some(dev_version(
            &prepared.request,
            prepared.declared_version.as_deref(),
        ));
        // Uploading is what takes long for a big component (CPython is 18 MB); a pull from a
        // registry happens here too, for images the host does not hold yet.
        let step = Step::start(format!("deploying {}", prepared.app_name));
        let deploying = std::time::Instant::now();
        let outcome = match client.deploy(&prepared, registries).await {
            Ok(outcome) => {
                step.finish(format!("sent in {:.1}s", deploying.elapsed().as_secs_f64()));
                outcome
            }
            Err(e) => {
                step.fail();
                return Err(e.into());
            }
        };
        crate::commands::print_outcome(&outcome);
        Ok(())
    }
}

/// When each source file under `root` was last modified.
pub fn source_times(root: &Path) -> BTreeMap<PathBuf, SystemTime> {
    let mut times = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !is_source(root, &path) {
                continue;
            }
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => dirs.push(path),
                Ok(meta) => {
                    if let Ok(modified) = meta.modified() {
                        times.insert(path, modified);
                    }
                }
                Err(_) => {}
            }
        }
    }
    times
}

/// The files of `before` (from [`source_times`]) that have been modified or removed since: the
/// saves made while the first build ran, before [`watch`] could see them. Files the build
/// created (a `Cargo.lock`) are not among them.
pub fn changed_since(root: &Path, before: &BTreeMap<PathBuf, SystemTime>) -> BTreeSet<PathBuf> {
    let now = source_times(root);
    before
        .iter()
        .filter(|(path, modified)| now.get(*path) != Some(modified))
        .map(|(path, _)| path.clone())
        .collect()
}

/// Watches `root` and sends each batch of source changes, once the tree has settled.
pub fn watch(
    root: &Path,
) -> Result<(
    notify::RecommendedWatcher,
    tokio::sync::mpsc::UnboundedReceiver<BTreeSet<PathBuf>>,
)> {
    use notify::Watcher as _;
    let (raw_tx, mut raw_rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let base = root.to_path_buf();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        for path in event.paths {
            if is_source(&base, &path) {
                let _ = raw_tx.send(path);
            }
        }
    })
    .context("cannot watch the project's files")?;
    watcher
        .watch(root, notify::RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", root.display()))?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(first) = raw_rx.recv().await {
            let mut changed = BTreeSet::from([first]);
            loop {
                match tokio::time::timeout(SETTLE, raw_rx.recv()).await {
                    Ok(Some(path)) => {
                        changed.insert(path);
                    }
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if tx.send(changed).is_err() {
                return;
            }
        }
    });
    Ok((watcher, rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_save_during_the_first_build_is_found_and_a_file_it_created_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("src/lib.rs"), "fn a() {}").unwrap();
        std::fs::write(root.join("app.yaml"), "kind: x").unwrap();
        let before = source_times(root);
        assert_eq!(before.len(), 2);
        assert!(changed_since(root, &before).is_empty());

        let file = std::fs::File::options()
            .write(true)
            .open(root.join("src/lib.rs"))
            .unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(5))
            .unwrap();
        std::fs::write(root.join("Cargo.lock"), "# made by the build").unwrap();
        std::fs::create_dir_all(root.join("target/debug")).unwrap();
        std::fs::write(root.join("target/debug/x"), "").unwrap();
        assert_eq!(
            changed_since(root, &before),
            BTreeSet::from([root.join("src/lib.rs")])
        );
    }

    #[test]
    fn only_sources_trigger_a_rebuild() {
        let root = Path::new("/p");
        assert!(is_source(root, Path::new("/p/src/lib.rs")));
        assert!(is_source(root, Path::new("/p/app.yaml")));
        assert!(is_source(root, Path::new("/p/app.py")));
        assert!(!is_source(root, Path::new("/p/build/p.wasm")));
        assert!(!is_source(root, Path::new("/p/target/release/x")));
        assert!(!is_source(root, Path::new("/p/.git/index")));
        assert!(!is_source(root, Path::new("/p/src/.lib.rs.swp")));
        assert!(!is_source(root, Path::new("/p/src/lib.rs~")));
        assert!(!is_source(root, Path::new("/p/__pycache__/app.pyc")));
        assert!(!is_source(root, Path::new("/elsewhere/x.rs")));
    }

    #[test]
    fn a_dev_version_follows_the_content() {
        let request = |manifest: &str, digest: &str| weft_api::DeployRequest {
            manifest: manifest.into(),
            origin: "app.yaml".into(),
            images: [("./build/a.wasm".to_string(), digest.to_string())].into(),
            caps: Default::default(),
            version: None,
        };
        let a = dev_version(&request("m", "d1"), Some("v1"));
        assert!(a.starts_with("v1-dev."), "{a}");
        assert_eq!(a, dev_version(&request("m", "d1"), Some("v1")));
        assert_ne!(a, dev_version(&request("m", "d2"), Some("v1")));
        assert!(weft_manifest::is_valid_name(&a));
    }
}
