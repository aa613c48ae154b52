//! Typed capability config: a manifest's string settings read into a backend's own serde struct,
//! so an unknown key is refused by name and every default lives beside the field it fills.

use std::fmt;

use serde::de::value::MapDeserializer;
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use weft_manifest::Settings;

/// Why settings did not fit a backend's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl de::Error for ConfigError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ConfigError(msg.to_string())
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        ConfigError(if expected.is_empty() {
            format!("unknown key `{field}`; this takes no config keys")
        } else {
            format!("unknown key `{field}`; known keys: {}", expected.join(", "))
        })
    }
}

/// The config of a backend that is a server reached by URL (Redis, NATS).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    url: Option<String>,
}

impl ServerConfig {
    /// The configured URL, or where the server is when the manifest does not say.
    pub fn url_or(self, default: &str) -> String {
        self.url.unwrap_or_else(|| default.to_string())
    }
}

/// Where NATS is when a link's config does not say.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// The keys of a NATS link's config that say where the server is and how to connect to it;
/// each NATS backend takes these beside its own.
pub const NATS_CONNECTION_KEYS: &[&str] = &[
    "url",
    "credentials",
    "nkey",
    "user",
    "password",
    "token",
    "tls_ca",
    "tls_cert",
    "tls_key",
];

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NatsConnectionConfig {
    url: Option<String>,
    /// A `.creds` file's path on the host, or its text (from a `secret:` reference).
    credentials: Option<String>,
    /// An NKey user seed (best given as a `secret:` reference).
    nkey: Option<String>,
    user: Option<String>,
    password: Option<String>,
    token: Option<String>,
    tls_ca: Option<std::path::PathBuf>,
    tls_cert: Option<std::path::PathBuf>,
    tls_key: Option<std::path::PathBuf>,
}

/// The own config of a NATS backend that takes only the connection's keys.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoOwnKeys {}

/// Where a NATS backend connects, and as whom.
pub struct NatsServer {
    pub url: String,
    pub auth: weft_lattice::NatsAuth,
}

impl NatsServer {
    /// Names the connection for sharing: links with the same server but other credentials
    /// never share a connection, so no app acts with another's rights.
    pub fn identity(&self) -> String {
        format!("{}@{}", self.auth.fingerprint(), self.url)
    }
}

/// A NATS backend's settings, read without touching the host: the connection's keys and the
/// backend's own keys, `own`, read into `C`. A key that is neither is refused, naming all it
/// could be.
fn nats_config<C: DeserializeOwned>(
    settings: &Settings,
    own: &[&str],
) -> Result<(NatsConnectionConfig, C), ConfigError> {
    if let Some(unknown) = settings
        .keys()
        .find(|k| !NATS_CONNECTION_KEYS.contains(&k.as_str()) && !own.contains(&k.as_str()))
    {
        let known: Vec<&str> = NATS_CONNECTION_KEYS.iter().chain(own).copied().collect();
        return Err(ConfigError(format!(
            "unknown key `{unknown}`; known keys: {}",
            known.join(", ")
        )));
    }
    let (connection, own): (Settings, Settings) = settings
        .clone()
        .into_iter()
        .partition(|(k, _)| NATS_CONNECTION_KEYS.contains(&k.as_str()));
    Ok((typed(&connection)?, typed(&own)?))
}

/// How to connect; a `.creds` path is read only when `read_files`, so a manifest is checked
/// anywhere (on the CLI's machine, on the host a deploy enters) and the file is read on the
/// host that connects.
fn nats_server(
    connection: NatsConnectionConfig,
    read_files: bool,
) -> Result<NatsServer, ConfigError> {
    let credentials = match connection.credentials {
        Some(path) if read_files && !path.contains("-----BEGIN") => Some(
            weft_lattice::Secret::new(std::fs::read_to_string(&path).map_err(|e| {
                ConfigError(format!(
                    "credentials: cannot read the .creds file {path}: {e}; give the path of a \
                     file on this host or its text through a `secret:` reference"
                ))
            })?),
        ),
        given => given.map(weft_lattice::Secret::new),
    };
    let auth = weft_lattice::NatsAuth {
        credentials,
        nkey: connection.nkey.map(weft_lattice::Secret::new),
        user: connection.user,
        password: connection.password.map(weft_lattice::Secret::new),
        token: connection.token.map(weft_lattice::Secret::new),
        tls_ca: connection.tls_ca,
        tls_cert: connection.tls_cert,
        tls_key: connection.tls_key,
    };
    auth.check().map_err(|e| ConfigError(e.0))?;
    Ok(NatsServer {
        url: connection
            .url
            .unwrap_or_else(|| DEFAULT_NATS_URL.to_string()),
        auth,
    })
}

/// Checks a NATS backend's settings without reading any file: what a deploy validates.
pub fn check_nats_settings<C: DeserializeOwned>(
    settings: &Settings,
    own: &[&str],
) -> Result<(), ConfigError> {
    let (connection, _) = nats_config::<C>(settings, own)?;
    nats_server(connection, false).map(|_| ())
}

/// A NATS backend's settings as the host that connects uses them: where, as whom, and the
/// backend's own config.
pub fn nats_settings<C: DeserializeOwned>(
    settings: &Settings,
    own: &[&str],
) -> Result<(NatsServer, C), ConfigError> {
    let (connection, own) = nats_config::<C>(settings, own)?;
    Ok((nats_server(connection, true)?, own))
}

/// The config of a backend keeping one file per capability (redb, SQLite).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    path: Option<std::path::PathBuf>,
}

impl FileConfig {
    /// The configured file, else `<state>/<kind>/<app>/<capability>.<extension>`.
    pub fn path_or_state(
        self,
        at: &crate::Placement<'_>,
        grant: &weft_manifest::Grant,
        extension: &str,
    ) -> std::path::PathBuf {
        self.path
            .unwrap_or_else(|| state_file(at, grant, extension))
    }
}

/// A capability's file in the state dir: `<state>/<kind>/<app>/<capability>.<extension>`.
pub fn state_file(
    at: &crate::Placement<'_>,
    grant: &weft_manifest::Grant,
    extension: &str,
) -> std::path::PathBuf {
    at.state_dir
        .join(&grant.kind)
        .join(at.app)
        .join(format!("{}.{extension}", grant.capability))
}

/// The prefix of a config value that names a key of the host's secret store instead of holding
/// the value itself (`url: secret:redis-url`), so a backend's credentials are kept encrypted with
/// the other secrets, not in clear in the app's stored manifest.
pub const SECRET_REFERENCE: &str = "secret:";

/// The secret key a config value refers to, when it is a reference.
pub fn secret_reference(value: &str) -> Option<&str> {
    value.strip_prefix(SECRET_REFERENCE)
}

/// Checks that every `secret:` value names a possible key.
pub fn check_secret_references(settings: &Settings) -> Result<(), ConfigError> {
    for (name, value) in settings {
        if let Some(key) = secret_reference(value) {
            if !weft_manifest::is_valid_name(key) {
                return Err(ConfigError(format!(
                    "`{name}: {value}` does not name a secret; write `secret:KEY` with the key \
                     given to `weft secret put`"
                )));
            }
        }
    }
    Ok(())
}

/// `settings` with each `secret:KEY` value replaced by the secret's text from `secrets`.
pub fn reveal_secret_references(
    settings: &Settings,
    secrets: &crate::SecretStore,
) -> Result<Settings, ConfigError> {
    let mut revealed = settings.clone();
    for (name, value) in revealed.iter_mut() {
        let Some(key) = secret_reference(value) else {
            continue;
        };
        let secret = secrets
            .get(key)
            .map_err(|e| ConfigError(format!("config `{name}`: {e}")))?;
        *value = match secret {
            Some(crate::secrets::SecretValue::String(text)) => text,
            Some(crate::secrets::SecretValue::Bytes(_)) => {
                return Err(ConfigError(format!(
                    "config `{name}` refers to secret `{key}`, which holds bytes, not text; \
                     store it again as text with `weft secret put {key}`"
                )))
            }
            None => {
                return Err(ConfigError(format!(
                    "config `{name}` refers to secret `{key}`, which this host's secret store \
                     does not hold; set it with `weft secret put {key}`"
                )))
            }
        };
    }
    Ok(revealed)
}

/// Reads `settings` into `C`. Fields are strings or `Option`s of them; `C` should carry
/// `#[serde(deny_unknown_fields)]` so a typo is an error, not a silent default.
pub fn typed<C: DeserializeOwned>(settings: &Settings) -> Result<C, ConfigError> {
    C::deserialize(MapDeserializer::new(
        settings.iter().map(|(k, v)| (k.as_str(), Text(v.as_str()))),
    ))
}

/// One config value: a string, which may fill an `Option` field.
struct Text<'a>(&'a str);

impl<'de> IntoDeserializer<'de, ConfigError> for Text<'_> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> de::Deserializer<'de> for Text<'_> {
    type Error = ConfigError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_str(self.0)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_some(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Example {
        url: Option<String>,
        #[serde(default = "default_bucket")]
        bucket: String,
    }

    fn default_bucket() -> String {
        "weft".into()
    }

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fills_options_and_defaults() {
        let c: Example = typed(&settings(&[("url", "nats://x")])).unwrap();
        assert_eq!(c.url.as_deref(), Some("nats://x"));
        assert_eq!(c.bucket, "weft");
        let c: Example = typed(&Settings::new()).unwrap();
        assert_eq!(c.url, None);
    }

    #[test]
    fn names_an_unknown_key_and_the_known_ones() {
        let e = typed::<Example>(&settings(&[("ulr", "x")])).unwrap_err();
        assert_eq!(e.0, "unknown key `ulr`; known keys: url, bucket");
    }

    #[test]
    fn secret_references_name_a_key_and_are_revealed_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::SecretStore::open(dir.path()).unwrap();
        store
            .put(
                "db",
                &crate::secrets::SecretValue::String("redis://:pw@h".into()),
            )
            .unwrap();
        let given = settings(&[("url", "secret:db"), ("bucket", "plain")]);
        check_secret_references(&given).unwrap();
        let revealed = reveal_secret_references(&given, &store).unwrap();
        assert_eq!(revealed["url"], "redis://:pw@h");
        assert_eq!(revealed["bucket"], "plain");

        let e = check_secret_references(&settings(&[("url", "secret:")])).unwrap_err();
        assert!(e.0.contains("does not name a secret"), "{e}");
        let e = reveal_secret_references(&settings(&[("url", "secret:gone")]), &store).unwrap_err();
        assert!(e.0.contains("weft secret put gone"), "{e}");
    }
}
