//! Content-addressed component bytes in the state dir, so stored apps do not depend on the
//! build directories they were deployed from.

use std::path::{Path, PathBuf};

use weft_runtime::digest_of;

/// A directory of `<sha256>.wasm` files.
pub struct BlobStore {
    dir: PathBuf,
}

/// Why a blob could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("component bytes do not match digest {expected} (they hash to {actual})")]
    DigestMismatch { expected: String, actual: String },
    #[error("`{0}` is not a sha256 digest (64 lowercase hex characters)")]
    BadDigest(String),
    #[error("the upload {0}; nothing was stored")]
    NotAComponent(#[from] weft_api::NotAComponent),
    #[error("component {0} has not been uploaded to this host")]
    Missing(String),
    #[error("component store {}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

impl BlobStore {
    /// Opens (or creates) the store under `dir`.
    pub fn open(dir: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(dir).map_err(|source| BlobError::Io {
            dir: dir.to_path_buf(),
            source,
        })?;
        Ok(BlobStore {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, digest: &str) -> Result<PathBuf, BlobError> {
        let valid = digest.len() == 64
            && digest
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
        if !valid {
            return Err(BlobError::BadDigest(digest.to_string()));
        }
        Ok(self.dir.join(format!("{digest}.wasm")))
    }

    fn io(&self, source: std::io::Error) -> BlobError {
        BlobError::Io {
            dir: self.dir.clone(),
            source,
        }
    }

    /// Whether the blob is present.
    pub fn contains(&self, digest: &str) -> Result<bool, BlobError> {
        Ok(self.path(digest)?.exists())
    }

    /// Stores bytes under their digest, checking it; written atomically.
    pub fn put(&self, digest: &str, bytes: &[u8]) -> Result<(), BlobError> {
        let path = self.path(digest)?;
        let actual = digest_of(bytes);
        if actual != digest {
            return Err(BlobError::DigestMismatch {
                expected: digest.to_string(),
                actual,
            });
        }
        if path.exists() {
            return Ok(());
        }
        weft_api::check_component(bytes)?;
        let tmp = self.dir.join(format!(
            ".{digest}.{}.{}.tmp",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::write(&tmp, bytes).map_err(|e| self.io(e))?;
        std::fs::rename(&tmp, &path).map_err(|e| self.io(e))
    }

    /// Deletes every component not in `keep` (and every half-written upload) last modified
    /// more than `grace` ago: an upload younger than that may belong to a deploy still under
    /// way. Returns how many files were deleted.
    pub fn retain(
        &self,
        keep: &std::collections::BTreeSet<String>,
        grace: std::time::Duration,
    ) -> Result<usize, BlobError> {
        let mut deleted = 0;
        for entry in std::fs::read_dir(&self.dir).map_err(|e| self.io(e))? {
            let entry = entry.map_err(|e| self.io(e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let unused = match name.strip_suffix(".wasm") {
                Some(digest) => !keep.contains(digest),
                None => name.ends_with(".tmp"),
            };
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age > grace);
            if unused && old {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => deleted += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(self.io(e)),
                }
            }
        }
        Ok(deleted)
    }

    /// Reads a blob.
    pub fn get(&self, digest: &str) -> Result<Vec<u8>, BlobError> {
        let path = self.path(digest)?;
        match std::fs::read(&path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(BlobError::Missing(digest.to_string()))
            }
            Err(e) => Err(self.io(e)),
        }
    }
}
