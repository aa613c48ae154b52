//! Structural validation: every check on a manifest that needs no knowledge of capabilities.

use std::collections::BTreeMap;
use std::path::Path;

use crate::model::*;
use crate::raw::{self, RawComponent, RawLink, RawManifest, RawTrait};
use crate::{is_valid_name, parse_duration, parse_size, ManifestError};

struct Validator<'a> {
    origin: &'a str,
}

impl Validator<'_> {
    fn err(&self, location: impl Into<String>, message: impl Into<String>) -> ManifestError {
        ManifestError::Invalid {
            origin: self.origin.to_string(),
            location: location.into(),
            message: message.into(),
        }
    }
}

/// The most nodes (components and capabilities) one app may declare.
pub const MAX_NODES: usize = 1_000;
/// The most traits (links, routes, scalers) one app may declare, all nodes together.
pub const MAX_TRAITS: usize = 10_000;

pub(crate) fn validate(raw: RawManifest, origin: &str) -> Result<Manifest, ManifestError> {
    let v = Validator { origin };
    if raw.api_version != "core.oam.dev/v1beta1" {
        return Err(v.err(
            "apiVersion",
            format!(
                "`{}` is not supported; use `core.oam.dev/v1beta1`",
                raw.api_version
            ),
        ));
    }
    if raw.kind != "Application" {
        return Err(v.err(
            "kind",
            format!("`{}` is not supported; use `Application`", raw.kind),
        ));
    }
    check_name(&v, "metadata.name", &raw.metadata.name)?;
    let version = raw.metadata.annotations.get("version").cloned();
    if let Some(version) = &version {
        if version.is_empty() || version.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(v.err(
                "metadata.annotations.version",
                format!("`{version}` is not a usable version; use something like v1.2.0"),
            ));
        }
    }
    if raw.spec.components.is_empty() {
        return Err(v.err("spec.components", "the app has no components"));
    }
    if raw.spec.components.len() > MAX_NODES {
        return Err(v.err(
            "spec.components",
            format!(
                "{} nodes are more than an app may have ({MAX_NODES}); split it into apps",
                raw.spec.components.len()
            ),
        ));
    }
    let traits: usize = raw.spec.components.iter().map(|n| n.traits.len()).sum();
    if traits > MAX_TRAITS {
        return Err(v.err(
            "spec.components",
            format!(
                "{traits} traits (links, routes, scalers) are more than an app may have \
                 ({MAX_TRAITS}); split it into apps"
            ),
        ));
    }

    let mut kinds: BTreeMap<&str, &str> = BTreeMap::new();
    for node in &raw.spec.components {
        let at = format!("component `{}`", node.name);
        check_name(&v, &format!("{at}: name"), &node.name)?;
        if kinds.insert(&node.name, &node.kind).is_some() {
            return Err(v.err(
                at,
                "the name is used by two components; names must be unique",
            ));
        }
    }

    let mut components = Vec::new();
    let mut capabilities = Vec::new();
    for node in &raw.spec.components {
        match node.kind.as_str() {
            "component" => components.push(component(&v, node, &kinds)?),
            "capability" => capabilities.push(capability_node(&v, node, &kinds)?),
            other => {
                return Err(v.err(
                    format!("component `{}`: type", node.name),
                    format!("`{other}` is not a node type; use `component` or `capability`"),
                ))
            }
        }
    }
    for component in &mut components {
        component_links(&v, component, &kinds)?;
    }
    check_http_link_cycles(&v, &components)?;

    let warnings = unread(&raw);
    Ok(Manifest {
        annotations: raw.metadata.annotations.clone(),
        origin: origin.to_string(),
        name: raw.metadata.name,
        version,
        components,
        capabilities,
        warnings,
    })
}

/// What in `raw` weft reads but does not act on, each said once: fields outside weft's
/// reading of wadm's schema, wadm policies, secrets passed over links, and configs named
/// without properties (kept in wasmCloud's config store, which weft does not have).
fn unread(raw: &RawManifest) -> Vec<String> {
    let mut warnings: Vec<String> = raw
        .unread_fields()
        .into_iter()
        .map(|at| format!("{at} is not read by weft and has no effect"))
        .collect();
    for policy in &raw.spec.policies {
        warnings.push(format!(
            "spec.policies `{}` (type {}) is not read: weft keeps secrets in its own store \
             (`weft secret put`), granted by `properties.secrets` and `secret:KEY` config values",
            policy.name, policy.kind
        ));
    }
    for node in &raw.spec.components {
        let at = format!("component `{}`", node.name);
        let mut configs: Vec<&NamedConfig> = node.properties.config.iter().collect();
        for (i, t) in node.traits.iter().enumerate() {
            if node.kind == "capability" && !matches!(t, RawTrait::Link(_)) {
                warnings.push(format!(
                    "{at}: traits[{i}]: a capability is served by each host that runs a component \
                     linked to it, not scaled as wasmCloud scales providers; the scaler is not read"
                ));
            }
            if let RawTrait::Link(link) = t {
                let secrets = link.source.iter().flat_map(|s| &s.secrets).count()
                    + match &link.target {
                        raw::LinkTarget::Full(spec) => spec.secrets.len(),
                        raw::LinkTarget::Name(_) => 0,
                    };
                if secrets > 0 {
                    warnings.push(format!(
                        "{at}: the link to `{}` passes secrets, which weft does not pass over \
                         links; give the capability a `secret:KEY` config value instead",
                        link.target.name()
                    ));
                }
                configs.extend(link.source.iter().flat_map(|s| &s.config));
                configs.extend(&link.source_config);
                configs.extend(&link.target_config);
                if let raw::LinkTarget::Full(spec) = &link.target {
                    configs.extend(&spec.config);
                }
            }
        }
        for config in configs.into_iter().filter(|c| c.properties.is_empty()) {
            warnings.push(format!(
                "{at}: config `{}` has no properties here; wasmCloud would read it from its \
                 config store (`wash config put`), which weft does not have, so it is empty: \
                 write its properties in the manifest",
                config.name
            ));
        }
    }
    warnings
}

fn check_name(v: &Validator<'_>, location: &str, name: &str) -> Result<(), ManifestError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(v.err(
            location,
            format!(
                "`{name}` is not a valid name; use letters, digits, `-`, `_` and `.`, starting with a letter or digit"
            ),
        ))
    }
}

fn component(
    v: &Validator<'_>,
    node: &RawComponent,
    kinds: &BTreeMap<&str, &str>,
) -> Result<Component, ManifestError> {
    let at = format!("component `{}`", node.name);
    if let Some(shared) = &node.properties.application {
        return shared_component(v, node, shared, kinds);
    }
    let image = node
        .properties
        .image
        .clone()
        .filter(|i| !i.trim().is_empty())
        .ok_or_else(|| {
            v.err(
                format!("{at}: properties.image"),
                "missing; give the path of the built .wasm (e.g. ./build/app.wasm), or \
                 `application: {name, component}` to use another app's component",
            )
        })?;
    if image.starts_with("weft:") {
        return Err(v.err(
            format!("{at}: properties.image"),
            format!("`{image}` names a built-in capability; declare it with `type: capability`"),
        ));
    }

    let mut limits = Limits::default();
    if let Some(raw) = &node.properties.limits {
        if let Some(memory) = &raw.memory {
            limits.stated.memory = true;
            limits.max_memory = parse_size(memory)
                .map_err(|m| v.err(format!("{at}: properties.limits.memory"), m.0))?;
            if limits.max_memory < 64 * 1024 {
                return Err(v.err(
                    format!("{at}: properties.limits.memory"),
                    "must be at least 64KiB, one Wasm page",
                ));
            }
            if limits.max_memory > MEMORY_CEILING {
                return Err(v.err(
                    format!("{at}: properties.limits.memory"),
                    format!("{memory} is more than one instance can have: at most 1GiB"),
                ));
            }
        }
        if let Some(timeout) = &raw.timeout {
            limits.stated.timeout = true;
            limits.timeout = parse_duration(timeout)
                .map_err(|m| v.err(format!("{at}: properties.limits.timeout"), m.0))?;
            if limits.timeout > TIMEOUT_CEILING {
                return Err(v.err(
                    format!("{at}: properties.limits.timeout"),
                    format!("{timeout} is longer than a request may run: at most 1h"),
                ));
            }
        }
    }

    if let Some(concurrency) = node.properties.concurrency {
        if !(1..=CONCURRENCY_CEILING).contains(&concurrency) {
            return Err(v.err(
                format!("{at}: properties.concurrency"),
                format!("must be between 1 and {CONCURRENCY_CEILING}"),
            ));
        }
        limits.concurrency = Some(concurrency);
    }

    let reuse = match &node.properties.reuse {
        None => None,
        Some(raw) => {
            let max_requests = raw.requests.unwrap_or(DEFAULT_REUSE_REQUESTS);
            if max_requests == 0 {
                return Err(v.err(
                    format!("{at}: properties.reuse.requests"),
                    "must be at least 1",
                ));
            }
            let idle = match &raw.idle {
                Some(idle) => parse_duration(idle)
                    .map_err(|m| v.err(format!("{at}: properties.reuse.idle"), m.0))?,
                None => DEFAULT_REUSE_IDLE,
            };
            Some(Reuse { max_requests, idle })
        }
    };

    let mut links = Vec::new();
    let mut scaler = None;
    for (i, t) in node.traits.iter().enumerate() {
        let field = format!("{at}: traits[{i}]");
        match t {
            RawTrait::Spreadscaler(s) | RawTrait::Daemonscaler(s) => {
                if scaler.is_some() {
                    return Err(v.err(field, "a component takes one scaler trait"));
                }
                if s.instances == 0 {
                    return Err(v.err(
                        format!("{field}.properties.instances"),
                        "must be at least 1",
                    ));
                }
                if s.instances > INSTANCES_CEILING {
                    return Err(v.err(
                        format!("{field}.properties.instances"),
                        format!(
                            "{} is more than one host runs of a component: at most \
                             {INSTANCES_CEILING}",
                            s.instances
                        ),
                    ));
                }
                limits.max_instances = s.instances;
                limits.stated.instances = true;
                let kind = match t {
                    RawTrait::Daemonscaler(_) => ScalerKind::Daemon,
                    _ => ScalerKind::Spread,
                };
                scaler = Some(check_scaler(v, &field, kind, s)?);
            }
            RawTrait::Link(link) => links.push(check_link(v, &field, link, kinds)?),
        }
    }

    let build = match &node.properties.build {
        None => None,
        Some(raw) => {
            let command = raw
                .command
                .clone()
                .filter(|c| !c.trim().is_empty())
                .ok_or_else(|| {
                    v.err(
                        format!("{at}: properties.build.command"),
                        "missing; give the command that writes the image, e.g. \
                         `tinygo build -target=wasip2 -o build/app.wasm .`",
                    )
                })?;
            if let Some(dir) = &raw.workdir {
                if Path::new(dir).is_absolute() || dir.split('/').any(|p| p == "..") {
                    return Err(v.err(
                        format!("{at}: properties.build.workdir"),
                        format!("`{dir}` must be a path inside the manifest's directory"),
                    ));
                }
            }
            Some(BuildStep {
                command,
                workdir: raw.workdir.clone(),
            })
        }
    };

    Ok(Component {
        name: node.name.clone(),
        image,
        limits,
        reuse,
        outgoing_http: None,
        config: node.properties.config.clone(),
        links,
        grants: Vec::new(),
        secrets: secrets(v, &at, &node.properties.secrets)?,
        http_links: Vec::new(),
        component_links: Vec::new(),
        shared: None,
        scaler,
        build,
    })
}

/// A scaler's spread rules: unique names, weights of at least 1 (1 when not given).
fn check_scaler(
    v: &Validator<'_>,
    field: &str,
    kind: ScalerKind,
    raw: &raw::Scaler,
) -> Result<Scaler, ManifestError> {
    let mut spread = Vec::with_capacity(raw.spread.len());
    for (i, rule) in raw.spread.iter().enumerate() {
        let at = format!("{field}.properties.spread[{i}]");
        if spread.iter().any(|r: &SpreadRule| r.name == rule.name) {
            return Err(v.err(at, format!("a second spread rule named `{}`", rule.name)));
        }
        let weight = rule.weight.unwrap_or(1);
        if weight == 0 {
            return Err(v.err(format!("{at}.weight"), "must be at least 1"));
        }
        spread.push(SpreadRule {
            name: rule.name.clone(),
            requirements: rule.requirements.clone(),
            weight,
        });
    }
    Ok(Scaler {
        kind,
        instances: raw.instances,
        spread,
    })
}

/// A component node that names another app's component: it may carry links, nothing else.
fn shared_component(
    v: &Validator<'_>,
    node: &RawComponent,
    shared: &raw::RawSharedRef,
    kinds: &BTreeMap<&str, &str>,
) -> Result<Component, ManifestError> {
    let at = format!("component `{}`", node.name);
    let p = &node.properties;
    if p.image.is_some()
        || p.build.is_some()
        || p.limits.is_some()
        || p.reuse.is_some()
        || p.concurrency.is_some()
        || !p.secrets.is_empty()
        || !p.config.is_empty()
    {
        return Err(v.err(
            format!("{at}: properties"),
            format!(
                "a shared component takes its image, limits, secrets and config from app `{}`; \
                 give only `application` here (and links as traits)",
                shared.name
            ),
        ));
    }
    check_name(
        v,
        &format!("{at}: properties.application.name"),
        &shared.name,
    )?;
    check_name(
        v,
        &format!("{at}: properties.application.component"),
        &shared.component,
    )?;
    let mut links = Vec::new();
    for (i, t) in node.traits.iter().enumerate() {
        let field = format!("{at}: traits[{i}]");
        match t {
            RawTrait::Link(link) => links.push(check_link(v, &field, link, kinds)?),
            _ => {
                return Err(v.err(
                    field,
                    "a shared component is scaled by the app that owns it; remove this trait",
                ))
            }
        }
    }
    Ok(Component {
        name: node.name.clone(),
        image: String::new(),
        limits: Limits::default(),
        reuse: None,
        outgoing_http: None,
        config: Vec::new(),
        links,
        grants: Vec::new(),
        secrets: Vec::new(),
        http_links: Vec::new(),
        component_links: Vec::new(),
        shared: Some(SharedRef {
            app: shared.name.clone(),
            component: shared.component.clone(),
        }),
        scaler: None,
        build: None,
    })
}

fn check_link(
    v: &Validator<'_>,
    field: &str,
    link: &RawLink,
    kinds: &BTreeMap<&str, &str>,
) -> Result<Link, ManifestError> {
    let target = link.target.name();
    if !kinds.contains_key(target) {
        let known: Vec<&str> = kinds.keys().copied().collect();
        return Err(v.err(
            format!("{field}.properties.target"),
            format!(
                "links to `{target}`, which is not in this app (its nodes: {})",
                known.join(", ")
            ),
        ));
    }
    if link.namespace.is_empty() || link.package.is_empty() || link.interfaces.is_empty() {
        return Err(v.err(
            field,
            "a link needs `namespace`, `package` and at least one interface",
        ));
    }
    // wadm's older `target_config` / `source_config` sit beside the newer nested forms.
    let mut target_config = match &link.target {
        raw::LinkTarget::Name(_) => Vec::new(),
        raw::LinkTarget::Full(spec) => spec.config.clone(),
    };
    target_config.extend(link.target_config.iter().cloned());
    let mut source_config: Vec<NamedConfig> = link
        .source
        .as_ref()
        .map(|s| s.config.clone())
        .unwrap_or_default();
    source_config.extend(link.source_config.iter().cloned());
    Ok(Link {
        target: target.to_string(),
        namespace: link.namespace.clone(),
        package: link.package.clone(),
        interfaces: link.interfaces.clone(),
        name: link.name.clone(),
        source_config,
        target_config,
    })
}

/// A capability node: its image and config as written, and its links (resolved by the lock).
fn capability_node(
    v: &Validator<'_>,
    node: &RawComponent,
    kinds: &BTreeMap<&str, &str>,
) -> Result<CapabilityNode, ManifestError> {
    let at = format!("component `{}`", node.name);
    let p = &node.properties;
    if p.limits.is_some() || p.reuse.is_some() || p.concurrency.is_some() {
        return Err(v.err(
            format!("{at}: properties"),
            "limits, reuse and concurrency apply to components, not capabilities",
        ));
    }
    if !node.properties.secrets.is_empty() {
        return Err(v.err(
            format!("{at}: properties.secrets"),
            "secrets are granted to components, not capabilities",
        ));
    }
    let mut links = Vec::new();
    for (i, t) in node.traits.iter().enumerate() {
        // A scaler on a capability is a warning (see `unread`).
        if let RawTrait::Link(link) = t {
            let field = format!("{at}: traits[{i}]");
            links.push((i, check_link(v, &field, link, kinds)?));
        }
    }
    Ok(CapabilityNode {
        name: node.name.clone(),
        image: node.properties.image.clone().unwrap_or_default(),
        config: node.properties.config.clone(),
        links,
    })
}

/// Reads a component's links to other components: over HTTP (in-process `http://name/`) or for
/// interfaces of the app's own. Links to capability nodes are the lock's to read.
fn component_links(
    v: &Validator<'_>,
    component: &mut Component,
    kinds: &BTreeMap<&str, &str>,
) -> Result<(), ManifestError> {
    let at = format!("component `{}`", component.name);
    for link in &component.links {
        if kinds.get(link.target.as_str()) != Some(&"component") {
            continue;
        }
        let field = format!("{at}: link to `{}`", link.target);
        if link.target == component.name {
            return Err(v.err(field, "a component cannot link to itself"));
        }
        if !link.is_within("wasi", "http", &["incoming-handler", "handler"]) {
            if link.namespace == "wasi" {
                return Err(v.err(
                    field,
                    format!(
                        "`{}` is served by weft itself or by capabilities, not by another \
                         component",
                        link.describe()
                    ),
                ));
            }
            component.component_links.push(ComponentLink {
                target: link.target.clone(),
                interfaces: link
                    .interfaces
                    .iter()
                    .map(|i| format!("{}:{}/{i}", link.namespace, link.package))
                    .collect(),
            });
            continue;
        }
        let authority = link.name.clone().unwrap_or_else(|| link.target.clone());
        if component
            .http_links
            .iter()
            .any(|l| l.authority == authority)
        {
            return Err(v.err(
                field,
                format!("two component links answer on `http://{authority}/`; give them different `name:`s"),
            ));
        }
        let handler = link.interfaces.iter().any(|i| i == "handler");
        if handler && component.http_links.iter().any(|l| l.handler) {
            return Err(v.err(
                field,
                "a middleware passes requests to one next handler: link `handler` to one \
                 component",
            ));
        }
        component.http_links.push(HttpLink {
            authority,
            target: link.target.clone(),
            handler,
        });
    }
    Ok(())
}

/// Refuses component links that lead back to where they started: a request would loop forever.
fn check_http_link_cycles(
    v: &Validator<'_>,
    components: &[Component],
) -> Result<(), ManifestError> {
    let links = |name: &str| -> Vec<&str> {
        components
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.link_targets().collect())
            .unwrap_or_default()
    };
    for start in components {
        let mut frontier: Vec<Vec<&str>> = vec![vec![start.name.as_str()]];
        while let Some(trail) = frontier.pop() {
            let last = *trail.last().unwrap_or(&"");
            for next in links(last) {
                if next == start.name {
                    return Err(v.err(
                        format!("component `{}`", start.name),
                        format!(
                            "component links form a loop: {} → {next}",
                            trail.join(" → ")
                        ),
                    ));
                }
                if !trail.contains(&next) {
                    let mut longer = trail.clone();
                    longer.push(next);
                    frontier.push(longer);
                }
            }
        }
    }
    Ok(())
}

fn secrets(
    v: &Validator<'_>,
    at: &str,
    raw: &[raw::RawSecret],
) -> Result<Vec<SecretGrant>, ManifestError> {
    let mut grants: Vec<SecretGrant> = Vec::new();
    for (i, secret) in raw.iter().enumerate() {
        let field = format!("{at}: properties.secrets[{i}]");
        check_secret_key(v, &field, &secret.properties.key)?;
        if secret.name.is_empty() {
            return Err(v.err(
                field,
                "a secret needs a `name`, the name the component asks for",
            ));
        }
        if grants.iter().any(|g| g.name == secret.name) {
            return Err(v.err(field, format!("secret `{}` is granted twice", secret.name)));
        }
        if let Some(policy) = &secret.properties.policy {
            if policy != "weft" {
                return Err(v.err(
                    format!("{field}.properties.policy"),
                    format!("`{policy}`: weft reads secrets from its own store; use `policy: weft` or leave it out"),
                ));
            }
        }
        if secret.properties.field.is_some() || secret.properties.version.is_some() {
            return Err(v.err(
                field,
                "`field` and `version` select parts of an external secret backend's entries; \
                 weft's store keeps one value per key, so name the key alone",
            ));
        }
        grants.push(SecretGrant {
            name: secret.name.clone(),
            key: secret.properties.key.clone(),
        });
    }
    Ok(grants)
}

fn check_secret_key(v: &Validator<'_>, field: &str, key: &str) -> Result<(), ManifestError> {
    check_name(v, &format!("{field}.properties.key"), key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_with(nodes: usize) -> String {
        let mut text = String::from(
            "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata: { name: big }\nspec:\n  components:\n",
        );
        for i in 0..nodes {
            text.push_str(&format!(
                "    - {{ name: c{i}, type: component, properties: {{ image: c.wasm }} }}\n"
            ));
        }
        text
    }

    #[test]
    fn an_app_past_the_node_limit_is_refused_naming_it() {
        assert!(crate::parse(&app_with(MAX_NODES), "big.yaml").is_ok());
        let e = crate::parse(&app_with(MAX_NODES + 1), "big.yaml").unwrap_err();
        assert!(
            e.to_string()
                .contains("1001 nodes are more than an app may have (1000)"),
            "{e}"
        );
    }
}
