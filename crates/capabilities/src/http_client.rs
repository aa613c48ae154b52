//! Outgoing HTTP: a link from a component to an http-client node grants
//! `wasi:http/outgoing-handler`, limited to the hosts in the link's `allowed_hosts`. The runtime
//! enforces the list on every request.

use serde::Deserialize;
use weft_manifest::{CapabilityLink, CapabilitySpec, Granted, SpecError};

use crate::catalog::Capability;
use crate::settings::typed;

/// The http-client capability.
pub struct HttpClient;

/// The one instance in [`crate::CAPABILITIES`].
pub static HTTP_CLIENT: HttpClient = HttpClient;

/// One config block of an outgoing-HTTP link.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EgressConfig {
    /// Comma-separated `host` or `host:port`, or `*`.
    allowed_hosts: Option<String>,
}

impl CapabilitySpec for HttpClient {
    fn name(&self) -> &'static str {
        "http-client"
    }

    fn images(&self) -> Vec<(&'static str, &'static str)> {
        vec![("http-client", "hyper"), ("httpclient", "hyper")]
    }

    fn grant(&self, link: &CapabilityLink<'_>) -> Result<Granted, SpecError> {
        if !link
            .link
            .is_within("wasi", "http", &["outgoing-handler", "client"])
        {
            return Err(SpecError::new(format!(
                "an http-client link grants `wasi:http/outgoing-handler` (WASI 0.3: `client`), \
                 not `{}`",
                link.link.describe()
            )));
        }
        // Every block adds hosts: a platform team's block and the app's own both count.
        let mut hosts = Vec::new();
        for config in link
            .link
            .source_config
            .iter()
            .chain(&link.link.target_config)
        {
            let egress: EgressConfig = typed(&config.properties)
                .map_err(|e| SpecError::at(format!("config `{}`", config.name), e.0))?;
            hosts.extend(
                egress
                    .allowed_hosts
                    .iter()
                    .flat_map(|v| v.split(','))
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty()),
            );
        }
        if hosts.is_empty() {
            // wasmCloud's http-client provider lets a linked component call any host; under
            // its image weft does the same, and says so, rather than refuse a wasmCloud app.
            if let Some(provider) = &link.node.provider {
                return Ok(Granted::OutgoingHttp {
                    hosts: vec!["*".into()],
                    lenient: Some(format!(
                        "no allowed_hosts, so as {provider} does the component may call any \
                         host; name the hosts it may call (allowed_hosts: \"api.example.com\") \
                         to limit it"
                    )),
                });
            }
            return Err(SpecError::new(
                "name the hosts it may call in the link's config: allowed_hosts: \
                 \"api.example.com,127.0.0.1:8081\" (or \"*\")",
            ));
        }
        Ok(Granted::OutgoingHttp {
            hosts,
            lenient: None,
        })
    }
}

impl Capability for HttpClient {}
