//! NATS JetStream object stores, in the layout of NATS's own object store (ADR-20) that the
//! `nats object` CLI and wasmCloud's blobstore-nats provider read and write: stream
//! `OBJ_<bucket>`, an object's chunks on `$O.<bucket>.C.<nuid>`, its latest meta record on
//! `$O.<bucket>.M.<name in base64url>`. Written through JetStream's request/reply API, so it
//! works with every JetStream server, Debian's 2.9 included.

use async_nats::header::HeaderMap;
use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::jetstream::{api_error, JetStream, LatticeError};

/// Chunks as NATS's clients cut them.
const CHUNK: usize = 128 * 1024;
/// JetStream's "stream not found".
const STREAM_NOT_FOUND: u64 = 10059;

/// One object store: a bucket of named objects.
#[derive(Clone)]
pub struct ObjectStore {
    js: JetStream,
    bucket: String,
    stream: String,
}

/// An object's meta record, as NATS's clients write it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectInfo {
    pub name: String,
    pub bucket: String,
    pub nuid: String,
    pub size: u64,
    /// RFC 3339.
    pub mtime: String,
    pub chunks: u32,
    /// `SHA-256=<base64url>` of the whole object.
    #[serde(default)]
    pub digest: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl JetStream {
    /// The object store `bucket`, its stream created when `create` and it is missing; None
    /// when it is missing and not to be created.
    pub async fn object_store(
        &self,
        bucket: &str,
        create: bool,
    ) -> Result<Option<ObjectStore>, LatticeError> {
        if !crate::is_valid_token(bucket) {
            return Err(self.failed(
                "object store",
                format!("`{bucket}` is not an object store name; use letters, digits, `-` and `_`"),
            ));
        }
        let store = ObjectStore {
            js: self.clone(),
            bucket: bucket.to_string(),
            stream: format!("OBJ_{bucket}"),
        };
        if create {
            self.ensure_stream(serde_json::json!({
                "name": store.stream,
                "subjects": [format!("$O.{bucket}.C.>"), format!("$O.{bucket}.M.>")],
                "storage": "file",
                "num_replicas": 1,
                "discard": "new",
                "allow_rollup_hdrs": true,
                "allow_direct": true,
            }))
            .await?;
            return Ok(Some(store));
        }
        Ok(store.created().await?.map(|_| store))
    }

    /// Deletes the object store `bucket` and everything in it.
    pub async fn delete_object_store(&self, bucket: &str) -> Result<(), LatticeError> {
        let reply = self
            .api(
                "delete object store",
                format!("$JS.API.STREAM.DELETE.OBJ_{bucket}"),
                &serde_json::json!({}),
            )
            .await?;
        match api_error(&reply) {
            None | Some((STREAM_NOT_FOUND, _)) => Ok(()),
            Some((_, description)) => Err(self.failed("delete object store", description)),
        }
    }
}

impl ObjectStore {
    fn meta_subject(&self, name: &str) -> String {
        format!("$O.{}.M.{}", self.bucket, URL_SAFE.encode(name))
    }

    fn chunk_subject(&self, nuid: &str) -> String {
        format!("$O.{}.C.{nuid}", self.bucket)
    }

    /// When the store was created (RFC 3339); None when it does not exist.
    pub async fn created(&self) -> Result<Option<String>, LatticeError> {
        let info = self
            .js
            .api(
                "object store info",
                format!("$JS.API.STREAM.INFO.{}", self.stream),
                &serde_json::json!({}),
            )
            .await?;
        match api_error(&info) {
            None => Ok(Some(
                info.get("created")
                    .and_then(|c| c.as_str())
                    .unwrap_or_default()
                    .to_string(),
            )),
            Some((STREAM_NOT_FOUND, _)) => Ok(None),
            Some((_, description)) => Err(self.js.failed("object store info", description)),
        }
    }

    /// The object's meta record; None when there is no such object (or it was deleted).
    pub async fn info(&self, name: &str) -> Result<Option<ObjectInfo>, LatticeError> {
        let Some((_, _, meta)) = self
            .js
            .last_message(&self.stream, &self.meta_subject(name))
            .await?
        else {
            return Ok(None);
        };
        let info: ObjectInfo = serde_json::from_slice(&meta).map_err(|e| {
            self.js
                .failed("object info", format!("unreadable meta record: {e}"))
        })?;
        Ok((!info.deleted).then_some(info))
    }

    /// Stores `data` as `name`, replacing what was there: readers see the old object until the
    /// new meta record is written, then the new one; the old chunks are purged after.
    pub async fn put(&self, name: &str, data: &[u8]) -> Result<ObjectInfo, LatticeError> {
        let previous = self.info(name).await?;
        let nuid = format!("{:032x}", rand::random::<u128>());
        let chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
        for chunk in &chunks {
            self.js
                .publish(
                    "store object",
                    self.chunk_subject(&nuid),
                    HeaderMap::new(),
                    Bytes::copy_from_slice(chunk),
                )
                .await?
                .map_err(|(_, e)| self.js.failed("store object", e))?;
        }
        let info = ObjectInfo {
            name: name.to_string(),
            bucket: self.bucket.clone(),
            nuid,
            size: data.len() as u64,
            mtime: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            chunks: chunks.len() as u32,
            digest: format!("SHA-256={}", URL_SAFE.encode(Sha256::digest(data))),
            deleted: false,
        };
        self.write_meta(&info).await?;
        if let Some(previous) = previous {
            self.purge_chunks(&previous.nuid).await?;
        }
        Ok(info)
    }

    async fn write_meta(&self, info: &ObjectInfo) -> Result<(), LatticeError> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Rollup", "sub");
        let meta = serde_json::to_vec(info).map_err(|e| self.js.failed("store object", e))?;
        self.js
            .publish(
                "store object",
                self.meta_subject(&info.name),
                headers,
                meta.into(),
            )
            .await?
            .map_err(|(_, e)| self.js.failed("store object", e))?;
        Ok(())
    }

    async fn purge_chunks(&self, nuid: &str) -> Result<(), LatticeError> {
        let reply = self
            .js
            .api(
                "purge object chunks",
                format!("$JS.API.STREAM.PURGE.{}", self.stream),
                &serde_json::json!({ "filter": self.chunk_subject(nuid) }),
            )
            .await?;
        match api_error(&reply) {
            None => Ok(()),
            Some((_, description)) => Err(self.js.failed("purge object chunks", description)),
        }
    }

    /// The object's bytes, checked against its digest; None when there is no such object.
    pub async fn get(&self, name: &str) -> Result<Option<Bytes>, LatticeError> {
        let Some(info) = self.info(name).await? else {
            return Ok(None);
        };
        let subject = self.chunk_subject(&info.nuid);
        let mut bytes = BytesMut::with_capacity(info.size as usize);
        let mut next = 0;
        for i in 0..info.chunks {
            let (sequence, chunk) = self
                .js
                .next_message(&self.stream, &subject, next)
                .await?
                .ok_or_else(|| {
                    self.js
                        .failed("read object", format!("`{name}`: chunk {i} is missing"))
                })?;
            bytes.extend_from_slice(&chunk);
            next = sequence + 1;
        }
        let digest = format!("SHA-256={}", URL_SAFE.encode(Sha256::digest(&bytes)));
        if !info.digest.is_empty() && info.digest != digest {
            return Err(self.js.failed(
                "read object",
                format!("`{name}`: the stored bytes do not match its digest"),
            ));
        }
        Ok(Some(bytes.freeze()))
    }

    /// Deletes the object (a meta record marked deleted, as NATS's clients write it); no error
    /// when there is none.
    pub async fn delete(&self, name: &str) -> Result<(), LatticeError> {
        let Some(mut info) = self.info(name).await? else {
            return Ok(());
        };
        let nuid = info.nuid.clone();
        info.deleted = true;
        info.size = 0;
        info.chunks = 0;
        info.digest = String::new();
        self.write_meta(&info).await?;
        self.purge_chunks(&nuid).await
    }

    /// The objects in the store, sorted by name.
    pub async fn list(&self) -> Result<Vec<ObjectInfo>, LatticeError> {
        let filter = format!("$O.{}.M.>", self.bucket);
        let info = self
            .js
            .api(
                "list objects",
                format!("$JS.API.STREAM.INFO.{}", self.stream),
                &serde_json::json!({ "subjects_filter": filter }),
            )
            .await?;
        if let Some((_, description)) = api_error(&info) {
            return Err(self.js.failed("list objects", description));
        }
        let prefix = format!("$O.{}.M.", self.bucket);
        let names: Vec<String> = info
            .pointer("/state/subjects")
            .and_then(|s| s.as_object())
            .map(|s| {
                s.keys()
                    .filter_map(|k| k.strip_prefix(&prefix))
                    .filter_map(|encoded| URL_SAFE.decode(encoded).ok())
                    .filter_map(|name| String::from_utf8(name).ok())
                    .collect()
            })
            .unwrap_or_default();
        let mut objects = Vec::with_capacity(names.len());
        for name in names {
            if let Some(info) = self.info(&name).await? {
                objects.push(info);
            }
        }
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(objects)
    }
}
