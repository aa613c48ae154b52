//! Component bytes shared by every host of a lattice: a JetStream stream holding each blob in
//! chunks under its sha256, so a host placed an app it has never seen fetches the component
//! from NATS, not from the host it was deployed through (which may be gone).

use async_nats::header::HeaderMap;
use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};

use crate::jetstream::{JetStream, LatticeError};

/// Chunks stay well under NATS's default 1 MiB message limit.
const CHUNK: usize = 256 * 1024;

/// The lattice's blob stream.
#[derive(Clone)]
pub struct LatticeBlobs {
    js: JetStream,
    stream: String,
    prefix: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct BlobMeta {
    size: u64,
    chunks: u32,
}

impl LatticeBlobs {
    /// Opens (creating on first use) the blob stream of `lattice`.
    pub async fn open(js: &JetStream, lattice: &str) -> Result<Self, LatticeError> {
        let stream = format!("WEFT_BLOBS_{lattice}");
        let prefix = format!("$WEFTB.{lattice}");
        js.ensure_stream(serde_json::json!({
            "name": stream,
            "subjects": [format!("{prefix}.>")],
            "max_msgs_per_subject": 1,
            "allow_direct": true,
            "storage": "file",
            "num_replicas": 1,
        }))
        .await?;
        Ok(LatticeBlobs {
            js: js.clone(),
            stream,
            prefix,
        })
    }

    fn check(digest: &str) -> Result<(), LatticeError> {
        if digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(())
        } else {
            Err(LatticeError::Blob {
                digest: digest.to_string(),
                reason: "not a sha256 digest".into(),
            })
        }
    }

    /// Whether the blob is stored completely (its meta record is written last).
    pub async fn contains(&self, digest: &str) -> Result<bool, LatticeError> {
        Self::check(digest)?;
        Ok(self
            .js
            .last_message(&self.stream, &format!("{}.{digest}.meta", self.prefix))
            .await?
            .is_some())
    }

    /// Stores `bytes` under `digest` (their sha256) unless it is there already.
    pub async fn put(&self, digest: &str, bytes: &[u8]) -> Result<(), LatticeError> {
        Self::check(digest)?;
        if hex::encode(Sha256::digest(bytes)) != digest {
            return Err(LatticeError::Blob {
                digest: digest.to_string(),
                reason: "the bytes do not match the digest".into(),
            });
        }
        if self.contains(digest).await? {
            return Ok(());
        }
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            self.js
                .publish(
                    "store blob",
                    format!("{}.{digest}.c{i}", self.prefix),
                    HeaderMap::new(),
                    Bytes::copy_from_slice(chunk),
                )
                .await?
                .map_err(|(_, e)| self.js.failed("store blob", e))?;
        }
        let meta = BlobMeta {
            size: bytes.len() as u64,
            chunks: chunks.len() as u32,
        };
        let meta = serde_json::to_vec(&meta).map_err(|e| self.js.failed("store blob", e))?;
        self.js
            .publish(
                "store blob",
                format!("{}.{digest}.meta", self.prefix),
                HeaderMap::new(),
                meta.into(),
            )
            .await?
            .map_err(|(_, e)| self.js.failed("store blob", e))?;
        Ok(())
    }

    /// The blob's bytes, checked against its digest; None when the lattice does not hold it.
    pub async fn get(&self, digest: &str) -> Result<Option<Bytes>, LatticeError> {
        Self::check(digest)?;
        let Some((_, _, meta)) = self
            .js
            .last_message(&self.stream, &format!("{}.{digest}.meta", self.prefix))
            .await?
        else {
            return Ok(None);
        };
        let meta: BlobMeta = serde_json::from_slice(&meta).map_err(|e| LatticeError::Blob {
            digest: digest.to_string(),
            reason: format!("unreadable meta record: {e}"),
        })?;
        let mut bytes = BytesMut::with_capacity(meta.size as usize);
        for i in 0..meta.chunks {
            let (_, _, chunk) = self
                .js
                .last_message(&self.stream, &format!("{}.{digest}.c{i}", self.prefix))
                .await?
                .ok_or_else(|| LatticeError::Blob {
                    digest: digest.to_string(),
                    reason: format!("chunk {i} is missing"),
                })?;
            bytes.extend_from_slice(&chunk);
        }
        if hex::encode(Sha256::digest(&bytes)) != digest {
            return Err(LatticeError::Blob {
                digest: digest.to_string(),
                reason: "the stored bytes do not match the digest".into(),
            });
        }
        Ok(Some(bytes.freeze()))
    }
}
