//! weft's app manifest: wadm's OAM `Application` format, parsed and validated into a
//! [`Manifest`], then locked against a host's capabilities into an [`App`] ([`lock`]).
//!
//! Every error names where the problem is: the file, the component and the field.

mod catalog;
mod model;
pub mod raw;
mod scaler;
mod units;
mod validate;

use std::path::{Path, PathBuf};

pub use catalog::{
    known_images, lock, merge, resolve_image, CapabilityLink, CapabilitySpec, Catalog, Delivered,
    Granted, SpecError, STRICT_ANNOTATION,
};
pub use model::*;
pub use scaler::{scaler_of, ScalerConflict};
pub use units::{parse_duration, parse_size, UnitError};

/// The default listen address of an HTTP route that names none.
pub const DEFAULT_HTTP_ADDRESS: &str = "127.0.0.1:8080";

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: not a valid app manifest: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: {location}: {message}")]
    Invalid {
        origin: String,
        location: String,
        message: String,
    },
}

/// How a component image is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// A file on this machine (a `file://` URL or a path relative to the manifest).
    File(PathBuf),
    /// An OCI reference such as `ghcr.io/org/app:1.0`.
    Oci(String),
}

/// Classifies an image reference, resolving relative paths against `base_dir`.
pub fn image_source(image: &str, base_dir: &Path) -> ImageSource {
    if let Some(path) = image.strip_prefix("file://") {
        return ImageSource::File(base_dir.join(path));
    }
    let looks_like_path = image.starts_with('.')
        || image.starts_with('/')
        || image.ends_with(".wasm")
        || !image.contains('/');
    if looks_like_path {
        ImageSource::File(base_dir.join(image))
    } else {
        ImageSource::Oci(image.to_string())
    }
}

/// Reads a manifest file and checks everything that needs no knowledge of capabilities.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses manifest text and checks everything that needs no knowledge of capabilities;
/// `origin` names the text's source in errors.
pub fn parse(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
    let raw: raw::RawManifest = serde_saphyr::from_str(text).map_err(|e| ManifestError::Parse {
        origin: origin.to_string(),
        message: e.to_string(),
    })?;
    validate::validate(raw, origin)
}

/// Parses manifest text and locks it against `catalog`: the whole validation of a deploy.
pub fn parse_app(text: &str, origin: &str, catalog: &Catalog) -> Result<App, ManifestError> {
    lock(parse(text, origin)?, catalog)
}

/// Whether `name` is usable as an app, node or secret-key name: letters, digits, `-`, `_` and
/// `.`, starting with a letter or digit, at most 128 bytes.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
}

/// A NATS-style subject: non-empty dot-separated tokens without spaces; `>` only last.
pub fn valid_subject(subject: &str) -> bool {
    let tokens: Vec<&str> = subject.split('.').collect();
    tokens.iter().enumerate().all(|(i, t)| {
        !t.is_empty()
            && !t.chars().any(char::is_whitespace)
            && (*t != ">" || i == tokens.len() - 1)
            && (t.len() == 1 || !t.contains(['*', '>']))
    })
}
