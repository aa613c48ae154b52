//! Which part of weft would satisfy an import, told from its name alone: what `weft inspect`
//! reports before anything is deployed.

use serde::Serialize;

/// How weft satisfies one import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "kebab-case")]
pub enum Provider {
    /// WASI 0.2, linked for every component.
    Wasi,
    /// WASI 0.3.0, linked for every component.
    Wasi3,
    /// A WASI 0.3 middleware's next handler: the component its `handler` link names.
    NextHandler,
    /// A capability reached only through a link to a node of this kind in the manifest.
    Link { capability: &'static str },
    /// A capability every component may import; what it reaches is granted in its properties.
    Always { what: &'static str },
    /// Nothing weft provides; `reason` says what would.
    Nothing { reason: String },
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provider::Wasi => write!(f, "WASI 0.2 (always)"),
            Provider::Wasi3 => write!(f, "WASI 0.3.0 (always)"),
            Provider::NextHandler => write!(
                f,
                "the next handler (needs a link from this middleware with interfaces [handler])"
            ),
            Provider::Link { capability } => {
                write!(
                    f,
                    "the {capability} capability (needs a link to a {capability} node)"
                )
            }
            Provider::Always { what } => write!(f, "{what} (always)"),
            Provider::Nothing { reason } => write!(f, "NOTHING: {reason}"),
        }
    }
}

/// The packages of WASI 0.2 the host links for everyone, and the outgoing side of wasi:http.
const WASI: &[&str] = &[
    "cli",
    "clocks",
    "filesystem",
    "io",
    "random",
    "sockets",
    "http",
];

/// The packages of WASI 0.3.0 the host links for everyone (0.3 has no `io`: streams and futures
/// are the component model's own).
const WASI_3: &[&str] = &["cli", "clocks", "filesystem", "random", "sockets", "http"];

/// Imports of weft's own capability bindings (`wit/worlds.wit`), versions included.
fn capability_imports() -> impl Iterator<Item = &'static str> {
    include_str!("../wit/worlds.wit")
        .lines()
        .filter_map(|line| line.trim().strip_prefix("import "))
        .map(|rest| rest.trim_end_matches(';').trim())
}

/// What the free capabilities are called; the gated ones are named by their [`Capability`].
fn free_capability(package: &str) -> Option<&'static str> {
    Some(match package {
        "wasi:config" => "config (properties.config)",
        "wasi:logging" => "logging",
        "wasmcloud:secrets" => "secrets (properties.secrets)",
        "wasmcloud:bus" => "link selection (wasmcloud:bus)",
        _ => return None,
    })
}

/// Which part of weft satisfies `import` (`namespace:package/interface@version`).
pub fn provider_of(import: &str) -> Provider {
    let (unversioned, version) = import.split_once('@').unwrap_or((import, ""));
    let Some((package, _interface)) = unversioned.split_once('/') else {
        return Provider::Nothing {
            reason: "a bare function import: no host provides one; compose the component \
                     with one that exports it (`weft compose`)"
                .into(),
        };
    };
    if unversioned == "wasi:http/handler" && version == "0.3.0" {
        return Provider::NextHandler;
    }
    if let Some(name) = package.strip_prefix("wasi:") {
        if WASI.contains(&name) {
            return if version.starts_with("0.2.") {
                Provider::Wasi
            } else if version == "0.3.0" && WASI_3.contains(&name) {
                Provider::Wasi3
            } else {
                Provider::Nothing {
                    reason: format!(
                        "weft serves WASI 0.2 (0.2.x) and 0.3.0; this is {}",
                        if version.is_empty() {
                            "unversioned"
                        } else {
                            version
                        }
                    ),
                }
            };
        }
    }
    let offered: Vec<&str> = capability_imports()
        .filter(|i| {
            i.split('@')
                .next()
                .and_then(|u| u.split_once('/'))
                .map(|(p, _)| p)
                == Some(package)
        })
        .collect();
    if offered.contains(&import) {
        if let Some(what) = free_capability(package) {
            return Provider::Always { what };
        }
        let (namespace, name) = package.split_once(':').unwrap_or((package, ""));
        let capability = crate::CAPABILITIES
            .iter()
            .find(|c| c.gated_package() == Some((namespace, name)))
            .map_or("matching", |c| c.name());
        return Provider::Link { capability };
    }
    if !offered.is_empty() {
        return Provider::Nothing {
            reason: format!("weft provides {}, not this one", offered.join(", ")),
        };
    }
    Provider::Nothing {
        reason: "no capability of weft; link the component to another that exports it \
                 (a component link in the manifest)"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_import_is_told_apart() {
        assert_eq!(provider_of("wasi:cli/environment@0.2.3"), Provider::Wasi);
        assert_eq!(
            provider_of("wasi:http/outgoing-handler@0.2.0"),
            Provider::Wasi
        );
        assert_eq!(provider_of("wasi:cli/environment@0.3.0"), Provider::Wasi3);
        assert_eq!(provider_of("wasi:http/client@0.3.0"), Provider::Wasi3);
        assert_eq!(
            provider_of("wasi:http/handler@0.3.0"),
            Provider::NextHandler
        );
        assert!(matches!(
            provider_of("wasi:io/streams@0.3.0"),
            Provider::Nothing { reason } if reason.contains("0.3.0")
        ));
        assert!(matches!(
            provider_of("wasi:cli/environment@0.3.0-rc-2025-09-16"),
            Provider::Nothing { reason } if reason.contains("0.3.0-rc-2025-09-16")
        ));
        assert_eq!(
            provider_of("wasi:keyvalue/atomics@0.2.0-draft"),
            Provider::Link {
                capability: "keyvalue"
            }
        );
        assert_eq!(
            provider_of("wasmcloud:messaging/consumer@0.2.0"),
            Provider::Link {
                capability: "messaging"
            }
        );
        assert!(matches!(
            provider_of("wasi:config/store@0.2.0-draft"),
            Provider::Always { .. }
        ));
        assert!(matches!(
            provider_of("wasi:keyvalue/atomics@0.2.0-draft2"),
            Provider::Nothing { reason } if reason.contains("wasi:keyvalue/atomics@0.2.0-draft")
        ));
        assert!(matches!(
            provider_of("example:missing/thing@1.0.0"),
            Provider::Nothing { .. }
        ));
    }
}
