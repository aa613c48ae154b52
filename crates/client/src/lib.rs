//! The control API client and the deploy preparation shared by `weft app deploy` and `weft up`.

mod validate;

pub use validate::{validate, Validation};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use weft_api::{
    ApiError, AppStatus, BatchOutcome, ControlEndpoint, DeployBatch, DeployOutcome, DeployRequest,
    HostStatus, LatticeHost,
};
use weft_manifest::ImageSource;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Manifest(#[from] weft_manifest::ManifestError),
    #[error(transparent)]
    Build(#[from] weft_build::BuildError),
    #[error("component `{component}`: cannot read image {}: {source}; build it first (`weft build {}` or pass --build)", path.display(), project.display())]
    Image {
        component: String,
        path: PathBuf,
        project: PathBuf,
        source: std::io::Error,
    },
    #[error("component `{component}`: image {} {reason}; nothing was uploaded", path.display())]
    NotAComponent {
        component: String,
        path: PathBuf,
        reason: weft_api::NotAComponent,
    },
    #[error("component `{component}`: {source}")]
    Oci {
        component: String,
        source: weft_oci::OciError,
    },
    #[error(
        "no weft host is running for state dir {}: start one with `weft up` (or pass --url and --token)",
        .0.display()
    )]
    NoHost(PathBuf),
    #[error("cannot read {}: {source}", path.display())]
    Local {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot reach the weft host at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("{0}")]
    Api(String),
}

/// The state dir used when none is given: `weft` under the user's data dir.
pub fn default_state_dir() -> PathBuf {
    dirs::data_local_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("weft")
}

/// A deploy ready to send: the request and the component bytes it refers to.
pub struct PreparedDeploy {
    pub request: DeployRequest,
    /// sha256 → component bytes.
    pub components: BTreeMap<String, Vec<u8>>,
    /// sha256 → where in a registry to fetch it, for OCI images: fetched only when the host
    /// does not hold that digest yet.
    pub pulls: BTreeMap<String, weft_oci::Resolved>,
    /// Component → OCI reference, still to resolve ([`PreparedDeploy::resolve`]).
    references: BTreeMap<String, String>,
    pub app_name: String,
    /// `metadata.annotations.version`, when the manifest gives one.
    pub declared_version: Option<String>,
}

impl PreparedDeploy {
    /// The OCI references still to resolve, as written in the manifest.
    pub fn references(&self) -> impl Iterator<Item = &str> {
        self.references.values().map(String::as_str)
    }

    /// Asks each OCI image's registry which component its reference names now (a moved tag
    /// is followed), so the deploy records that digest.
    pub async fn resolve(&mut self, registries: &weft_oci::Registries) -> Result<(), ClientError> {
        for (component, reference) in std::mem::take(&mut self.references) {
            let resolved =
                registries
                    .resolve(&reference)
                    .await
                    .map_err(|source| ClientError::Oci {
                        component: component.clone(),
                        source,
                    })?;
            tracing::info!(%reference, pinned = %resolved.pinned, "resolved");
            self.request
                .images
                .insert(reference, resolved.digest.clone());
            self.pulls.insert(resolved.digest.clone(), resolved);
        }
        Ok(())
    }

    /// The bytes of component `digest`: read with the manifest, or fetched from its registry.
    pub async fn bytes_of(
        &self,
        digest: &str,
        registries: &weft_oci::Registries,
    ) -> Result<Vec<u8>, ClientError> {
        if let Some(bytes) = self.components.get(digest) {
            return Ok(bytes.clone());
        }
        let resolved = self.pulls.get(digest).ok_or_else(|| {
            ClientError::Api(format!("component {digest} is not part of this deploy"))
        })?;
        registries
            .fetch(resolved)
            .await
            .map_err(|source| ClientError::Oci {
                component: resolved.reference.clone(),
                source,
            })
    }

    /// Every component digest the deploy uses.
    pub fn digests(&self) -> impl Iterator<Item = &String> {
        self.components.keys().chain(self.pulls.keys())
    }
}

/// Reads a manifest and the component files it names; with `build`, first builds each component
/// whose image lies in a project directory's `build/` folder.
pub fn prepare_deploy(manifest_path: &Path, build: bool) -> Result<PreparedDeploy, ClientError> {
    let app = weft_manifest::load(manifest_path)?;
    let text = std::fs::read_to_string(manifest_path).map_err(|source| ClientError::Local {
        path: manifest_path.to_path_buf(),
        source,
    })?;
    let base = manifest_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut images = BTreeMap::new();
    let mut components = BTreeMap::new();
    let mut references = BTreeMap::new();
    for component in &app.components {
        if component.shared.is_some() {
            continue;
        }
        let path = match weft_manifest::image_source(&component.image, base) {
            ImageSource::File(path) => path,
            ImageSource::Oci(image) => {
                references.insert(component.name.clone(), image);
                continue;
            }
        };
        let project = project_dir(&path);
        if let (true, Some(step)) = (build, &component.build) {
            let dir = base.join(step.workdir.as_deref().unwrap_or("."));
            weft_build::run_command(&step.command, &dir)?;
            tracing::info!(component = %component.name, command = %step.command, "built");
        } else if build {
            if let Some(project) = &project {
                let built = weft_build::build(project, &weft_build::BuildOptions::default())?;
                tracing::info!(path = %built.path.display(), "built");
            }
        }
        let bytes = std::fs::read(&path).map_err(|source| ClientError::Image {
            component: component.name.clone(),
            path: path.clone(),
            project: project.clone().unwrap_or_else(|| base.to_path_buf()),
            source,
        })?;
        // Checked here so that nothing else (a file named by mistake, a secret) is ever sent.
        weft_api::check_component(&bytes).map_err(|reason| ClientError::NotAComponent {
            component: component.name.clone(),
            path: path.clone(),
            reason,
        })?;
        let digest = weft_api::digest_of(&bytes);
        images.insert(component.image.clone(), digest.clone());
        components.insert(digest, bytes);
    }
    Ok(PreparedDeploy {
        request: DeployRequest {
            manifest: text,
            origin: manifest_path.display().to_string(),
            images,
            caps: Default::default(),
            version: None,
        },
        components,
        pulls: BTreeMap::new(),
        references,
        app_name: app.name,
        declared_version: app.version,
    })
}

/// The project that builds `image`, when the image is `<project>/build/<name>.wasm`.
fn project_dir(image: &Path) -> Option<PathBuf> {
    let build_dir = image.parent()?;
    if build_dir.file_name()? != "build" {
        return None;
    }
    let project = build_dir.parent()?;
    (project.join("Cargo.toml").is_file()
        || project.join("app.py").is_file()
        || project.join("package.json").is_file()
        || project.join("go.mod").is_file())
    .then(|| project.to_path_buf())
}

/// A connection to a host's control API.
pub struct Client {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for an explicit URL and token.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        Client {
            url: url.into().trim_end_matches('/').to_string(),
            token: token.into(),
            http: reqwest::Client::new(),
        }
    }

    /// A client for the host running on `state_dir`.
    pub fn for_state_dir(state_dir: &Path) -> Result<Self, ClientError> {
        let endpoint_path = weft_api::endpoint_path(state_dir);
        let endpoint = std::fs::read(&endpoint_path)
            .map_err(|_| ClientError::NoHost(state_dir.to_path_buf()))?;
        let endpoint: ControlEndpoint = serde_json::from_slice(&endpoint)
            .map_err(|_| ClientError::NoHost(state_dir.to_path_buf()))?;
        let token_path = weft_api::token_path(state_dir);
        let token = std::fs::read_to_string(&token_path).map_err(|source| ClientError::Local {
            path: token_path,
            source,
        })?;
        Ok(Client::new(endpoint.url, token.trim()))
    }

    /// Sends with the token; fails only when the host cannot be reached.
    async fn transmit(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: self.url.clone(),
                source,
            })
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let response = self.transmit(request).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ApiError>(&text)
            .map(|e| e.error)
            .unwrap_or_else(|_| format!("the host answered {status}: {text}"));
        Err(ClientError::Api(message))
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let response = self.send(request).await?;
        response
            .json()
            .await
            .map_err(|e| ClientError::Api(format!("unreadable answer from the host: {e}")))
    }

    /// `GET /v1/host`.
    pub async fn host_status(&self) -> Result<HostStatus, ClientError> {
        self.json(self.http.get(format!("{}/v1/host", self.url)))
            .await
    }

    /// `GET /v1/hosts`: the lattice's hosts as this host hears them.
    pub async fn hosts(&self) -> Result<Vec<LatticeHost>, ClientError> {
        self.json(self.http.get(format!("{}/v1/hosts", self.url)))
            .await
    }

    /// `GET /v1/hosts/{id}`: one host, asked for what it runs now.
    pub async fn lattice_host(&self, id: &str) -> Result<LatticeHost, ClientError> {
        self.json(self.http.get(format!("{}/v1/hosts/{id}", self.url)))
            .await
    }

    /// Uploads the components the host lacks (fetching those of OCI images from their
    /// registries), then deploys.
    pub async fn deploy(
        &self,
        prepared: &PreparedDeploy,
        registries: &weft_oci::Registries,
    ) -> Result<DeployOutcome, ClientError> {
        self.upload_missing(prepared, registries, &mut BTreeSet::new())
            .await?;
        self.json(
            self.http
                .post(format!("{}/v1/apps", self.url))
                .json(&prepared.request),
        )
        .await
    }

    /// Uploads every component the apps need that the host lacks, then deploys them all in one
    /// batch: the host stores and switches on the apps that pass together, and says why each
    /// other one was refused.
    pub async fn deploy_many(
        &self,
        prepared: &[PreparedDeploy],
        registries: &weft_oci::Registries,
    ) -> Result<BatchOutcome, ClientError> {
        // Thousands of apps on one component ask the host about it once.
        let mut checked = BTreeSet::new();
        for deploy in prepared {
            self.upload_missing(deploy, registries, &mut checked)
                .await?;
        }
        let batch = DeployBatch {
            apps: prepared.iter().map(|p| p.request.clone()).collect(),
        };
        self.json(self.http.post(format!("{}/v1/apps", self.url)).json(&batch))
            .await
    }

    /// Uploads the components of `prepared` the host lacks, skipping the digests in `checked`
    /// and adding those it checks.
    async fn upload_missing(
        &self,
        prepared: &PreparedDeploy,
        registries: &weft_oci::Registries,
        checked: &mut BTreeSet<String>,
    ) -> Result<(), ClientError> {
        for digest in prepared.digests() {
            if !checked.insert(digest.to_string()) {
                continue;
            }
            let url = format!("{}/v1/components/{digest}", self.url);
            if !self.has_component(&url).await? {
                let bytes = prepared.bytes_of(digest, registries).await?;
                self.send(self.http.put(&url).body(bytes)).await?;
            }
        }
        Ok(())
    }

    async fn has_component(&self, url: &str) -> Result<bool, ClientError> {
        let response = self.transmit(self.http.head(url)).await?;
        match response.status() {
            reqwest::StatusCode::OK => Ok(true),
            reqwest::StatusCode::NOT_FOUND => Ok(false),
            status => Err(ClientError::Api(format!(
                "the host answered {status} when asked for component {url}"
            ))),
        }
    }

    /// `GET /v1/apps`.
    pub async fn list(&self) -> Result<Vec<AppStatus>, ClientError> {
        self.json(self.http.get(format!("{}/v1/apps", self.url)))
            .await
    }

    /// `GET /v1/apps/{name}`.
    pub async fn status(&self, name: &str) -> Result<AppStatus, ClientError> {
        self.json(self.http.get(format!("{}/v1/apps/{name}", self.url)))
            .await
    }

    /// `POST /v1/apps/{app}/components/{component}/call`: the results in WAVE.
    pub async fn call(
        &self,
        app: &str,
        component: &str,
        function: &str,
        args: Vec<String>,
    ) -> Result<Vec<String>, ClientError> {
        let request = weft_api::CallRequest {
            function: function.to_string(),
            args,
        };
        let result: weft_api::CallResult = self
            .json(
                self.http
                    .post(format!(
                        "{}/v1/apps/{app}/components/{component}/call",
                        self.url
                    ))
                    .json(&request),
            )
            .await?;
        Ok(result.results)
    }

    /// `GET /v1/components/{digest}`: a deployed component's bytes.
    pub async fn component(&self, digest: &str) -> Result<Vec<u8>, ClientError> {
        let response = self
            .send(
                self.http
                    .get(format!("{}/v1/components/{digest}", self.url)),
            )
            .await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Api(format!("the component did not arrive whole: {e}")))?;
        Ok(bytes.to_vec())
    }

    /// `DELETE /v1/apps/{name}`.
    pub async fn undeploy(&self, name: &str) -> Result<(), ClientError> {
        self.send(self.http.delete(format!("{}/v1/apps/{name}", self.url)))
            .await
            .map(|_| ())
    }

    /// `PUT /v1/secrets/{key}`: the value travels only in the request body.
    pub async fn put_secret(&self, key: &str, value: Vec<u8>) -> Result<(), ClientError> {
        self.send(
            self.http
                .put(format!("{}/v1/secrets/{key}", self.url))
                .body(value),
        )
        .await
        .map(|_| ())
    }

    /// `GET /v1/secrets`: the keys of the secret store, never values.
    pub async fn secret_keys(&self) -> Result<Vec<String>, ClientError> {
        self.json(self.http.get(format!("{}/v1/secrets", self.url)))
            .await
    }

    /// `DELETE /v1/secrets/{key}`.
    pub async fn delete_secret(&self, key: &str) -> Result<(), ClientError> {
        self.send(self.http.delete(format!("{}/v1/secrets/{key}", self.url)))
            .await
            .map(|_| ())
    }
}
