//! Blobstore in a directory: a container is a subdirectory, an object a file. Names are
//! percent-encoded into file names, so no object name can reach outside its container (`..`,
//! `/`), and a write lands in a temporary file renamed into place, so readers see whole objects.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use weft_manifest::Grant;

use super::{slice, BlobError, BlobStore, Stat};
use serde::Deserialize;

use crate::catalog::{check_config, Backend, BackendError, Opener};
use crate::settings::typed;
use crate::Placement;

struct Filesystem {
    root: PathBuf,
}

/// The directory a grant names: `root` from config, else `<state>/blobstore/<app>/<capability>`.
pub(super) const BACKEND: Backend<dyn BlobStore> = Backend {
    name: "filesystem",
    images: &["blobstore-fs", "blobstore-filesystem"],
    check: check_config::<Config>,
    open,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The directory; `<state>/blobstore/<app>/<capability>` when not given.
    root: Option<PathBuf>,
}

fn open(at: &Placement<'_>, grant: &Grant) -> Result<Opener<dyn BlobStore>, BackendError> {
    let config: Config = typed(&grant.settings)?;
    let root = match config.root {
        Some(root) => root,
        None => at
            .state_dir
            .join("blobstore")
            .join(at.app)
            .join(&grant.capability),
    };
    Ok((
        format!("filesystem:{}", root.display()),
        Box::new(move || {
            std::fs::create_dir_all(&root)
                .map_err(|e| BackendError(format!("cannot create {}: {e}", root.display())))?;
            Ok(Arc::new(Filesystem { root }) as Arc<dyn BlobStore>)
        }),
    ))
}

/// A name as a single safe path component: bytes outside `[A-Za-z0-9_-]` become `%XX`.
fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push('%');
    }
    out
}

fn decode(file: &str) -> Option<String> {
    if file == "%" {
        return Some(String::new());
    }
    let mut bytes = Vec::with_capacity(file.len());
    let mut rest = file.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

fn io(what: &str, path: &Path, e: std::io::Error) -> BlobError {
    BlobError(format!("{what} {}: {e}", path.display()))
}

fn seconds(time: std::io::Result<std::time::SystemTime>) -> u64 {
    time.ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

impl Filesystem {
    fn container(&self, container: &str) -> PathBuf {
        self.root.join(encode(container))
    }

    fn existing(&self, container: &str) -> Result<PathBuf, BlobError> {
        let dir = self.container(container);
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(format!("container `{container}` does not exist").into())
        }
    }

    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<R, BlobError> + Send + 'static,
    ) -> Result<R, BlobError> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| format!("blobstore task failed: {e}"))?
    }
}

#[async_trait::async_trait]
impl BlobStore for Filesystem {
    async fn create_container(&self, container: &str) -> Result<(), BlobError> {
        let dir = self.container(container);
        let name = container.to_string();
        self.blocking(move || match std::fs::create_dir(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(format!("container `{name}` already exists").into())
            }
            Err(e) => Err(io("cannot create", &dir, e)),
        })
        .await
    }

    async fn container_exists(&self, container: &str) -> Result<bool, BlobError> {
        Ok(self.container(container).is_dir())
    }

    async fn container_info(&self, container: &str) -> Result<Stat, BlobError> {
        let dir = self.existing(container)?;
        let meta = std::fs::metadata(&dir).map_err(|e| io("cannot read", &dir, e))?;
        Ok(Stat {
            created_at: seconds(meta.created().or_else(|_| meta.modified())),
            size: 0,
        })
    }

    async fn delete_container(&self, container: &str) -> Result<(), BlobError> {
        let dir = self.existing(container)?;
        self.blocking(move || {
            std::fs::remove_dir_all(&dir).map_err(|e| io("cannot delete", &dir, e))
        })
        .await
    }

    async fn read(
        &self,
        container: &str,
        object: &str,
        start: u64,
        end: u64,
    ) -> Result<Bytes, BlobError> {
        let path = self.existing(container)?.join(encode(object));
        let (object, container) = (object.to_string(), container.to_string());
        self.blocking(move || match std::fs::read(&path) {
            Ok(data) => Ok(slice(&Bytes::from(data), start, end)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(format!("object `{object}` is not in container `{container}`").into())
            }
            Err(e) => Err(io("cannot read", &path, e)),
        })
        .await
    }

    async fn write(&self, container: &str, object: &str, data: Bytes) -> Result<(), BlobError> {
        let dir = self.existing(container)?;
        let file = encode(object);
        self.blocking(move || {
            use std::io::Write;
            let path = dir.join(&file);
            let mut temp = tempfile::NamedTempFile::new_in(&dir)
                .map_err(|e| io("cannot write in", &dir, e))?;
            temp.write_all(&data)
                .map_err(|e| io("cannot write", &path, e))?;
            temp.as_file()
                .sync_all()
                .map_err(|e| io("cannot write", &path, e))?;
            temp.persist(&path)
                .map_err(|e| io("cannot write", &path, e.error))?;
            Ok(())
        })
        .await
    }

    async fn list(&self, container: &str) -> Result<Vec<String>, BlobError> {
        let dir = self.existing(container)?;
        self.blocking(move || {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(&dir).map_err(|e| io("cannot list", &dir, e))? {
                let entry = entry.map_err(|e| io("cannot list", &dir, e))?;
                let file = entry.file_name();
                // Temporary files of writes in progress start with `.`; they are not objects.
                if let Some(name) = file
                    .to_str()
                    .filter(|f| !f.starts_with('.'))
                    .and_then(decode)
                {
                    names.push(name);
                }
            }
            names.sort();
            Ok(names)
        })
        .await
    }

    async fn delete(&self, container: &str, object: &str) -> Result<(), BlobError> {
        let path = self.existing(container)?.join(encode(object));
        self.blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("cannot delete", &path, e)),
        })
        .await
    }

    async fn stat(&self, container: &str, object: &str) -> Result<Option<Stat>, BlobError> {
        let path = self.existing(container)?.join(encode(object));
        match std::fs::metadata(&path) {
            Ok(meta) => Ok(Some(Stat {
                created_at: seconds(meta.created().or_else(|_| meta.modified())),
                size: meta.len(),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("cannot read", &path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};

    #[test]
    fn names_encode_to_one_safe_component() {
        for name in ["a", "../etc/passwd", "dir/file.txt", "", "%", "ünï"] {
            let file = encode(name);
            assert!(
                !file.contains('/') && !file.starts_with('.') && file != "..",
                "{file}"
            );
            assert_eq!(decode(&file).as_deref(), Some(name));
        }
    }
}
