//! The one control-plane surface: deploy, undeploy, list, status and host status, implemented by
//! a single host and by a lattice member alike. The control API and the CLI call this trait and
//! never ask which one they have.

use std::sync::Arc;

use crate::api::{AppStatus, DeployOutcome, DeployRequest, HostStatus};
use crate::member::{Member, MemberError};
use crate::{Host, HostError};

/// Why an app operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AppsError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Lattice(#[from] MemberError),
}

/// What went wrong, as a client should treat it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No such app or secret.
    NotFound,
    /// The request clashes with what is deployed (a version's content, an app in use).
    Conflict,
    /// The request itself is wrong; its message says how.
    Invalid,
    /// The lattice cannot be reached; try again.
    Unavailable,
    /// The host failed.
    Internal,
}

impl AppsError {
    /// How a client should treat the failure.
    pub fn fault(&self) -> Fault {
        match self {
            AppsError::Host(e) | AppsError::Lattice(MemberError::Host(e)) => match e {
                HostError::NotFound(_)
                | HostError::SecretNotFound(_)
                | HostError::NoComponent(_) => Fault::NotFound,
                HostError::VersionConflict { .. } | HostError::InUse { .. } => Fault::Conflict,
                e if e.is_user_error() => Fault::Invalid,
                _ => Fault::Internal,
            },
            AppsError::Lattice(MemberError::Lattice(_)) => Fault::Unavailable,
            AppsError::Lattice(MemberError::Name(..) | MemberError::Refused(_)) => Fault::Invalid,
        }
    }
}

/// The apps a control API manages: this host's, or its lattice's.
#[async_trait::async_trait]
pub trait Apps: Send + Sync {
    /// Checks and deploys an app whose images were uploaded.
    async fn deploy(&self, request: DeployRequest) -> Result<DeployOutcome, AppsError>;
    /// Deploys many apps in order, one result each; one app's failure is its own.
    async fn deploy_many(
        &self,
        requests: Vec<DeployRequest>,
    ) -> Vec<Result<DeployOutcome, AppsError>> {
        let mut results = Vec::with_capacity(requests.len());
        for request in requests {
            results.push(self.deploy(request).await);
        }
        results
    }
    /// Stops serving an app and forgets it.
    async fn undeploy(&self, name: &str) -> Result<(), AppsError>;
    /// Every app's status.
    async fn list(&self) -> Result<Vec<AppStatus>, AppsError>;
    /// One app's status.
    async fn status(&self, name: &str) -> Result<AppStatus, AppsError>;
    /// What this host is and runs.
    fn host_status(&self) -> HostStatus;
    /// Calls an export of a component with WAVE arguments; returns its results in WAVE.
    async fn call(
        &self,
        app: &str,
        component: &str,
        path: &str,
        args: &[String],
    ) -> Result<Vec<String>, AppsError>;
}

#[async_trait::async_trait]
impl Apps for Host {
    async fn deploy(&self, request: DeployRequest) -> Result<DeployOutcome, AppsError> {
        Ok(Host::deploy(self, request).await?)
    }

    async fn deploy_many(
        &self,
        requests: Vec<DeployRequest>,
    ) -> Vec<Result<DeployOutcome, AppsError>> {
        Host::deploy_many(self, requests)
            .await
            .into_iter()
            .map(|r| r.map_err(AppsError::from))
            .collect()
    }

    async fn undeploy(&self, name: &str) -> Result<(), AppsError> {
        Ok(Host::undeploy(self, name).await?)
    }

    async fn list(&self) -> Result<Vec<AppStatus>, AppsError> {
        Ok(Host::list(self)?)
    }

    async fn status(&self, name: &str) -> Result<AppStatus, AppsError> {
        Ok(Host::status(self, name)?)
    }

    fn host_status(&self) -> HostStatus {
        Host::host_status(self)
    }

    async fn call(
        &self,
        app: &str,
        component: &str,
        path: &str,
        args: &[String],
    ) -> Result<Vec<String>, AppsError> {
        Ok(Host::call(self, app, component, path, args).await?)
    }
}

#[async_trait::async_trait]
impl Apps for Member {
    async fn deploy(&self, request: DeployRequest) -> Result<DeployOutcome, AppsError> {
        Ok(Member::deploy(self, request).await?)
    }

    async fn undeploy(&self, name: &str) -> Result<(), AppsError> {
        Ok(Member::undeploy(self, name).await?)
    }

    async fn list(&self) -> Result<Vec<AppStatus>, AppsError> {
        Ok(self.app_statuses().await?)
    }

    async fn status(&self, name: &str) -> Result<AppStatus, AppsError> {
        Ok(self.app_status(name).await?)
    }

    fn host_status(&self) -> HostStatus {
        Member::host_status(self)
    }

    async fn call(
        &self,
        app: &str,
        component: &str,
        path: &str,
        args: &[String],
    ) -> Result<Vec<String>, AppsError> {
        Ok(Member::call(self, app, component, path, args).await?)
    }
}

/// The apps a host's control API manages: the lattice's when it is a member, its own otherwise.
pub fn apps_of(host: &Arc<Host>, lattice: Option<&Arc<Member>>) -> Arc<dyn Apps> {
    match lattice {
        Some(member) => member.clone(),
        None => host.clone(),
    }
}
