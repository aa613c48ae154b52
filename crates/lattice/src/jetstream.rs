//! JetStream key-value over JetStream's request/reply API, so it works with every JetStream
//! server (Debian's 2.9 included). A bucket is the stream `KV_<bucket>` on subjects
//! `$KV.<bucket>.>` with one value kept per key, as `nats kv add` makes it; a key's revision is
//! the stream sequence of its last write, and compare-and-set is JetStream's
//! `Nats-Expected-Last-Subject-Sequence` check.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::header::HeaderMap;
use bytes::Bytes;

use crate::auth::NatsAuth;

/// A call waits this long for NATS before failing.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// JetStream's error code for a failed `Nats-Expected-Last-Subject-Sequence` check.
const WRONG_LAST_SEQUENCE: u64 = 10071;
/// JetStream's error code for "a stream with this name exists".
const STREAM_EXISTS: u64 = 10058;

/// Why a lattice operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LatticeError {
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("NATS at {url}: {what}: {reason}")]
    Call {
        url: String,
        what: String,
        reason: String,
    },
    #[error("`{0}` is not a NATS KV key; use letters, digits and `-_/=.`")]
    Key(String),
    #[error("blob {digest}: {reason}")]
    Blob { digest: String, reason: String },
}

/// A connection to NATS with JetStream enabled.
#[derive(Clone)]
pub struct JetStream {
    client: async_nats::Client,
    url: String,
    /// The server's last permissions violation on this connection: a refused publish or
    /// subscribe only shows as a timeout otherwise.
    denied: Arc<Mutex<Option<String>>>,
}

/// The latest entry of a key: its revision and value, None for a deleted key.
#[derive(Debug, Clone)]
pub struct Entry {
    pub revision: u64,
    pub value: Option<Bytes>,
}

/// A JetStream API reply's `error` object.
pub(crate) fn api_error(reply: &serde_json::Value) -> Option<(u64, String)> {
    let error = reply.get("error")?;
    Some((
        error.get("err_code").and_then(|c| c.as_u64()).unwrap_or(0),
        error
            .get("description")
            .and_then(|d| d.as_str())
            .unwrap_or("unknown JetStream error")
            .to_string(),
    ))
}

/// Why a connection failed, with what to do about it.
pub(crate) fn connect_failure(e: &async_nats::ConnectError, auth: &NatsAuth) -> String {
    use async_nats::ConnectErrorKind as Kind;
    let said = e.to_string();
    let tls_trouble = ["certificate", "tls", "handshake", "alert"]
        .iter()
        .any(|word| said.to_ascii_lowercase().contains(word));
    match e.kind() {
        Kind::AuthorizationViolation => format!(
            "the server refused these credentials ({}); check the user, its password, token, \
             NKey or .creds file and the server's accounts",
            auth.describe()
        ),
        Kind::Tls | Kind::Io if tls_trouble => format!(
            "TLS failed: {said}; check that the TLS CA given is the one that signed the \
             server's certificate, that the URL's host is in that certificate, and that a \
             server verifying clients gets a client certificate its CA signed"
        ),
        Kind::TimedOut | Kind::Io | Kind::ServerParse => {
            format!("{said}; start it (`nats-server -js`) or fix the URL")
        }
        _ => said,
    }
}

/// Keys are subject tokens: no spaces or wildcards, no empty tokens.
pub fn check_key(key: &str) -> Result<(), LatticeError> {
    let ok = !key.is_empty()
        && key.split('.').all(|t| !t.is_empty())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/' | '=' | '.'));
    if ok {
        Ok(())
    } else {
        Err(LatticeError::Key(key.to_string()))
    }
}

impl JetStream {
    /// Connects to NATS at `url` as `auth` says; reconnects on its own when the server comes
    /// back. Messages name the server with its credentials hidden.
    pub async fn connect(url: &str, auth: &NatsAuth) -> Result<Self, LatticeError> {
        Self::connect_with_inbox(url, auth, None).await
    }

    /// [`JetStream::connect`] with replies received under `inbox_prefix` instead of
    /// `_INBOX`, so a NATS user limited to a lattice's subjects can still make requests.
    pub async fn connect_with_inbox(
        url: &str,
        auth: &NatsAuth,
        inbox_prefix: Option<&str>,
    ) -> Result<Self, LatticeError> {
        let shown = redact_credentials(url);
        let refused = |reason: String| LatticeError::Connect {
            url: shown.clone(),
            reason,
        };
        let mut options = async_nats::ConnectOptions::new()
            .connection_timeout(CALL_TIMEOUT)
            .request_timeout(Some(CALL_TIMEOUT));
        if let Some(prefix) = inbox_prefix {
            options = options.custom_inbox_prefix(prefix);
        }
        let denied: Arc<Mutex<Option<String>>> = Arc::default();
        let record = denied.clone();
        let server = shown.clone();
        options = options.event_callback(move |event| {
            let record = record.clone();
            let server = server.clone();
            async move {
                if let async_nats::Event::ServerError(async_nats::ServerError::Other(message)) =
                    event
                {
                    if message
                        .to_ascii_lowercase()
                        .contains("permissions violation")
                    {
                        tracing::warn!(nats = %server, "NATS refused: {message}");
                        *record.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
                    }
                }
            }
        });
        let options = auth.apply(options).map_err(|e| refused(e.0))?;
        let client = options
            .connect(url)
            .await
            .map_err(|e| refused(connect_failure(&e, auth)))?;
        Ok(JetStream {
            client,
            url: shown,
            denied,
        })
    }

    /// The core NATS client, for request/reply and subscriptions.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The server's URL, credentials hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn failed(&self, what: &str, reason: impl std::fmt::Display) -> LatticeError {
        let mut reason = reason.to_string();
        let denied = self.denied.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(denied) = denied {
            reason = format!(
                "{reason}; the server said: {denied}. This NATS user lacks a permission the \
                 lattice needs (docs/nats.md lists them)"
            );
        }
        LatticeError::Call {
            url: self.url.clone(),
            what: what.to_string(),
            reason,
        }
    }

    /// Calls the JetStream API at `subject`.
    pub(crate) async fn api(
        &self,
        what: &str,
        subject: String,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, LatticeError> {
        let reply = self
            .client
            .request(subject, body.to_string().into())
            .await
            .map_err(|e| match e.kind() {
                async_nats::RequestErrorKind::NoResponders => self.failed(
                    what,
                    "JetStream is not enabled on this server; start nats-server with -js",
                ),
                _ => self.failed(what, e),
            })?;
        serde_json::from_slice(&reply.payload).map_err(|e| self.failed(what, e))
    }

    /// Creates the stream `config.name` unless it exists.
    pub(crate) async fn ensure_stream(
        &self,
        config: serde_json::Value,
    ) -> Result<(), LatticeError> {
        let name = config["name"].as_str().unwrap_or_default().to_string();
        let reply = self
            .api(
                "create stream",
                format!("$JS.API.STREAM.CREATE.{name}"),
                &config,
            )
            .await?;
        match api_error(&reply) {
            None => Ok(()),
            Some((STREAM_EXISTS, _)) => Ok(()),
            Some((_, description)) => {
                Err(self.failed(&format!("cannot create stream `{name}`"), description))
            }
        }
    }

    /// The last message on `subject` of `stream`, with its sequence and headers.
    pub(crate) async fn last_message(
        &self,
        stream: &str,
        subject: &str,
    ) -> Result<Option<(u64, Option<HeaderMap>, Bytes)>, LatticeError> {
        self.direct_get(stream, serde_json::json!({ "last_by_subj": subject }))
            .await
    }

    /// The first message on `subject` of `stream` at or after sequence `from`, with its
    /// sequence.
    pub(crate) async fn next_message(
        &self,
        stream: &str,
        subject: &str,
        from: u64,
    ) -> Result<Option<(u64, Bytes)>, LatticeError> {
        let request = serde_json::json!({ "seq": from, "next_by_subj": subject });
        Ok(self
            .direct_get(stream, request)
            .await?
            .map(|(sequence, _, payload)| (sequence, payload)))
    }

    /// JetStream's direct get of one message of `stream`; None when none matches.
    async fn direct_get(
        &self,
        stream: &str,
        request: serde_json::Value,
    ) -> Result<Option<(u64, Option<HeaderMap>, Bytes)>, LatticeError> {
        let reply = self
            .client
            .request(
                format!("$JS.API.DIRECT.GET.{stream}"),
                request.to_string().into(),
            )
            .await
            .map_err(|e| self.failed("get", e))?;
        if reply.status.is_some_and(|s| s.as_u16() == 404) {
            return Ok(None);
        }
        if let Some(status) = reply.status.filter(|s| s.as_u16() >= 300) {
            return Err(self.failed("get", format!("status {status}")));
        }
        let sequence = reply
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Sequence"))
            .and_then(|s| s.as_str().parse().ok())
            .ok_or_else(|| self.failed("get", "a reply without Nats-Sequence"))?;
        Ok(Some((sequence, reply.headers, reply.payload)))
    }

    /// Publishes to a stream's subject and waits for its acknowledgement: the new sequence, or
    /// JetStream's refusal (code, description).
    pub(crate) async fn publish(
        &self,
        what: &str,
        subject: String,
        headers: HeaderMap,
        value: Bytes,
    ) -> Result<Result<u64, (u64, String)>, LatticeError> {
        let reply = self
            .client
            .request_with_headers(subject, headers, value)
            .await
            .map_err(|e| self.failed(what, e))?;
        let ack: serde_json::Value =
            serde_json::from_slice(&reply.payload).map_err(|e| self.failed(what, e))?;
        Ok(match api_error(&ack) {
            None => Ok(ack.get("seq").and_then(|s| s.as_u64()).unwrap_or_default()),
            Some(error) => Err(error),
        })
    }

    /// Opens the key-value bucket `name`, creating it on first use.
    pub async fn kv(&self, name: &str) -> Result<Kv, LatticeError> {
        if !crate::is_valid_token(name) {
            return Err(self.failed(
                "open bucket",
                format!("`{name}` is not a bucket name; use letters, digits, `-` and `_`"),
            ));
        }
        self.ensure_stream(serde_json::json!({
            "name": format!("KV_{name}"),
            "subjects": [format!("$KV.{name}.>")],
            "max_msgs_per_subject": 1,
            "discard": "new",
            "allow_rollup_hdrs": true,
            "deny_delete": true,
            "allow_direct": true,
            "storage": "file",
            "num_replicas": 1,
        }))
        .await?;
        Ok(Kv {
            js: self.clone(),
            bucket: name.to_string(),
        })
    }
}

/// One key-value bucket.
#[derive(Clone)]
pub struct Kv {
    js: JetStream,
    bucket: String,
}

/// The outcome of a compare-and-set: the new revision, or the write was refused because the
/// key had moved on.
pub type Cas = Result<u64, CasFailed>;

/// A compare-and-set found another revision than the one expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CasFailed;

impl Kv {
    /// The latest entry of `key`, None when it was never written.
    pub async fn entry(&self, key: &str) -> Result<Option<Entry>, LatticeError> {
        check_key(key)?;
        let subject = format!("$KV.{}.{key}", self.bucket);
        let Some((revision, headers, payload)) = self
            .js
            .last_message(&format!("KV_{}", self.bucket), &subject)
            .await?
        else {
            return Ok(None);
        };
        let deleted = headers
            .as_ref()
            .and_then(|h| h.get("KV-Operation"))
            .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
        Ok(Some(Entry {
            revision,
            value: (!deleted).then_some(payload),
        }))
    }

    /// The value of `key`, None when absent or deleted.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, LatticeError> {
        Ok(self.entry(key).await?.and_then(|e| e.value))
    }

    async fn write(
        &self,
        what: &str,
        key: &str,
        value: Bytes,
        headers: HeaderMap,
    ) -> Result<Result<u64, (u64, String)>, LatticeError> {
        check_key(key)?;
        self.js
            .publish(what, format!("$KV.{}.{key}", self.bucket), headers, value)
            .await
    }

    /// Sets `key` to `value` unconditionally; returns the new revision.
    pub async fn put(&self, key: &str, value: Bytes) -> Result<u64, LatticeError> {
        self.write("put", key, value, HeaderMap::new())
            .await?
            .map_err(|(_, e)| self.js.failed("put", e))
    }

    /// Sets `key` to `value` only if its latest revision is `expected` (0: never written).
    pub async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: u64,
    ) -> Result<Cas, LatticeError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence",
            expected.to_string().as_str(),
        );
        match self.write("compare-and-set", key, value, headers).await? {
            Ok(revision) => Ok(Ok(revision)),
            Err((WRONG_LAST_SEQUENCE, _)) => Ok(Err(CasFailed)),
            Err((_, e)) => Err(self.js.failed("compare-and-set", e)),
        }
    }

    /// Deletes `key` (a delete marker, so watchers see it).
    pub async fn delete(&self, key: &str) -> Result<(), LatticeError> {
        let mut headers = HeaderMap::new();
        headers.insert("KV-Operation", "DEL");
        self.write("delete", key, Bytes::new(), headers)
            .await?
            .map(|_| ())
            .map_err(|(_, e)| self.js.failed("delete", e))
    }

    /// Keys under `prefix` (all when empty; end it with `.`) whose latest entry is a value,
    /// sorted.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>, LatticeError> {
        Ok(self
            .values(prefix)
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// The keys under `prefix` whose latest entry is a value, with their values, sorted by key.
    pub async fn values(&self, prefix: &str) -> Result<Vec<(String, Bytes)>, LatticeError> {
        let filter = if prefix.is_empty() {
            format!("$KV.{}.>", self.bucket)
        } else {
            format!("$KV.{}.{prefix}>", self.bucket)
        };
        let request = serde_json::json!({ "subjects_filter": filter });
        let info = self
            .js
            .api(
                "list keys",
                format!("$JS.API.STREAM.INFO.KV_{}", self.bucket),
                &request,
            )
            .await?;
        if let Some((_, description)) = api_error(&info) {
            return Err(self.js.failed("list keys", description));
        }
        let strip = format!("$KV.{}.", self.bucket);
        let mut subjects: Vec<String> = info
            .pointer("/state/subjects")
            .and_then(|s| s.as_object())
            .map(|s| {
                s.keys()
                    .filter_map(|k| k.strip_prefix(&strip))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        subjects.sort();
        let mut values = Vec::with_capacity(subjects.len());
        for key in subjects {
            if let Some(value) = self.entry(&key).await?.and_then(|e| e.value) {
                values.push((key, value));
            }
        }
        Ok(values)
    }

    /// Every write to the bucket from now on, as a core NATS subscription (the key is the
    /// message's subject after `$KV.<bucket>.`).
    pub async fn watch(&self) -> Result<async_nats::Subscriber, LatticeError> {
        self.js
            .client
            .subscribe(format!("$KV.{}.>", self.bucket))
            .await
            .map_err(|e| self.js.failed("watch", e))
    }
}

/// `url` with its credentials hidden, for messages and logs that anyone may read:
/// `redis://user:secret@host:6379/0` → `redis://user:***@host:6379/0`, `nats://token@host` →
/// `nats://***@host`. A URL without credentials comes back unchanged.
pub fn redact_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let hidden = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_string(),
    };
    format!("{scheme}://{hidden}@{host}{tail}")
}

#[cfg(test)]
mod redact_tests {
    use super::redact_credentials;

    #[test]
    fn passwords_and_tokens_are_hidden_and_the_rest_kept() {
        assert_eq!(
            redact_credentials("redis://:s3cret@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_credentials("redis://app:s3cret@db:6379"),
            "redis://app:***@db:6379"
        );
        assert_eq!(
            redact_credentials("nats://tok3n@h:4222"),
            "nats://***@h:4222"
        );
        assert_eq!(
            redact_credentials("nats://127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
        assert_eq!(
            redact_credentials("redis://h:1/?password=x@y"),
            "redis://h:1/?password=x@y"
        );
        assert_eq!(redact_credentials("not a url"), "not a url");
    }
}
