//! What hosts of a lattice say to each other: subjects, heartbeats with inventory, the desired
//! apps, the controller's placements and the framing of HTTP requests forwarded between hosts.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use weft_api::InventoryApp;

/// How often a host says it is alive.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// A host silent for this many heartbeats is gone.
pub const MISSED_HEARTBEATS: u32 = 3;
/// The key of the controller's placement document in the state bucket.
pub const PLACEMENTS_KEY: &str = "placements";
/// The key of the leader lease in the state bucket.
pub const LEASE_KEY: &str = "leader";
/// The key prefix of desired apps in the state bucket (`app.<name>`).
pub const APP_PREFIX: &str = "app.";
/// The key prefix of every stored version of an app (`version.<name>.<hex of version>`).
pub const VERSION_PREFIX: &str = "version.";
/// The key prefix of each schedule's last claimed tick (`tick.<app>.<schedule>.<component>`).
pub const TICK_PREFIX: &str = "tick.";

/// The NATS subjects and buckets of one lattice.
#[derive(Debug, Clone)]
pub struct Subjects {
    lattice: String,
}

impl Subjects {
    /// The prefix of the inboxes a host's requests get their replies on.
    pub fn inbox_prefix(&self) -> String {
        format!("weft.{}.inbox", self.lattice)
    }

    /// The names of `lattice` (a valid token, see [`crate::is_valid_token`]).
    pub fn new(lattice: &str) -> Self {
        Subjects {
            lattice: lattice.to_string(),
        }
    }

    /// Where hosts publish their heartbeats.
    pub fn heartbeat(&self) -> String {
        format!("weft.{}.evt.heartbeat", self.lattice)
    }

    /// Where `host` answers control request `op` (`inventory`: its heartbeat, fresh).
    pub fn control(&self, host: &str, op: &str) -> String {
        format!("weft.{}.ctl.{host}.{op}", self.lattice)
    }

    /// Every control request to `host`.
    pub fn controls_of(&self, host: &str) -> String {
        format!("weft.{}.ctl.{host}.>", self.lattice)
    }

    /// Where the controller publishes what it did (`kind`: placed, host_lost, leader, …).
    pub fn event(&self, kind: &str) -> String {
        format!("weft.{}.evt.{kind}", self.lattice)
    }

    /// Where `host` takes HTTP requests for `app` forwarded by other hosts.
    pub fn http(&self, app: &str, host: &str) -> String {
        format!("weft.{}.rpc.http.{app}.{host}", self.lattice)
    }

    /// Where `host` takes calls to the exports of `component` of `app` from other hosts.
    pub fn call(&self, app: &str, component: &str, host: &str) -> String {
        format!("weft.{}.rpc.call.{app}.{component}.{host}", self.lattice)
    }

    /// Every call subject of `app` on `host`.
    pub fn calls_of(&self, app: &str, host: &str) -> String {
        format!("weft.{}.rpc.call.{app}.*.{host}", self.lattice)
    }

    /// The JetStream KV bucket of the lattice's state.
    pub fn state_bucket(&self) -> String {
        format!("weft-{}", self.lattice)
    }
}

/// The key of one stored version of an app (versions may hold dots, so they are hex-encoded).
pub fn version_key(app: &str, version: &str) -> String {
    format!("{VERSION_PREFIX}{app}.{}", hex::encode(version))
}

/// A host's periodic "I am alive, and this is what I run".
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub host: String,
    pub labels: BTreeMap<String, String>,
    pub version: String,
    pub started_at_ms: u64,
    pub sent_at_ms: u64,
    /// Where this host takes HTTP requests, when it was given one address for all routes.
    pub http: Option<String>,
    /// The control API's URL, when this host has one.
    pub control: Option<String>,
    /// Whether this host holds the leader lease.
    pub leader: bool,
    pub apps: Vec<InventoryApp>,
}

/// A desired app, as deployed to the lattice (`app.<name>` and `version.<name>.<v>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    pub name: String,
    pub version: String,
    pub manifest: String,
    pub origin: String,
    /// Image reference → sha256 of the component in the lattice's blob store.
    pub images: BTreeMap<String, String>,
    pub deployed_at: u64,
    /// The app as the deploying host validated and locked it; absent in records written before
    /// weft stored it, which readers parse from `manifest` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<weft_manifest::App>,
}

/// Where an app stands in the lattice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatticePhase {
    /// Placed; not every placed host reports it running yet.
    Deploying,
    /// Every placed host runs the desired version.
    Deployed,
    /// A host could not run it; the reason says which and why.
    Failed,
    /// No host matches a placement requirement; the reason names it.
    Waiting,
}

impl std::fmt::Display for LatticePhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LatticePhase::Deploying => "deploying",
            LatticePhase::Deployed => "deployed",
            LatticePhase::Failed => "failed",
            LatticePhase::Waiting => "waiting",
        })
    }
}

/// Where the controller put one app, and what is true of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppPlacement {
    pub version: String,
    /// Host → its share of the app's instances.
    pub hosts: BTreeMap<String, u32>,
    pub phase: LatticePhase,
    pub reason: Option<String>,
    /// What happened to the app lately (placements, moves, host losses), newest last.
    #[serde(default)]
    pub events: Vec<String>,
}

/// The controller's document: every app's placement, written only by the leader of `term`
/// with compare-and-set, so a leader that lost its lease cannot overwrite it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placements {
    pub term: u64,
    pub leader: String,
    pub apps: BTreeMap<String, AppPlacement>,
}

/// The head of an HTTP request forwarded to another host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestHead {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// The head of the response to a forwarded request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// The head of a call to a component's export on another host; the body is the arguments.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallHead {
    /// The interface's full name, `@version` included; empty for a top-level function.
    pub interface: String,
    pub function: String,
    /// Arguments and results as JSON arrays of WAVE texts (`weft call`) instead of the wire
    /// encoding (component links).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wave: bool,
}

impl CallHead {
    /// The head of a call to `path`: `interface.function`, or a top-level function.
    pub fn of_path(path: &str, wave: bool) -> Self {
        let (interface, function) = match path.rsplit_once('.') {
            Some((interface, function)) if interface.contains('/') => (interface, function),
            _ => ("", path),
        };
        CallHead {
            interface: interface.to_string(),
            function: function.to_string(),
            wave,
        }
    }

    /// The path `of_path` was given.
    pub fn path(&self) -> String {
        if self.interface.is_empty() {
            self.function.clone()
        } else {
            format!("{}.{}", self.interface, self.function)
        }
    }
}

/// The head of a call's reply; the body is the results when `error` is None.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallReply {
    pub error: Option<String>,
}

/// A head and a body in one NATS message: the head's length (u32, big-endian), the head as
/// JSON, then the body.
pub fn frame<H: Serialize>(head: &H, body: &[u8]) -> Bytes {
    let head = serde_json::to_vec(head).unwrap_or_default();
    let mut out = BytesMut::with_capacity(4 + head.len() + body.len());
    out.put_u32(head.len() as u32);
    out.put_slice(&head);
    out.put_slice(body);
    out.freeze()
}

/// Why a message is not a frame made by [`frame`].
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("a message shorter than its frame header")]
    NoHeader,
    #[error("a frame whose head is cut short")]
    CutShort,
    #[error("an unreadable frame head: {0}")]
    Head(#[from] serde_json::Error),
}

/// Splits a message made by [`frame`].
pub fn unframe<H: for<'de> Deserialize<'de>>(message: &Bytes) -> Result<(H, Bytes), FrameError> {
    if message.len() < 4 {
        return Err(FrameError::NoHeader);
    }
    let len = u32::from_be_bytes([message[0], message[1], message[2], message[3]]) as usize;
    if message.len() < 4 + len {
        return Err(FrameError::CutShort);
    }
    let head = serde_json::from_slice(&message[4..4 + len])?;
    Ok((head, message.slice(4 + len..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_round_trips_and_a_short_one_is_refused() {
        let head = RequestHead {
            method: "POST".into(),
            uri: "/x?y=1".into(),
            headers: vec![("content-type".into(), b"text/plain".to_vec())],
        };
        let framed = frame(&head, b"body");
        let (back, body): (RequestHead, Bytes) = unframe(&framed).unwrap();
        assert_eq!(back.uri, "/x?y=1");
        assert_eq!(back.headers, head.headers);
        assert_eq!(&body[..], b"body");
        assert!(unframe::<RequestHead>(&framed.slice(..6)).is_err());
        assert!(unframe::<RequestHead>(&Bytes::from_static(b"ab")).is_err());
    }

    #[test]
    fn versions_with_dots_make_one_key_token() {
        assert_eq!(version_key("app", "v1.0"), "version.app.76312e30");
    }
}
