//! The lattice's NATS transport against a real `nats-server -js` on a free loopback port:
//! compare-and-set, the leader lease (a stale leader's writes fail), chunked blobs.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weft_lattice::{
    now_ms, JetStream, LatticeBlobs, Lease, LeaseState, Placements, PLACEMENTS_KEY,
};

struct Nats {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nats {
    fn start() -> Nats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start nats-server (run scripts/setup.sh)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nats {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn compare_and_set_accepts_only_the_revision_read() {
    let nats = Nats::start();
    let js = JetStream::connect(&nats.url(), &Default::default())
        .await
        .unwrap();
    let kv = js.kv("cas").await.unwrap();
    assert!(kv.entry("k").await.unwrap().is_none());
    let first = kv.update("k", "a".into(), 0).await.unwrap().unwrap();
    // Creating again fails: the key exists.
    assert!(kv.update("k", "b".into(), 0).await.unwrap().is_err());
    let second = kv.update("k", "b".into(), first).await.unwrap().unwrap();
    assert!(kv.update("k", "c".into(), first).await.unwrap().is_err());
    assert_eq!(kv.get("k").await.unwrap().unwrap(), "b");
    assert_eq!(kv.entry("k").await.unwrap().unwrap().revision, second);
    kv.delete("k").await.unwrap();
    assert!(kv.get("k").await.unwrap().is_none());
    assert!(kv.keys("").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_stale_leader_cannot_renew_its_lease_or_overwrite_the_placements() {
    let nats = Nats::start();
    let js = JetStream::connect(&nats.url(), &Default::default())
        .await
        .unwrap();
    let kv = js.kv("lease").await.unwrap();
    let ttl = Duration::from_secs(5);
    let mut a = Lease::new(kv.clone(), "a", ttl);
    let mut b = Lease::new(kv.clone(), "b", ttl);
    let t0 = now_ms();
    assert_eq!(a.round(t0).await.unwrap(), LeaseState::Leader { term: 1 });
    assert_eq!(
        b.round(t0).await.unwrap(),
        LeaseState::Follower {
            holder: Some("a".into())
        }
    );
    // Leader a writes the placements for its term and remembers the revision.
    let doc = |term: u64, leader: &str| {
        serde_json::to_vec(&Placements {
            term,
            leader: leader.into(),
            apps: Default::default(),
        })
        .unwrap()
    };
    let a_revision = kv
        .update(PLACEMENTS_KEY, doc(1, "a").into(), 0)
        .await
        .unwrap()
        .unwrap();

    // a stalls past the TTL; b takes the lease with the next term and fences the placements.
    let later = t0 + ttl.as_millis() as u64 + 1;
    assert_eq!(
        b.round(later).await.unwrap(),
        LeaseState::Leader { term: 2 }
    );
    kv.update(PLACEMENTS_KEY, doc(2, "b").into(), a_revision)
        .await
        .unwrap()
        .unwrap();

    // a wakes up: its write with the revision it knew fails, and it finds itself a follower.
    assert!(kv
        .update(PLACEMENTS_KEY, doc(1, "a").into(), a_revision)
        .await
        .unwrap()
        .is_err());
    assert_eq!(
        a.round(later).await.unwrap(),
        LeaseState::Follower {
            holder: Some("b".into())
        }
    );
    let stored: Placements =
        serde_json::from_slice(&kv.get(PLACEMENTS_KEY).await.unwrap().unwrap()).unwrap();
    assert_eq!((stored.term, stored.leader.as_str()), (2, "b"));

    // A clean release hands over at once, without waiting for the TTL.
    b.release().await.unwrap();
    assert_eq!(
        a.round(later).await.unwrap(),
        LeaseState::Leader { term: 3 }
    );
}

#[tokio::test]
async fn a_blob_larger_than_one_message_round_trips_and_is_checked() {
    let nats = Nats::start();
    let js = JetStream::connect(&nats.url(), &Default::default())
        .await
        .unwrap();
    let blobs = LatticeBlobs::open(&js, "t").await.unwrap();
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    assert!(!blobs.contains(&digest).await.unwrap());
    assert!(blobs.get(&digest).await.unwrap().is_none());
    blobs.put(&digest, &bytes).await.unwrap();
    assert!(blobs.contains(&digest).await.unwrap());
    assert_eq!(&blobs.get(&digest).await.unwrap().unwrap()[..], &bytes[..]);
    let wrong = "0".repeat(64);
    assert!(blobs.put(&wrong, &bytes).await.is_err());
    assert!(blobs.get("not-a-digest").await.is_err());
}
