//! HTTP ingress: a link from an http-server node to a component's `wasi:http/incoming-handler`
//! is a route. The host's ingress (`weft-host`) serves the routes; this module says what a
//! manifest may write.

use std::net::SocketAddr;

use serde::Deserialize;
use weft_manifest::{
    merge, CapabilityLink, CapabilitySpec, Delivered, Granted, HttpRoute, SpecError,
    DEFAULT_HTTP_ADDRESS,
};

use crate::catalog::{check_delivery, Capability};
use crate::settings::typed;

/// The http-server capability.
pub struct HttpServer;

/// The one instance in [`crate::CAPABILITIES`].
pub static HTTP_SERVER: HttpServer = HttpServer;

/// A route's config, on the link's source (the http-server) end.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteConfig {
    address: Option<String>,
    host: Option<String>,
    path: Option<String>,
    /// wasmCloud's http-server chooses path or host routing with it; weft routes on both at
    /// once, so the key is accepted and has nothing to decide.
    #[allow(dead_code)]
    routing_mode: Option<String>,
}

impl CapabilitySpec for HttpServer {
    fn name(&self) -> &'static str {
        "http-server"
    }

    fn images(&self) -> Vec<(&'static str, &'static str)> {
        vec![("http-server", "hyper"), ("httpserver", "hyper")]
    }

    fn grant(&self, _link: &CapabilityLink<'_>) -> Result<Granted, SpecError> {
        Err(SpecError::new(
            "http-server routes requests to components: put the link on the capability, \
             targeting the component",
        ))
    }

    fn deliver(&self, link: &CapabilityLink<'_>) -> Result<Delivered, SpecError> {
        check_delivery(
            link,
            ("wasi", "http", &["incoming-handler", "handler"]),
            "HTTP routes lead to components",
            "an http-server link serves",
        )?;
        let config: RouteConfig = typed(&merge(link.link.source_config.iter()))
            .map_err(|e| SpecError::at("properties.source.config", e.0))?;
        let address = config
            .address
            .unwrap_or_else(|| DEFAULT_HTTP_ADDRESS.to_string());
        let address: SocketAddr = address.parse().map_err(|_| {
            SpecError::at(
                "properties.source.config address",
                format!("`{address}` is not an IP:port address such as 127.0.0.1:8080"),
            )
        })?;
        let mut path = config.path.unwrap_or_else(|| "/".to_string());
        if !path.starts_with('/') {
            return Err(SpecError::at(
                "properties.source.config path",
                format!("`{path}` must start with `/`"),
            ));
        }
        if path.len() > 1 {
            path = path.trim_end_matches('/').to_string();
        }
        Ok(Delivered::Route(HttpRoute {
            component: link.component.to_string(),
            address,
            host: config.host.map(|h| h.to_ascii_lowercase()),
            path,
        }))
    }
}

impl Capability for HttpServer {}
