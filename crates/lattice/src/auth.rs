//! How weft proves who it is to a NATS server and secures the connection: one of a `.creds`
//! file (decentralised JWT auth), an NKey seed, a user and password or a token, and TLS with a
//! CA and a client certificate. Every NATS connection weft makes (the lattice, key-value,
//! blobstore and messaging links) is opened with one of these.

use std::fmt;
use std::path::PathBuf;

/// A credential kept out of `Debug` output and logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `text`, trimmed of the line end a file or an editor leaves.
    pub fn new(text: impl Into<String>) -> Self {
        Secret(text.into().trim().to_string())
    }

    fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

/// How to authenticate to NATS and whether to use TLS; the default is neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsAuth {
    /// The text of a `.creds` file: a user JWT and its NKey seed.
    pub credentials: Option<Secret>,
    /// An NKey user seed (`SU…`).
    pub nkey: Option<Secret>,
    /// A user name, given with `password`.
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub token: Option<Secret>,
    /// A PEM file of the CA certificates the server's certificate must chain to; TLS is then
    /// required.
    pub tls_ca: Option<PathBuf>,
    /// A PEM client certificate, given with `tls_key`, for servers that verify clients.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// Why NATS connection settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NatsAuthError(pub String);

impl NatsAuth {
    /// Whether TLS is asked for.
    pub fn wants_tls(&self) -> bool {
        self.tls_ca.is_some() || self.tls_cert.is_some()
    }

    /// Refuses settings that contradict each other, naming how to fix them; reads no file.
    pub fn check(&self) -> Result<(), NatsAuthError> {
        let ways: Vec<&str> = [
            ("credentials", self.credentials.is_some()),
            ("nkey", self.nkey.is_some()),
            (
                "user and password",
                self.user.is_some() || self.password.is_some(),
            ),
            ("token", self.token.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect();
        if ways.len() > 1 {
            return Err(NatsAuthError(format!(
                "NATS takes one way to authenticate, but {} were given; keep one",
                ways.join(" and ")
            )));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(NatsAuthError(
                "a NATS user needs its password and a password its user; give both".into(),
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(NatsAuthError(
                "a TLS client certificate needs its private key and the key its certificate; \
                 give both"
                    .into(),
            ));
        }
        Ok(())
    }

    /// `options` with these credentials and TLS settings applied.
    pub fn apply(
        &self,
        mut options: async_nats::ConnectOptions,
    ) -> Result<async_nats::ConnectOptions, NatsAuthError> {
        self.check()?;
        for path in [&self.tls_ca, &self.tls_cert, &self.tls_key]
            .into_iter()
            .flatten()
        {
            if !path.is_file() {
                return Err(NatsAuthError(format!(
                    "{} is not a file; give the path of a PEM file",
                    path.display()
                )));
            }
        }
        if let Some(creds) = &self.credentials {
            // The parser wants each armour line to end in a newline, the last one included,
            // and `Secret` trims it away.
            let text = format!("{}\n", creds.reveal());
            options = options.credentials(&text).map_err(|e| {
                NatsAuthError(format!(
                    "the NATS credentials are not a .creds file (a user JWT and an NKey seed): \
                     {e}"
                ))
            })?;
        }
        if let Some(seed) = &self.nkey {
            if !seed.reveal().starts_with("SU") {
                return Err(NatsAuthError(
                    "the NKey is not a user seed: a seed starts with `SU` (a public key, `U…`, \
                     belongs in the server's config)"
                        .into(),
                ));
            }
            options = options.nkey(seed.reveal().to_string());
        }
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.user_and_password(user.clone(), password.reveal().to_string());
        }
        if let Some(token) = &self.token {
            options = options.token(token.reveal().to_string());
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if self.wants_tls() {
            // Ignored when a provider is installed already: then that one is used.
            let _ = rustls::crypto::ring::default_provider().install_default();
            options = options.require_tls(true);
        }
        Ok(options)
    }

    /// A short hash of everything here, secrets included, that tells two sets of settings
    /// apart without showing them.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        for part in [
            self.credentials.as_ref().map(Secret::reveal),
            self.nkey.as_ref().map(Secret::reveal),
            self.user.as_deref(),
            self.password.as_ref().map(Secret::reveal),
            self.token.as_ref().map(Secret::reveal),
        ] {
            hash.update(part.unwrap_or("-").as_bytes());
            hash.update([0]);
        }
        for path in [&self.tls_ca, &self.tls_cert, &self.tls_key] {
            hash.update(
                path.as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            );
            hash.update([0]);
        }
        hex::encode(&hash.finalize()[..8])
    }

    /// A short description for logs: the way of authenticating and whether TLS is on, no
    /// secret.
    pub fn describe(&self) -> String {
        let way = match (&self.credentials, &self.nkey, &self.user, &self.token) {
            (Some(_), ..) => "credentials".to_string(),
            (_, Some(_), ..) => "nkey".to_string(),
            (_, _, Some(user), _) => format!("user {user}"),
            (.., Some(_)) => "token".to_string(),
            _ => "no credentials".to_string(),
        };
        format!("{way}{}", if self.wants_tls() { ", TLS" } else { "" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        let auth = NatsAuth {
            user: Some("host-a".into()),
            password: Some(Secret::new("hunter2\n")),
            ..NatsAuth::default()
        };
        let shown = format!("{auth:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("host-a"));
        assert_eq!(auth.describe(), "user host-a");
    }

    #[test]
    fn contradicting_settings_are_refused_by_name() {
        let two = NatsAuth {
            token: Some(Secret::new("t")),
            nkey: Some(Secret::new("SUABC")),
            ..NatsAuth::default()
        };
        assert!(two.check().unwrap_err().0.contains("nkey and token"));
        let user_only = NatsAuth {
            user: Some("u".into()),
            ..NatsAuth::default()
        };
        assert!(user_only
            .check()
            .unwrap_err()
            .0
            .contains("needs its password"));
        let cert_only = NatsAuth {
            tls_cert: Some("/etc/hostname".into()),
            ..NatsAuth::default()
        };
        assert!(cert_only.check().unwrap_err().0.contains("private key"));
        let missing = NatsAuth {
            tls_ca: Some("/nonexistent/ca.pem".into()),
            ..NatsAuth::default()
        };
        assert!(
            missing.check().is_ok(),
            "files are checked where they are used"
        );
        let e = missing
            .apply(async_nats::ConnectOptions::new())
            .unwrap_err();
        assert!(e.0.contains("not a file"), "{e}");
        let public_key = NatsAuth {
            nkey: Some(Secret::new("UABC")),
            ..NatsAuth::default()
        };
        let e = public_key
            .apply(async_nats::ConnectOptions::new())
            .unwrap_err();
        assert!(e.0.contains("not a user seed"), "{e}");
        assert!(NatsAuth::default().check().is_ok());
    }
}
