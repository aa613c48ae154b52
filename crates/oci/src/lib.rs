//! Components as OCI artifacts, in the CNCF wasm layout that `wash push` and `wkg oci push`
//! write (config `application/vnd.wasm.config.v0+json`, one `application/wasm` layer): pushed
//! from a file, resolved from a tag to the digest of its bytes, pulled and checked against it.
//!
//! A component's weft digest (the sha256 of its bytes) is its layer's OCI digest, so a host that
//! already holds a digest needs only the registry's manifest, never the bytes again.

use std::collections::BTreeMap;

use oci_client::client::{ClientConfig, ClientProtocol, ImageLayer};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_wasm::{WasmClient, WasmConfig};

/// Why a registry operation failed; each names the reference and what the registry said.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("`{reference}` is not an OCI reference ({reason}); write REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:DIGEST")]
    BadReference { reference: String, reason: String },
    #[error("{reference}: registry {registry} answered: {reason}")]
    Registry {
        reference: String,
        registry: String,
        reason: String,
    },
    #[error("{reference} is not a wasm component artifact: {reason}")]
    NotWasm { reference: String, reason: String },
    #[error("{reference}: the bytes pulled hash to sha256:{actual}, not the {expected} the registry's manifest names; nothing was kept")]
    DigestMismatch {
        reference: String,
        expected: String,
        actual: String,
    },
    #[error("{reference}: {reason}")]
    NotAComponent {
        reference: String,
        reason: weft_api::NotAComponent,
    },
    #[error("{0}")]
    Credentials(String),
}

/// Where a reference points now: the manifest's digest and the component's.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The reference as given.
    pub reference: String,
    /// The same, pinned: `REGISTRY/REPOSITORY@sha256:…` of the manifest.
    pub pinned: String,
    /// The sha256 (hex) of the component's bytes: its weft digest and its layer's OCI digest.
    pub digest: String,
    layer: OciDescriptor,
}

/// What a push stored.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `REGISTRY/REPOSITORY@sha256:…` of the pushed manifest.
    pub pinned: String,
    /// The sha256 (hex) of the component's bytes.
    pub digest: String,
}

/// How to reach registries: which may be spoken to in plain HTTP, and with which credentials.
#[derive(Debug, Clone, Default)]
pub struct Registries {
    /// Registries (`host:port`) reached over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
    /// Credentials for every registry, overriding `~/.docker/config.json`.
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Registries {
    /// Options from the environment: `WEFT_REGISTRY_USERNAME`, `WEFT_REGISTRY_PASSWORD` and
    /// `WEFT_INSECURE_REGISTRIES` (comma-separated `host:port`).
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Registries {
            insecure: var("WEFT_INSECURE_REGISTRIES")
                .map(|list| list.split(',').map(|s| s.trim().to_string()).collect())
                .unwrap_or_default(),
            username: var("WEFT_REGISTRY_USERNAME"),
            password: var("WEFT_REGISTRY_PASSWORD"),
        }
    }

    /// Pushes the component `bytes` to `reference`.
    pub async fn push(&self, reference: &str, bytes: Vec<u8>) -> Result<Pushed, OciError> {
        weft_api::check_component(&bytes).map_err(|reason| OciError::NotAComponent {
            reference: reference.to_string(),
            reason,
        })?;
        let parsed = parse(reference)?;
        let digest = weft_api::digest_of(&bytes);
        let (config, layer): (WasmConfig, ImageLayer) = WasmConfig::from_raw_component(bytes, None)
            .map_err(|e| OciError::NotWasm {
                reference: reference.to_string(),
                reason: format!("{e:#}"),
            })?;
        let auth = self.auth(&parsed)?;
        let pushed = self
            .client(&parsed)
            .push(&parsed, &auth, layer, config, None)
            .await
            .map_err(|e| self.registry_error(&parsed, reference, format!("{e:#}")))?;
        let manifest_digest = pushed
            .manifest_url
            .rsplit('/')
            .next()
            .filter(|d| d.starts_with("sha256:"))
            .map(str::to_string);
        let pinned = match manifest_digest {
            Some(d) => pinned(&parsed, &d),
            None => reference.to_string(),
        };
        Ok(Pushed { pinned, digest })
    }

    /// Reads the manifest `reference` names now (a tag may have moved since the last time),
    /// checking it is a wasm component artifact.
    pub async fn resolve(&self, reference: &str) -> Result<Resolved, OciError> {
        let parsed = parse(reference)?;
        let auth = self.auth(&parsed)?;
        let (manifest, _config, manifest_digest) = self
            .client(&parsed)
            .pull_manifest_and_config(&parsed, &auth)
            .await
            .map_err(|e| {
                let reason = format!("{e:#}");
                if reason.contains("must have") {
                    OciError::NotWasm {
                        reference: reference.to_string(),
                        reason,
                    }
                } else {
                    self.registry_error(&parsed, reference, reason)
                }
            })?;
        let layer = manifest.layers[0].clone();
        let digest = layer
            .digest
            .strip_prefix("sha256:")
            .filter(|hex| hex.len() == 64)
            .ok_or_else(|| OciError::NotWasm {
                reference: reference.to_string(),
                reason: format!("its layer digest `{}` is not sha256", layer.digest),
            })?
            .to_string();
        Ok(Resolved {
            reference: reference.to_string(),
            pinned: pinned(&parsed, &manifest_digest),
            digest,
            layer,
        })
    }

    /// Fetches the component a [`Resolved`] reference names, checking its bytes against the
    /// digest and that they are a component.
    pub async fn fetch(&self, resolved: &Resolved) -> Result<Vec<u8>, OciError> {
        let parsed = parse(&resolved.pinned)?;
        let auth = self.auth(&parsed)?;
        let client = self.client(&parsed);
        client
            .store_auth_if_needed(parsed.resolve_registry(), &auth)
            .await;
        let mut bytes = Vec::with_capacity(resolved.layer.size.max(0) as usize);
        client
            .pull_blob(&parsed, &resolved.layer, &mut bytes)
            .await
            .map_err(|e| self.registry_error(&parsed, &resolved.reference, format!("{e:#}")))?;
        let actual = weft_api::digest_of(&bytes);
        if actual != resolved.digest {
            return Err(OciError::DigestMismatch {
                reference: resolved.reference.clone(),
                expected: resolved.layer.digest.clone(),
                actual,
            });
        }
        weft_api::check_component(&bytes).map_err(|reason| OciError::NotAComponent {
            reference: resolved.reference.clone(),
            reason,
        })?;
        tracing::info!(reference = %resolved.reference, digest = %resolved.digest, bytes = bytes.len(), "pulled");
        Ok(bytes)
    }

    /// Resolves and fetches in one step.
    pub async fn pull(&self, reference: &str) -> Result<(Resolved, Vec<u8>), OciError> {
        let resolved = self.resolve(reference).await?;
        let bytes = self.fetch(&resolved).await?;
        Ok((resolved, bytes))
    }

    fn client(&self, reference: &Reference) -> WasmClient {
        let registry = reference.resolve_registry().to_string();
        let plain = is_loopback(&registry) || self.insecure.contains(&registry);
        let protocol = if plain {
            ClientProtocol::HttpsExcept(vec![registry])
        } else {
            ClientProtocol::Https
        };
        WasmClient::new(Client::new(ClientConfig {
            protocol,
            ..Default::default()
        }))
    }

    fn registry_error(&self, reference: &Reference, given: &str, reason: String) -> OciError {
        OciError::Registry {
            reference: given.to_string(),
            registry: reference.resolve_registry().to_string(),
            reason,
        }
    }

    /// Credentials given to weft, else those `docker login` stored, else none.
    fn auth(&self, reference: &Reference) -> Result<RegistryAuth, OciError> {
        match (&self.username, &self.password) {
            (Some(user), Some(password)) => {
                return Ok(RegistryAuth::Basic(user.clone(), password.clone()))
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(OciError::Credentials(
                    "a registry username needs its password and the other way round \
                     (WEFT_REGISTRY_USERNAME and WEFT_REGISTRY_PASSWORD)"
                        .into(),
                ))
            }
            (None, None) => {}
        }
        Ok(docker_login(reference.resolve_registry()).unwrap_or(RegistryAuth::Anonymous))
    }
}

fn parse(reference: &str) -> Result<Reference, OciError> {
    reference
        .parse::<Reference>()
        .map_err(|e| OciError::BadReference {
            reference: reference.to_string(),
            reason: e.to_string(),
        })
}

/// `REGISTRY/REPOSITORY@DIGEST`.
fn pinned(reference: &Reference, digest: &str) -> String {
    format!(
        "{}/{}@{digest}",
        reference.registry(),
        reference.repository()
    )
}

/// Whether `registry` (`host[:port]`) is this machine, where plain HTTP crosses no network.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The credentials `docker login` stored for `registry` in `~/.docker/config.json` (or under
/// `$DOCKER_CONFIG`), when it stored them there rather than in a credential helper.
fn docker_login(registry: &str) -> Option<RegistryAuth> {
    #[derive(serde::Deserialize)]
    struct DockerConfig {
        #[serde(default)]
        auths: BTreeMap<String, DockerAuth>,
    }
    #[derive(serde::Deserialize)]
    struct DockerAuth {
        auth: Option<String>,
    }
    use base64::Engine as _;
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| dirs::home_dir().map(|home| home.join(".docker")))?;
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let config: DockerConfig = serde_json::from_str(&text).ok()?;
    let entry = config.auths.iter().find(|(server, _)| {
        let server = server
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        server.split('/').next() == Some(registry)
            || (registry == "index.docker.io" && server.contains("docker.io"))
    })?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(entry.1.auth.as_deref()?)
        .ok()?;
    let (user, password) = String::from_utf8(decoded)
        .ok()?
        .split_once(':')
        .map(|(u, p)| (u.to_string(), p.to_string()))?;
    Some(RegistryAuth::Basic(user, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_told_apart() {
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("ghcr.io"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }

    #[test]
    fn a_bad_reference_says_what_to_write() {
        let e = parse("Not A Ref").unwrap_err();
        assert!(e.to_string().contains("REGISTRY/REPOSITORY:TAG"), "{e}");
    }
}
