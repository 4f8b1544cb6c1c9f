//! `cargo bench -p sealer-tests --bench state_backends`: what an apply costs the state store, on SQLite
//! and on PostgreSQL side by side in one run: N resource writes, each its own transaction with a serial
//! bump (as the executor records every finished resource), then one full load (as `plan` reads it).
//! PostgreSQL is the test server of `tests/testbed/postgres.sh` on loopback. `SEALER_BENCH_RESOURCES`
//! sets N (default 5,000: about a 500-host cluster).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use sealer_engine::{Address, Kind, ResourceStatus, StoredResource, Value};
use sealer_state::StateLocation;

fn resource(i: usize) -> StoredResource {
    let ip = format!("10.{}.{}.{}", 100 + i / 62_500, (i / 250) % 250, i % 250 + 1);
    StoredResource {
        address: Address::new(Kind::Hostname, &ip),
        host: Some(ip.parse().unwrap()),
        status: ResourceStatus::Ready,
        attributes: [
            ("name".to_string(), Value::text(format!("node-{i}"))),
            ("original".to_string(), Value::text(format!("host-{i}"))),
        ]
        .into(),
        depends_on: vec![Address::new(Kind::Host, &ip)],
    }
}

fn run(location: &StateLocation, n: usize) -> (Duration, Duration) {
    let mut store = location.open().unwrap();
    let lock = store.lock("bench", "bench@here", 1, "bench").unwrap();
    let started = Instant::now();
    for i in 0..n {
        let r = resource(i);
        store.put_resource(&lock, &r.address, Some(&r)).unwrap();
    }
    let writes = started.elapsed();
    store.unlock(&lock).unwrap();
    let reader = location.open_read_only().unwrap().unwrap();
    let started = Instant::now();
    let state = reader.load("bench").unwrap().unwrap();
    let load = started.elapsed();
    assert_eq!(state.resources.len(), n);
    (writes, load)
}

fn main() {
    let n: usize = std::env::var("SEALER_BENCH_RESOURCES").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000);
    let dir = tempfile::tempdir().unwrap();
    let sqlite = StateLocation::Sqlite(dir.path().join("state.db"));
    let db = sealer_tests::postgres_database();
    println!("{n} resource writes (one transaction each), then one load");
    println!("{:<12} {:>10} {:>12} {:>10}", "backend", "writes s", "writes/s", "load ms");
    let mut rows = vec![("sqlite", run(&sqlite, n))];
    if let Some(db) = &db {
        rows.push(("postgresql", run(&StateLocation::Postgres(db.url.clone()), n)));
    }
    for (name, (writes, load)) in rows {
        println!(
            "{name:<12} {:>10.2} {:>12.0} {:>10.1}",
            writes.as_secs_f64(),
            n as f64 / writes.as_secs_f64(),
            load.as_secs_f64() * 1000.0
        );
    }
}
