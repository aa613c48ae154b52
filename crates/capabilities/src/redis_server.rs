//! A Redis server as backends reach it (key-value, messaging): its URL with credentials hidden
//! for messages, one connection made on first use and remade after a loss, and pub/sub.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;
use weft_manifest::Grant;

use crate::catalog::BackendError;
use crate::settings::{typed, ServerConfig};

/// Where Redis is when the manifest does not say.
const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
/// A call waits this long for Redis before failing, so a stalled server cannot hang a request.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// One Redis server.
pub(crate) struct RedisServer {
    pub(crate) client: redis::Client,
    /// The server, credentials hidden: errors reach guests, their clients and the log.
    pub(crate) url: String,
    connection: OnceCell<ConnectionManager>,
}

impl RedisServer {
    /// The server a grant names (its `url`, else the local default), and the identity under which
    /// grants naming the same server share it.
    pub(crate) fn of(grant: &Grant) -> Result<(String, RedisServer), BackendError> {
        let url = typed::<ServerConfig>(&grant.settings)?.url_or(DEFAULT_URL);
        let shown = weft_lattice::redact_credentials(&url);
        let client = redis::Client::open(url.as_str()).map_err(|e| {
            BackendError(format!(
                "`{shown}` is not a Redis URL ({e}); use redis://HOST:PORT"
            ))
        })?;
        let server = RedisServer {
            client,
            url: shown,
            connection: OnceCell::new(),
        };
        Ok((format!("redis:{url}"), server))
    }

    /// The shared connection, made on first use.
    pub(crate) async fn connection(&self) -> Result<ConnectionManager, String> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(2);
        let connection = self
            .connection
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .map_err(|e| format!("Redis at {} is unreachable: {e}", self.url))?;
        Ok(connection.clone())
    }

    /// A failed call, for the guest and the log.
    pub(crate) fn failed(&self, e: redis::RedisError) -> String {
        format!("Redis at {}: {e}", self.url)
    }
}

/// A pub/sub connection subscribed to `channels` and to the glob `patterns`.
pub(crate) async fn pubsub(
    client: &redis::Client,
    channels: &[String],
    patterns: &[String],
) -> Result<redis::aio::PubSubStream, redis::RedisError> {
    let mut pubsub = client.get_async_pubsub().await?;
    for channel in channels {
        pubsub.subscribe(channel).await?;
    }
    for pattern in patterns {
        pubsub.psubscribe(pattern).await?;
    }
    Ok(pubsub.into_on_message())
}

/// Escapes Redis glob characters so `text` matches only itself in a pattern.
pub(crate) fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
