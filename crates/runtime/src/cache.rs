//! The on-disk compile cache: compiled code keyed by the component's sha256 and the engine's
//! compatibility hash, so a redeploy of an unchanged component compiles nothing.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;

/// Where compiled artifacts for one engine configuration live.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    /// A cache under `root`, in a subdirectory specific to this engine's settings and version.
    pub fn new(root: &Path, engine: &Engine) -> std::io::Result<Self> {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_id = hex::encode(&hasher.0.finalize()[..12]);
        let dir = root.join(engine_id);
        std::fs::create_dir_all(&dir)?;
        Ok(CompileCache { dir })
    }

    /// The artifact path of the component with this sha256 digest (hex).
    pub fn path_for(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.cwasm"))
    }

    /// Stores an artifact atomically: readers see the old file, no file, or the whole new one.
    pub fn store(&self, digest: &str, artifact: &[u8]) -> std::io::Result<()> {
        let path = self.path_for(digest);
        let tmp = self
            .dir
            .join(format!(".{digest}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, artifact)?;
        std::fs::rename(&tmp, &path)
    }
}

/// Feeds `Hash` output into sha256, which, unlike `DefaultHasher`, is stable across builds.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
