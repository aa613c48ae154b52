//! The statements the todo example runs, issued straight from Rust with no component, HTTP or
//! capability between: the baseline `bench/run.py sql` divides by. Prints `{"ops": N,
//! "seconds": S}`.
//!
//!     sql_native sqlite PATH write|read SECONDS
//!     sql_native postgres URL write|read SECONDS CONNECTIONS
//!
//! SQLite runs on one connection in one thread (its best case: no lock to share); PostgreSQL
//! runs CONNECTIONS clients at once, each on its own connection. Reads fetch row 1, which must
//! exist; writes insert rows.

use std::time::{Duration, Instant};

const WRITE: &str = "INSERT INTO todos (title) VALUES ($1) RETURNING id";
const READ: &str = "SELECT id, done, title FROM todos WHERE id = $1";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: sql_native sqlite PATH write|read SECONDS | \
                 sql_native postgres URL write|read SECONDS CONNECTIONS";
    let [backend, target, op, seconds, rest @ ..] = args.as_slice() else {
        panic!("{usage}");
    };
    let write = match op.as_str() {
        "write" => true,
        "read" => false,
        _ => panic!("{usage}"),
    };
    let duration = Duration::from_secs_f64(seconds.parse().expect(usage));
    let started = Instant::now();
    let ops = match backend.as_str() {
        "sqlite" => sqlite(target, write, duration),
        "postgres" => {
            let connections = rest.first().and_then(|c| c.parse().ok()).expect(usage);
            postgres(target, write, duration, connections)
        }
        _ => panic!("{usage}"),
    };
    let seconds = started.elapsed().as_secs_f64();
    let line = format!("{{\"ops\": {ops}, \"seconds\": {seconds:.3}}}");
    std::io::Write::write_all(&mut std::io::stdout(), format!("{line}\n").as_bytes()).unwrap();
}

fn sqlite(path: &str, write: bool, duration: Duration) -> u64 {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
        .unwrap();
    let deadline = Instant::now() + duration;
    let mut ops = 0;
    let mut statement = db.prepare(if write { WRITE } else { READ }).unwrap();
    while Instant::now() < deadline {
        let mut rows = if write {
            statement.query(["native item"]).unwrap()
        } else {
            statement.query([1]).unwrap()
        };
        assert!(rows.next().unwrap().is_some(), "no row");
        ops += 1;
    }
    ops
}

fn postgres(url: &str, write: bool, duration: Duration, connections: usize) -> u64 {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let deadline = Instant::now() + duration;
        let clients = (0..connections).map(|_| {
            let url = url.to_string();
            tokio::spawn(async move {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(connection);
                let statement = client
                    .prepare(if write { WRITE } else { READ })
                    .await
                    .unwrap();
                let mut ops = 0u64;
                while Instant::now() < deadline {
                    let rows = if write {
                        client.query(&statement, &[&"native item"]).await.unwrap()
                    } else {
                        client.query(&statement, &[&1i64]).await.unwrap()
                    };
                    assert_eq!(rows.len(), 1, "no row");
                    ops += 1;
                }
                ops
            })
        });
        let mut total = 0;
        for client in clients.collect::<Vec<_>>() {
            total += client.await.unwrap();
        }
        total
    })
}
