//! Signed components. A signature is wasmsign2's (the WebAssembly signatures design), embedded
//! as the component's first custom section, so a signed component still loads in every
//! runtime and `wasmsign2 verify` checks what `weft sign` signed. Keys are Ed25519: PEM files
//! as `weft key generate` writes them, or OpenSSH `ssh-ed25519` keys.

use std::io::Cursor;
use std::path::Path;

use wasmsign2::{Module, PublicKey, SecretKey, WSError};

/// Why a key or a component could not be signed or read.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} holds no Ed25519 {what} key weft can read (PEM or OpenSSH): {reason}")]
    Key {
        path: String,
        what: &'static str,
        reason: String,
    },
    #[error("{path} lists no public key; add one PEM block or `ssh-ed25519` line per key")]
    NoKeys { path: String },
    #[error("cannot sign: this is not a WebAssembly component or module ({0})")]
    NotWasm(String),
}

/// Why a component's signature is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "it is not signed; sign it with `weft sign --key KEY` using a key this host trusts \
         ({expected})"
    )]
    Unsigned { expected: String },
    #[error(
        "it is signed by key {signed_by}, which this host does not trust; it expects a \
         signature by {expected}"
    )]
    Untrusted { signed_by: String, expected: String },
    #[error(
        "its signature by trusted key {key} does not match its bytes: it was altered after \
         signing; sign it again or deploy the bytes that were signed"
    )]
    Altered { key: String },
    #[error("its signature section cannot be read ({0}); sign it again with `weft sign`")]
    Malformed(String),
}

/// A key's short id, as signatures carry it: 24 hex digits derived from the public key.
fn key_id(public: &PublicKey) -> String {
    let with_id = public.clone().attach_default_key_id();
    hex(with_id.key_id().map(Vec::as_slice).unwrap_or_default())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read(path: &Path) -> Result<Vec<u8>, SigningError> {
    std::fs::read(path).map_err(|e| SigningError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// An Ed25519 key that signs components.
pub struct SigningKey {
    secret: SecretKey,
    public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.id())
    }
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Self {
        let pair = wasmsign2::KeyPair::generate();
        SigningKey {
            secret: pair.sk,
            public: pair.pk,
        }
    }

    /// Reads a secret key: PEM or DER as `weft key generate` writes it, or an unencrypted
    /// OpenSSH ed25519 key (`ssh-keygen -t ed25519 -N ''`).
    pub fn from_file(path: &Path) -> Result<Self, SigningError> {
        let bytes = read(path)?;
        let secret = SecretKey::from_any(&bytes).map_err(|e| SigningError::Key {
            path: path.display().to_string(),
            what: "secret",
            reason: e.to_string(),
        })?;
        let public = PublicKey {
            pk: secret.sk.public_key(),
            key_id: None,
        };
        Ok(SigningKey { secret, public })
    }

    /// The secret key as PEM, to keep private.
    pub fn secret_pem(&self) -> String {
        self.secret.to_pem()
    }

    /// The public key as PEM, for hosts' trusted-keys files.
    pub fn public_pem(&self) -> String {
        self.public.to_pem()
    }

    /// The key's id, as a signature names it.
    pub fn id(&self) -> String {
        key_id(&self.public)
    }

    /// `component` with this key's signature embedded, replacing any signature it had.
    pub fn sign(&self, component: &[u8]) -> Result<Vec<u8>, SigningError> {
        let module = Module::deserialize(&mut Cursor::new(component))
            .map_err(|e| SigningError::NotWasm(e.to_string()))?;
        let id = self.public.clone().attach_default_key_id();
        let signed = self
            .secret
            .sign(module, id.key_id())
            .map_err(|e| SigningError::NotWasm(e.to_string()))?;
        let mut out = Vec::with_capacity(component.len() + 256);
        signed
            .serialize(&mut out)
            .map_err(|e| SigningError::NotWasm(e.to_string()))?;
        Ok(out)
    }
}

/// The public keys whose signatures a host accepts.
#[derive(Clone)]
pub struct TrustedKeys {
    keys: Vec<(String, PublicKey)>,
}

impl std::fmt::Debug for TrustedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrustedKeys({})", self.ids().join(", "))
    }
}

impl TrustedKeys {
    /// Reads a trusted-keys file: PEM public keys and `ssh-ed25519 …` lines, any number of
    /// each; `#` lines are comments.
    pub fn from_file(path: &Path) -> Result<Self, SigningError> {
        let text = String::from_utf8_lossy(&read(path)?).to_string();
        let shown = path.display().to_string();
        let bad = |reason: WSError| SigningError::Key {
            path: shown.clone(),
            what: "public",
            reason: reason.to_string(),
        };
        let mut keys = Vec::new();
        let mut pem = String::new();
        for line in text.lines().map(str::trim) {
            if !pem.is_empty() || line.starts_with("-----BEGIN") {
                pem.push_str(line);
                pem.push('\n');
                if line.starts_with("-----END") {
                    keys.push(PublicKey::from_pem(&pem).map_err(bad)?);
                    pem.clear();
                }
            } else if line.starts_with("ssh-") {
                keys.push(PublicKey::from_openssh(line).map_err(bad)?);
            } else if !line.is_empty() && !line.starts_with('#') {
                return Err(bad(WSError::ParseError));
            }
        }
        if keys.is_empty() {
            return Err(SigningError::NoKeys { path: shown });
        }
        Ok(TrustedKeys {
            keys: keys.into_iter().map(|k| (key_id(&k), k)).collect(),
        })
    }

    /// The trusted keys' ids.
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|(id, _)| id.clone()).collect()
    }

    fn expected(&self) -> String {
        match self.ids().as_slice() {
            [one] => format!("key {one}"),
            many => format!("one of keys {}", many.join(", ")),
        }
    }

    /// Checks `component`'s embedded signature; returns the id of the trusted key that made it.
    pub fn verify(&self, component: &[u8]) -> Result<String, SignatureError> {
        let info = match wasmsign2::signature_info_from_reader(&mut Cursor::new(component), None) {
            Ok(info) => info,
            Err(WSError::NoSignatures) => {
                return Err(SignatureError::Unsigned {
                    expected: self.expected(),
                })
            }
            Err(e) => return Err(SignatureError::Malformed(e.to_string())),
        };
        let signed_by: Vec<String> = info.key_ids().iter().map(|id| hex(id)).collect();
        let trusted: Vec<&(String, PublicKey)> = self
            .keys
            .iter()
            .filter(|(id, _)| signed_by.contains(id))
            .collect();
        if trusted.is_empty() {
            return Err(SignatureError::Untrusted {
                signed_by: if signed_by.is_empty() {
                    "with no id".to_string()
                } else {
                    signed_by.join(", ")
                },
                expected: self.expected(),
            });
        }
        for (id, key) in &trusted {
            if key.verify(&mut Cursor::new(component), None).is_ok() {
                return Ok(id.clone());
            }
        }
        Err(SignatureError::Altered {
            key: trusted[0].0.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component() -> Vec<u8> {
        wat::parse_str("(component (core module (func (export \"f\"))))").unwrap()
    }

    fn trusting(keys: &[&SigningKey]) -> (tempfile::TempDir, TrustedKeys) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trusted");
        let text: String = keys.iter().map(|k| k.public_pem()).collect();
        std::fs::write(&path, format!("# the release keys\n{text}")).unwrap();
        let trusted = TrustedKeys::from_file(&path).unwrap();
        (dir, trusted)
    }

    #[test]
    fn a_signed_component_verifies_and_still_parses() {
        let key = SigningKey::generate();
        let signed = key.sign(&component()).unwrap();
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
            .validate_all(&signed)
            .unwrap();
        let (_dir, trusted) = trusting(&[&SigningKey::generate(), &key]);
        assert_eq!(trusted.verify(&signed), Ok(key.id()));
        // Signing again replaces the signature rather than stacking another.
        let again = key.sign(&signed).unwrap();
        assert_eq!(again.len(), signed.len());
    }

    #[test]
    fn unsigned_other_key_and_altered_bytes_are_refused_with_the_reason() {
        let key = SigningKey::generate();
        let other = SigningKey::generate();
        let (_dir, trusted) = trusting(&[&key]);
        let unsigned = trusted.verify(&component()).unwrap_err();
        assert!(matches!(unsigned, SignatureError::Unsigned { .. }));
        assert!(unsigned.to_string().contains(&key.id()));
        let by_other = trusted.verify(&other.sign(&component()).unwrap());
        assert_eq!(
            by_other,
            Err(SignatureError::Untrusted {
                signed_by: other.id(),
                expected: format!("key {}", key.id())
            })
        );
        let mut altered = key.sign(&component()).unwrap();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(
            trusted.verify(&altered),
            Err(SignatureError::Altered { key: key.id() })
        );
    }

    #[test]
    fn keys_round_trip_through_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate();
        let path = dir.path().join("release.key");
        std::fs::write(&path, key.secret_pem()).unwrap();
        let read = SigningKey::from_file(&path).unwrap();
        assert_eq!(read.id(), key.id());
        std::fs::write(&path, "not a key").unwrap();
        assert!(SigningKey::from_file(&path)
            .unwrap_err()
            .to_string()
            .contains("no Ed25519 secret key"));
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "# nothing yet\n").unwrap();
        assert!(matches!(
            TrustedKeys::from_file(&empty),
            Err(SigningError::NoKeys { .. })
        ));
    }
}
