//! One state test suite, run against every backend: a SQLite file and a real PostgreSQL server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sealer_engine::{Address, HistoryEntry, Kind, ResourceStatus, State, StateError, StoredResource, Value};
use sealer_state::StateLocation;
use sealer_tests::{
    build_stub_image, ok, postgres_database, sealer, sealer_bin, seed_applied_state_with, stderr, stdout, PgDatabase,
    POSTGRES_PASSWORD,
};

/// A location of each backend, empty; the guards keep them alive.
struct Backends {
    sqlite: (tempfile::TempDir, StateLocation),
    postgres: Option<(PgDatabase, StateLocation)>,
}

impl Backends {
    fn new() -> Backends {
        let dir = tempfile::tempdir().unwrap();
        let file = StateLocation::Sqlite(dir.path().join("sub/state.db"));
        let postgres = postgres_database().map(|db| {
            let location = StateLocation::Postgres(db.url.clone());
            (db, location)
        });
        Backends { sqlite: (dir, file), postgres }
    }

    fn each(&self, test: impl Fn(&StateLocation)) {
        test(&self.sqlite.1);
        if let Some((_, location)) = &self.postgres {
            test(location);
        }
    }
}

fn resource(ip: &str, status: ResourceStatus) -> StoredResource {
    StoredResource {
        address: Address::new(Kind::Hostname, ip),
        host: Some(ip.parse().unwrap()),
        status,
        attributes: [("name".to_string(), Value::text("m0")), ("password".to_string(), Value::Sensitive)].into(),
        depends_on: vec![Address::new(Kind::Host, ip)],
    }
}

#[test]
fn reading_an_empty_location_creates_nothing() {
    Backends::new().each(|location| {
        assert!(location.open_read_only().unwrap().is_none(), "{location}");
        assert!(location.open_read_only().unwrap().is_none(), "{location}: a read created the state");
        let store = location.open().unwrap();
        assert!(store.clusters().unwrap().is_empty());
        assert!(location.open_read_only().unwrap().is_some(), "{location}");
    });
}

/// A promoted master's record moves from `kubeadm-join` to `kubeadm-init` in one write: one serial, the
/// old address gone and the new one there, on both backends; without the lock, neither changes.
#[test]
fn a_moved_resource_is_one_write() {
    Backends::new().each(|location| {
        let mut store = location.open().unwrap();
        let lock = store.lock("c", "me@here", 1, "sealer apply").unwrap();
        let mut joined = resource("10.0.0.3", ResourceStatus::Ready);
        joined.address = Address::new(Kind::KubeadmJoin, "10.0.0.3");
        assert_eq!(store.put_resource(&lock, &joined.address, Some(&joined)).unwrap(), 1);
        let mut init = joined.clone();
        init.address = Address::new(Kind::KubeadmInit, "10.0.0.3");
        let mut stranger = lock.clone();
        stranger.id = "not-the-lock".into();
        assert!(store.move_resource(&stranger, &joined.address, &init.address, &init).is_err(), "{location}");
        assert_eq!(store.load("c").unwrap().unwrap().resources.keys().collect::<Vec<_>>(), [&joined.address]);
        assert_eq!(store.move_resource(&lock, &joined.address, &init.address, &init).unwrap(), 2, "{location}");
        let state = store.load("c").unwrap().unwrap();
        assert_eq!(state.resources.keys().collect::<Vec<_>>(), [&init.address], "{location}");
        assert_eq!(state.resources[&init.address], init, "{location}");
        store.unlock(&lock).unwrap();
    });
}

#[test]
fn every_write_bumps_the_serial_keeps_the_lineage_and_round_trips_exactly() {
    Backends::new().each(|location| {
        let mut store = location.open().unwrap();
        let lock = store.lock("c", "me@here", 1, "sealer apply").unwrap();
        let ready = resource("10.0.0.2", ResourceStatus::Ready);
        let tainted = resource("10.0.0.3", ResourceStatus::Tainted);
        assert_eq!(store.put_resource(&lock, &ready.address, Some(&ready)).unwrap(), 1);
        assert_eq!(store.put_resource(&lock, &tainted.address, Some(&tainted)).unwrap(), 2);
        let first = store.load("c").unwrap().unwrap();
        assert_eq!(first.resources[&ready.address], ready, "{location}");
        assert_eq!(first.resources[&tainted.address], tainted, "{location}");
        assert_eq!(first.serial, 2);
        assert_eq!(store.put_resource(&lock, &ready.address, None).unwrap(), 3);
        store.record_history(&lock, "1 created, 1 deleted").unwrap();
        store.unlock(&lock).unwrap();
        let reader = location.open_read_only().unwrap().unwrap();
        let second = reader.load("c").unwrap().unwrap();
        assert_eq!(second.lineage, first.lineage, "{location}");
        assert_eq!(second.resources.keys().collect::<Vec<_>>(), [&tainted.address]);
        assert_eq!(reader.clusters().unwrap(), ["c"]);
        assert!(reader.load("other").unwrap().is_none());
        let history = reader.history("c").unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!((history[0].serial, history[0].who.as_str()), (3, "me@here"));
    });
}

#[test]
fn a_second_lock_is_refused_with_its_holder_and_force_unlock_frees_it() {
    Backends::new().each(|location| {
        let mut alice = location.open().unwrap();
        let mut bob = location.open().unwrap();
        let lock = alice.lock("c", "alice@ws1", 42, "sealer apply -f Clusterfile").unwrap();
        let refused = bob.lock("c", "bob@ws2", 7, "sealer apply").unwrap_err();
        let message = refused.to_string();
        assert!(
            message.contains("alice@ws1") && message.contains("pid 42") && message.contains(&lock.id),
            "{location}: {message}"
        );
        // Another cluster in the same store is independent.
        let other = bob.lock("other", "bob@ws2", 7, "sealer apply").unwrap();
        bob.unlock(&other).unwrap();
        // A lock that is not the current one cannot write, nor can a stranger release it.
        let stranger = sealer_engine::LockInfo { id: "not-a-lock".into(), ..lock.clone() };
        let r = resource("10.0.0.4", ResourceStatus::Ready);
        assert!(matches!(bob.put_resource(&stranger, &r.address, Some(&r)), Err(StateError::NoSuchLock(_))));
        assert_eq!(bob.force_unlock(&lock.id).unwrap().who, "alice@ws1", "{location}");
        assert!(matches!(bob.force_unlock(&lock.id), Err(StateError::NoSuchLock(_))));
        let taken = bob.lock("c", "bob@ws2", 7, "sealer apply").unwrap();
        // The old holder cannot write any more (on PostgreSQL its session was ended).
        assert!(alice.put_resource(&lock, &r.address, Some(&r)).is_err(), "{location}");
        bob.put_resource(&taken, &r.address, Some(&r)).unwrap();
        bob.unlock(&taken).unwrap();
    });
}

/// A holder that vanished without unlocking: SQLite replaces a lock of a process of this machine (the same
/// `user@host`) that is no longer running, saying whose it was, and keeps any other until `force-unlock`;
/// PostgreSQL's advisory lock dies with the holder's session.
#[test]
fn a_vanished_holder() {
    Backends::new().each(|location| {
        let mut gone = location.open().unwrap();
        let lock = gone.lock("c", "ghost@ws", 9, "sealer apply").unwrap();
        drop(gone);
        let mut next = location.open().unwrap();
        match location {
            StateLocation::Sqlite(_) => {
                assert!(matches!(next.lock("c", "me@ws", 1, "sealer apply"), Err(StateError::Locked { .. })));
                next.force_unlock(&lock.id).unwrap();
                let mut dead = std::process::Command::new("true").spawn().unwrap();
                dead.wait().unwrap();
                let mut alive =
                    std::process::Command::new("bash").args(["-c", "exec -a sealer sleep 30"]).spawn().unwrap();
                std::thread::sleep(std::time::Duration::from_millis(200));
                let held = next.lock("c", "me@ws", alive.id(), "sealer apply").unwrap();
                let refused = next.lock("c", "me@ws", 1, "sealer apply").unwrap_err();
                assert!(matches!(refused, StateError::Locked { .. }), "a running sealer's lock stands: {refused}");
                let _ = alive.kill();
                let _ = alive.wait();
                let taken = next.lock("c", "me@ws", 1, "sealer apply").unwrap();
                assert_eq!(taken.replaced.as_deref(), Some(held.to_string().as_str()));
                next.unlock(&taken).unwrap();
                let by_dead = next.lock("c", "me@ws", dead.id(), "sealer apply").unwrap();
                assert!(next.lock("c", "me@ws", 1, "sealer apply").unwrap().replaced.is_some());
                assert!(by_dead.replaced.is_none());
            }
            StateLocation::Postgres(_) => {
                let taken = next.lock("c", "me@ws", 1, "sealer apply").unwrap();
                assert_ne!(taken.id, lock.id);
            }
        }
    });
}

#[test]
fn import_keeps_lineage_serial_resources_and_history_and_never_overwrites() {
    let target = Backends::new();
    let mut state = State { cluster: "c".into(), lineage: Some("lineage-1".into()), serial: 17, ..Default::default() };
    for r in [resource("10.0.0.2", ResourceStatus::Ready), resource("10.0.0.3", ResourceStatus::Tainted)] {
        state.resources.insert(r.address.clone(), r);
    }
    let history = vec![HistoryEntry {
        serial: 17,
        command: "sealer apply".into(),
        who: "a@b".into(),
        at: "2026-11-23T10:00:00Z".into(),
        summary: "2 applied".into(),
    }];
    target.each(|location| {
        let mut store = location.open().unwrap();
        let lock = store.lock("c", "me@ws", 1, "sealer state migrate").unwrap();
        store.import(&lock, &state, &history).unwrap();
        assert_eq!(store.load("c").unwrap().unwrap(), state, "{location}");
        assert_eq!(store.history("c").unwrap(), history);
        let again = store.import(&lock, &state, &history).unwrap_err().to_string();
        assert!(again.contains("already holds"), "{again}");
        let r = resource("10.0.0.9", ResourceStatus::Ready);
        assert_eq!(store.put_resource(&lock, &r.address, Some(&r)).unwrap(), 18, "writes go on from the serial");
        store.unlock(&lock).unwrap();
    });
}

const CLUSTERFILE: &str = "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: shared\nspec:\n  \
                           image: sim/kubernetes:v1.22.15\n  ssh:\n    passwd: hunter2-secret\n  hosts:\n    - ips: \
                           [10.253.0.2]\n      roles: [master]\n    - ips: [10.253.0.3-10.253.0.4]\n      roles: [node]\n";

/// `state migrate` from the default SQLite file to PostgreSQL, then the CLI works on the new backend alone.
#[test]
fn migrate_to_postgres_then_plan_and_lock_through_the_cli() {
    let Some(db) = postgres_database() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Clusterfile"), CLUSTERFILE).unwrap();
    // A recorded cluster is planned with its image at hand: a small one under its name, in `sealer`'s home.
    let image = build_stub_image(&dir.path().join(".sealer-home"), "sim/kubernetes:v1.22.15");
    let seeded = seed_applied_state_with(&dir.path().join(".sealer/state.db"), CLUSTERFILE, &image);

    let migrated = ok(&sealer(dir.path(), &["state", "migrate", "--to", &db.url]));
    assert!(migrated.contains("Migrated cluster `shared`"), "{migrated}");
    assert!(!migrated.contains(POSTGRES_PASSWORD) && migrated.contains(":***@"), "{migrated}");
    std::fs::remove_dir_all(dir.path().join(".sealer")).unwrap();

    let store = StateLocation::Postgres(db.url.clone()).open_read_only().unwrap().unwrap();
    assert_eq!(store.load("shared").unwrap().unwrap(), seeded);
    let plan = sealer(dir.path(), &["--state", &db.url, "plan", "--refresh=false", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}\n{}", stdout(&plan), stderr(&plan));
    let listed = ok(&sealer(dir.path(), &["--state", &db.url, "state", "list"]));
    assert_eq!(listed.lines().count(), seeded.resources.len());

    // Migrating again would overwrite: refused, and nothing changed.
    let again = sealer(dir.path(), &["--state", &db.url, "state", "migrate", "--to", "other.db"]);
    ok(&again);
    let twice = sealer(dir.path(), &["--state", &db.url, "state", "migrate", "--to", "other.db"]);
    assert_eq!(twice.status.code(), Some(1));
    assert!(stderr(&twice).contains("already holds a state of cluster `shared`"), "{}", stderr(&twice));

    // A held lock refuses the CLI's apply, naming the holder; force-unlock frees it.
    let mut holder = StateLocation::Postgres(db.url.clone()).open().unwrap();
    let lock = holder.lock("shared", "carol@ci-runner", 4242, "sealer apply --auto-approve").unwrap();
    let refused = sealer(dir.path(), &["--state", &db.url, "apply", "--auto-approve", "--refresh=false"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = stderr(&refused);
    assert!(err.contains("carol@ci-runner") && err.contains("pid 4242") && err.contains(&lock.id), "{err}");
    ok(&sealer(dir.path(), &["--state", &db.url, "force-unlock", &lock.id, "--force"]));
    let mut next = StateLocation::Postgres(db.url.clone()).open().unwrap();
    next.lock("shared", "dave@ws", 1, "sealer apply").unwrap();

    // A wrong password names the database without any password.
    let wrong = db.url.replace(POSTGRES_PASSWORD, "not-the-password");
    let failed = sealer(dir.path(), &["--state", &wrong, "state", "list"]);
    assert_eq!(failed.status.code(), Some(1));
    let err = stderr(&failed);
    assert!(err.contains("cannot connect to `postgres://postgres:***@127.0.0.1"), "{err}");
    assert!(!err.contains("not-the-password") && !err.contains(POSTGRES_PASSWORD), "{err}");
    let help = std::process::Command::new(sealer_bin()).arg("--help").env("SEALER_STATE", &db.url).output().unwrap();
    assert!(stdout(&help).contains("SEALER_STATE") && !stdout(&help).contains(POSTGRES_PASSWORD), "{}", stdout(&help));
}
