//! The SQLite state store: one file, several clusters, migrations by `PRAGMA user_version`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use sealer_engine::{HistoryEntry, LockInfo, ResourceWrite, State, StateError, StateStore};

use crate::codec::{decode, encode};

/// Each entry migrates the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE clusters (
    name TEXT PRIMARY KEY,
    lineage TEXT NOT NULL,
    serial INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE resources (
    cluster TEXT NOT NULL REFERENCES clusters(name),
    address TEXT NOT NULL,
    kind TEXT NOT NULL,
    host TEXT,
    status TEXT NOT NULL,
    attributes TEXT NOT NULL,
    depends_on TEXT NOT NULL,
    serial INTEGER NOT NULL,
    PRIMARY KEY (cluster, address)
);
CREATE TABLE history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cluster TEXT NOT NULL,
    serial INTEGER NOT NULL,
    command TEXT NOT NULL,
    who TEXT NOT NULL,
    at TEXT NOT NULL,
    summary TEXT NOT NULL
);
CREATE TABLE locks (
    cluster TEXT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    who TEXT NOT NULL,
    pid INTEGER NOT NULL,
    command TEXT NOT NULL,
    created TEXT NOT NULL
);
"#,
    r#"
ALTER TABLE locks ADD COLUMN origin TEXT NOT NULL DEFAULT '';
"#,
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The oldest schema this sealer reads without migrating it (a read never writes): what reads use
/// (clusters, resources, history, the lock's holder) is the same since it; `locks.origin` (2) only
/// matters to a writer taking the lock.
const READABLE_SINCE: i64 = 1;

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')";

fn backend(message: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> StateError {
    let message = message.into();
    move |e| StateError::Backend { message, source: Some(Box::new(e)) }
}

/// Serials are stored as SQLite integers (i64) and never negative.
fn serial_at(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<u64> {
    let n: i64 = row.get(index)?;
    u64::try_from(n)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Integer, Box::new(e)))
}

/// WAL lets `plan` read while an apply writes. Switching to it needs the database to itself, which two
/// processes opening a new state at once do not have, and SQLite's busy timeout does not cover it: retry.
fn enable_wal(conn: &Connection) -> Result<(), StateError> {
    let mut attempts = 0;
    loop {
        let mode: String =
            conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).map_err(backend("cannot read the journal mode"))?;
        if mode.eq_ignore_ascii_case("wal") {
            return Ok(());
        }
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Ok(()) => return Ok(()),
            Err(_) if attempts < 200 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(e) => return Err(backend("cannot enable WAL")(e)),
        }
    }
}

pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens the state for reading only; `None` when there is no state file yet. Never creates or changes
    /// the file, so `plan` can run without leaving anything behind.
    pub fn open_read_only(path: &Path) -> Result<Option<Self>, StateError> {
        if !path.exists() {
            return Ok(None);
        }
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(backend(format!("cannot open state `{}`", path.display())))?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(backend("cannot configure the state database"))?;
        let store = SqliteStore { conn, path: path.to_path_buf() };
        let version = store.user_version()?;
        if !(READABLE_SINCE..=SCHEMA_VERSION).contains(&version) {
            return Err(StateError::Backend {
                message: format!(
                    "state `{}` has schema version {version}, this sealer reads version {SCHEMA_VERSION}{}",
                    path.display(),
                    if version < SCHEMA_VERSION {
                        "; run any writing command (e.g. `sealer apply`) to migrate it"
                    } else {
                        "; upgrade sealer"
                    }
                ),
                source: None,
            });
        }
        Ok(Some(store))
    }

    /// Opens (creating when needed) the state for writing, migrating its schema.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StateError::Backend {
                message: format!("cannot create the state directory `{}`", dir.display()),
                source: Some(Box::new(e)),
            })?;
        }
        let conn = Connection::open(path).map_err(backend(format!("cannot open state `{}`", path.display())))?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(backend("cannot configure the state database"))?;
        enable_wal(&conn)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(backend("cannot enable foreign keys"))?;
        let mut store = SqliteStore { conn, path: path.to_path_buf() };
        store.migrate()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn user_version(&self) -> Result<i64, StateError> {
        self.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(backend("cannot read the schema version"))
    }

    fn migrate(&mut self) -> Result<(), StateError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend("cannot start a migration"))?;
        let version: i64 =
            tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(backend("cannot read the schema version"))?;
        if version > SCHEMA_VERSION {
            return Err(StateError::Backend {
                message: format!("state `{}` has schema version {version}, newer than this sealer ({SCHEMA_VERSION}); upgrade sealer", self.path.display()),
                source: None,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql).map_err(backend(format!("migration to schema version {}", i + 1)))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(backend("cannot record the schema version"))?;
        }
        tx.commit().map_err(backend("cannot commit the migration"))
    }

    fn lock_row(conn: &Connection, sql: &str, key: &str) -> Result<Option<LockInfo>, StateError> {
        conn.query_row(sql, [key], |r| {
            Ok(LockInfo {
                replaced: None,
                cluster: r.get(0)?,
                id: r.get(1)?,
                who: r.get(2)?,
                pid: r.get(3)?,
                command: r.get(4)?,
                created: r.get(5)?,
            })
        })
        .optional()
        .map_err(backend("cannot read the lock"))
    }

    /// Fails unless `lock` is the cluster's current lock.
    fn check_lock(conn: &Connection, lock: &LockInfo) -> Result<(), StateError> {
        let held: Option<String> = conn
            .query_row("SELECT id FROM locks WHERE cluster = ?1", [&lock.cluster], |r| r.get(0))
            .optional()
            .map_err(backend("cannot read the lock"))?;
        if held.as_deref() != Some(lock.id.as_str()) {
            return Err(StateError::NoSuchLock(lock.id.clone()));
        }
        Ok(())
    }

    /// The lock currently held on `cluster`, if any.
    pub fn current_lock(&self, cluster: &str) -> Result<Option<LockInfo>, StateError> {
        Self::lock_row(
            &self.conn,
            "SELECT cluster, id, who, pid, command, created FROM locks WHERE cluster = ?1",
            cluster,
        )
    }
}

/// Where this process's pid means something: the machine's boot and the pid namespace. Two containers of
/// one hostname (each its own pid namespace), or a machine rebooted, tell different pids apart by it.
fn origin() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let pids = std::fs::read_link("/proc/self/ns/pid").map(|p| p.display().to_string()).unwrap_or_default();
    format!("{} {pids}", boot.trim())
}

/// Whether process `pid` of this machine is running and is a sealer (its executable's name says so): a
/// lock whose process is not was left by a killed one. `who` (user@host) and the lock's origin name the
/// machine.
fn sealer_running(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let program = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let name = program.rsplit(|b| *b == b'/').next().unwrap_or_default();
    String::from_utf8_lossy(name).contains("sealer")
}

impl StateStore for SqliteStore {
    fn load(&self, cluster: &str) -> Result<Option<State>, StateError> {
        let head: Option<(String, u64)> = self
            .conn
            .query_row("SELECT lineage, serial FROM clusters WHERE name = ?1", [cluster], |r| {
                Ok((r.get(0)?, serial_at(r, 1)?))
            })
            .optional()
            .map_err(backend("cannot read the cluster"))?;
        let Some((lineage, serial)) = head else {
            return Ok(None);
        };
        let mut state = State { cluster: cluster.to_string(), lineage: Some(lineage), serial, ..Default::default() };
        let mut stmt = self
            .conn
            .prepare("SELECT address, host, status, attributes, depends_on FROM resources WHERE cluster = ?1")
            .map_err(backend("cannot read resources"))?;
        let rows = stmt
            .query_map([cluster], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(backend("cannot read resources"))?;
        for row in rows {
            let (address, host, status, attributes, depends_on) = row.map_err(backend("cannot read a resource"))?;
            let resource = decode(&address, host.as_deref(), &status, &attributes, &depends_on)?;
            state.resources.insert(resource.address.clone(), resource);
        }
        Ok(Some(state))
    }

    fn clusters(&self) -> Result<Vec<String>, StateError> {
        let mut stmt =
            self.conn.prepare("SELECT name FROM clusters ORDER BY name").map_err(backend("cannot list clusters"))?;
        let names = stmt.query_map([], |r| r.get(0)).map_err(backend("cannot list clusters"))?;
        names.collect::<Result<_, _>>().map_err(backend("cannot list clusters"))
    }

    fn lock(&mut self, cluster: &str, who: &str, pid: u32, command: &str) -> Result<LockInfo, StateError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend("cannot take the lock"))?;
        let held = Self::lock_row(
            &tx,
            "SELECT cluster, id, who, pid, command, created FROM locks WHERE cluster = ?1",
            cluster,
        )?;
        // A lock of a process of this machine that is gone (a killed apply) holds nothing: replaced, and
        // said so. Any other is refused, naming its holder. "This machine": the same user and hostname,
        // and the same boot and pid namespace (else its pid says nothing about whether it runs).
        let here = origin();
        let held_here = match &held {
            Some(held) => {
                let held_origin: String = tx
                    .query_row("SELECT origin FROM locks WHERE id = ?1", [&held.id], |r| r.get(0))
                    .map_err(backend("cannot read the lock"))?;
                held.who == who && held_origin == here && !here.trim().is_empty()
            }
            None => false,
        };
        let replaced = match held {
            // Our own pid on the lock is another process's that had it before (a container's pids repeat).
            Some(held) if held_here && (held.pid == pid || !sealer_running(held.pid)) => {
                tx.execute("DELETE FROM locks WHERE id = ?1", [&held.id]).map_err(backend("cannot take the lock"))?;
                Some(held.to_string())
            }
            Some(held) => return Err(StateError::Locked { id: held.id.clone(), holder: held.to_string() }),
            None => None,
        };
        let id = uuid::Uuid::new_v4().to_string();
        tx.execute(
            &format!(
                "INSERT INTO locks (cluster, id, who, pid, command, created, origin) VALUES (?1, ?2, ?3, ?4, ?5, {NOW}, ?6)"
            ),
            params![cluster, id, who, pid, command, here],
        )
        .map_err(backend("cannot take the lock"))?;
        let lock = Self::lock_row(&tx, "SELECT cluster, id, who, pid, command, created FROM locks WHERE id = ?1", &id)?
            .ok_or_else(|| StateError::NoSuchLock(id.clone()))?;
        tx.commit().map_err(backend("cannot take the lock"))?;
        Ok(LockInfo { replaced, ..lock })
    }

    fn unlock(&mut self, lock: &LockInfo) -> Result<(), StateError> {
        let n = self
            .conn
            .execute("DELETE FROM locks WHERE id = ?1", [&lock.id])
            .map_err(backend("cannot release the lock"))?;
        if n == 0 {
            return Err(StateError::NoSuchLock(lock.id.clone()));
        }
        Ok(())
    }

    fn force_unlock(&mut self, lock_id: &str) -> Result<LockInfo, StateError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend("cannot release the lock"))?;
        let held =
            Self::lock_row(&tx, "SELECT cluster, id, who, pid, command, created FROM locks WHERE id = ?1", lock_id)?
                .ok_or_else(|| StateError::NoSuchLock(lock_id.to_string()))?;
        tx.execute("DELETE FROM locks WHERE id = ?1", [lock_id]).map_err(backend("cannot release the lock"))?;
        tx.commit().map_err(backend("cannot release the lock"))?;
        Ok(held)
    }

    fn write_resources(&mut self, lock: &LockInfo, writes: &[ResourceWrite<'_>]) -> Result<u64, StateError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend("cannot start a state write"))?;
        Self::check_lock(&tx, lock)?;
        tx.execute(
            &format!("INSERT OR IGNORE INTO clusters (name, lineage, serial, created_at) VALUES (?1, ?2, 0, {NOW})"),
            params![lock.cluster, uuid::Uuid::new_v4().to_string()],
        )
        .map_err(backend("cannot create the cluster state"))?;
        tx.execute("UPDATE clusters SET serial = serial + 1 WHERE name = ?1", [&lock.cluster])
            .map_err(backend("cannot bump the serial"))?;
        let serial: u64 = tx
            .query_row("SELECT serial FROM clusters WHERE name = ?1", [&lock.cluster], |r| serial_at(r, 0))
            .map_err(backend("cannot read the serial"))?;
        for write in writes {
            let key = write.address.to_string();
            if let Some(from) = write.from {
                tx.execute(
                    "DELETE FROM resources WHERE cluster = ?1 AND address = ?2",
                    params![lock.cluster, from.to_string()],
                )
                .map_err(backend(format!("cannot move `{from}`")))?;
            }
            match write.resource {
                None => {
                    tx.execute("DELETE FROM resources WHERE cluster = ?1 AND address = ?2", params![lock.cluster, key])
                        .map_err(backend(format!("cannot delete `{key}`")))?;
                }
                Some(r) => {
                    let r = encode(write.address, r)?;
                    tx.execute(
                        "INSERT INTO resources (cluster, address, kind, host, status, attributes, depends_on, serial)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                         ON CONFLICT (cluster, address) DO UPDATE SET host = ?4, status = ?5, attributes = ?6,
                             depends_on = ?7, serial = ?8",
                        params![
                            lock.cluster,
                            r.address,
                            r.kind,
                            r.host,
                            r.status,
                            r.attributes,
                            r.depends_on,
                            serial as i64
                        ],
                    )
                    .map_err(backend(format!("cannot record `{key}`")))?;
                }
            }
        }
        tx.commit().map_err(backend("cannot commit the state write"))?;
        Ok(serial)
    }

    fn record_history(&mut self, lock: &LockInfo, summary: &str) -> Result<(), StateError> {
        self.conn
            .execute(
                &format!(
                    "INSERT INTO history (cluster, serial, command, who, at, summary)
                     SELECT ?1, COALESCE((SELECT serial FROM clusters WHERE name = ?1), 0), ?2, ?3, {NOW}, ?4"
                ),
                params![lock.cluster, lock.command, lock.who, summary],
            )
            .map_err(backend("cannot record the history"))?;
        Ok(())
    }

    fn history(&self, cluster: &str) -> Result<Vec<HistoryEntry>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT serial, command, who, at, summary FROM history WHERE cluster = ?1 ORDER BY id")
            .map_err(backend("cannot read the history"))?;
        let rows = stmt
            .query_map([cluster], |r| {
                Ok(HistoryEntry {
                    serial: serial_at(r, 0)?,
                    command: r.get(1)?,
                    who: r.get(2)?,
                    at: r.get(3)?,
                    summary: r.get(4)?,
                })
            })
            .map_err(backend("cannot read the history"))?;
        rows.collect::<Result<_, _>>().map_err(backend("cannot read the history"))
    }

    fn import(&mut self, lock: &LockInfo, state: &State, history: &[HistoryEntry]) -> Result<(), StateError> {
        let lineage = state.lineage.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let serial = i64::try_from(state.serial).map_err(|_| StateError::Backend {
            message: format!("serial {} is too large", state.serial),
            source: None,
        })?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend("cannot start the import"))?;
        Self::check_lock(&tx, lock)?;
        let inserted = tx
            .execute(
                &format!(
                    "INSERT OR IGNORE INTO clusters (name, lineage, serial, created_at) VALUES (?1, ?2, ?3, {NOW})"
                ),
                params![lock.cluster, lineage, serial],
            )
            .map_err(backend("cannot create the cluster state"))?;
        if inserted == 0 {
            return Err(StateError::Backend {
                message: format!("the target already holds a state of cluster `{}`", lock.cluster),
                source: None,
            });
        }
        for (address, resource) in &state.resources {
            let r = encode(address, resource)?;
            tx.execute(
                "INSERT INTO resources (cluster, address, kind, host, status, attributes, depends_on, serial)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![lock.cluster, r.address, r.kind, r.host, r.status, r.attributes, r.depends_on, serial],
            )
            .map_err(backend(format!("cannot record `{}`", r.address)))?;
        }
        for h in history {
            tx.execute(
                "INSERT INTO history (cluster, serial, command, who, at, summary) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![lock.cluster, i64::try_from(h.serial).unwrap_or(i64::MAX), h.command, h.who, h.at, h.summary],
            )
            .map_err(backend("cannot record the history"))?;
        }
        tx.commit().map_err(backend("cannot commit the import"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealer_engine::{Address, Kind, ResourceStatus, StoredResource, Value};

    fn resource(key: &str) -> StoredResource {
        StoredResource {
            address: Address::new(Kind::Hostname, key),
            host: Some("10.0.0.2".parse().unwrap()),
            status: ResourceStatus::Ready,
            attributes: [("name".to_string(), Value::text("m0"))].into(),
            depends_on: vec![Address::new(Kind::Host, key)],
        }
    }

    #[test]
    fn concurrent_first_opens_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || SqliteStore::open(&path).map(|_| ()))
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    }

    #[test]
    fn read_only_open_of_a_missing_file_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.db");
        assert!(SqliteStore::open_read_only(&path).unwrap().is_none());
        assert!(!path.exists());
        assert!(!path.parent().unwrap().exists());
    }

    /// Resources that finished together are one write: one serial, all of them or none.
    #[test]
    fn a_batch_is_one_write_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
        let lock = store.lock("c", "me@here", 1, "apply").unwrap();
        let (a, b, moved) = (resource("10.0.0.2"), resource("10.0.0.3"), resource("10.0.0.4"));
        store.put_resource(&lock, &moved.address, Some(&moved)).unwrap();
        let writes = [
            ResourceWrite { from: None, address: &a.address, resource: Some(&a) },
            ResourceWrite { from: Some(&moved.address), address: &b.address, resource: Some(&b) },
        ];
        assert_eq!(store.write_resources(&lock, &writes).unwrap(), 2, "one serial for the batch");
        let state = store.load("c").unwrap().unwrap();
        assert_eq!(state.resources.keys().collect::<Vec<_>>(), [&a.address, &b.address]);
        // A lock that is not held any more: nothing of the batch is written.
        store.unlock(&lock).unwrap();
        let gone = [ResourceWrite { from: None, address: &moved.address, resource: Some(&moved) }];
        assert!(store.write_resources(&lock, &gone).is_err());
        assert_eq!(store.load("c").unwrap().unwrap().resources.len(), 2);
    }

    #[test]
    fn writes_bump_the_serial_and_keep_lineage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut store = SqliteStore::open(&path).unwrap();
        let lock = store.lock("c", "me@here", 1, "apply").unwrap();
        let a = resource("10.0.0.2");
        assert_eq!(store.put_resource(&lock, &a.address, Some(&a)).unwrap(), 1);
        let first = store.load("c").unwrap().unwrap();
        assert_eq!(first.resources[&a.address], a);
        assert_eq!(store.put_resource(&lock, &a.address, None).unwrap(), 2);
        let second = store.load("c").unwrap().unwrap();
        assert_eq!(second.lineage, first.lineage);
        assert!(second.resources.is_empty());
        store.record_history(&lock, "1 created").unwrap();
        store.unlock(&lock).unwrap();
        assert_eq!(store.history("c").unwrap()[0].serial, 2);
        let reader = SqliteStore::open_read_only(&path).unwrap().unwrap();
        assert_eq!(reader.clusters().unwrap(), ["c"]);
    }

    #[test]
    fn a_second_lock_is_refused_with_the_holder_and_force_unlock_clears_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut one = SqliteStore::open(&path).unwrap();
        let mut two = SqliteStore::open(&path).unwrap();
        let lock = one.lock("c", "alice@ws1", 42, "sealer apply").unwrap();
        let err = two.lock("c", "bob@ws2", 7, "sealer apply").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("alice@ws1") && message.contains("pid 42") && message.contains(&lock.id), "{message}");
        assert!(two.lock("other", "bob@ws2", 7, "sealer apply").is_ok());
        assert_eq!(two.force_unlock(&lock.id).unwrap().who, "alice@ws1");
        let a = resource("10.0.0.3");
        assert!(matches!(one.put_resource(&lock, &a.address, Some(&a)), Err(StateError::NoSuchLock(_))));
        assert!(two.lock("c", "bob@ws2", 7, "sealer apply").is_ok());
    }

    /// A state an older sealer wrote (schema 1, a lock held) is read as it is, never changed by a read, and
    /// migrated by the next writer.
    #[test]
    fn a_schema_1_state_is_read_without_migrating_and_migrated_by_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute_batch(
                "INSERT INTO clusters VALUES ('c', 'l-1', 3, '2026-01-01T00:00:00Z'); \
                 INSERT INTO locks VALUES ('c', 'id-1', 'alice@ws1', 42, 'sealer apply', '2026-01-01T00:00:00Z');",
            )
            .unwrap();
        }
        let reader = SqliteStore::open_read_only(&path).unwrap().unwrap();
        assert_eq!(reader.clusters().unwrap(), ["c"]);
        assert_eq!(reader.load("c").unwrap().unwrap().serial, 3);
        assert_eq!(reader.current_lock("c").unwrap().unwrap().who, "alice@ws1");
        assert_eq!(reader.user_version().unwrap(), 1, "a read never migrates");
        drop(reader);
        let mut writer = SqliteStore::open(&path).unwrap();
        assert_eq!(writer.user_version().unwrap(), SCHEMA_VERSION);
        // The lock an older sealer took has no origin: refused, never taken over.
        assert!(matches!(writer.lock("c", "alice@ws1", 42, "sealer apply"), Err(StateError::Locked { .. })));
    }

    /// The lock of a process gone from this machine (same user and hostname, same boot and pid namespace)
    /// is replaced; one taken in another pid namespace or boot (a container sharing the hostname) is
    /// refused, whatever its pid: that pid says nothing here.
    #[test]
    fn only_a_lock_of_a_gone_process_of_this_boot_and_pid_namespace_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut store = SqliteStore::open(&path).unwrap();
        // No process runs with this pid (beyond the kernel's pid_max).
        let gone = 4_194_400;
        store.lock("c", "alice@ws1", gone, "sealer apply").unwrap();
        let taken = store.lock("c", "alice@ws1", std::process::id(), "sealer apply").unwrap();
        assert!(taken.replaced.as_deref().is_some_and(|r| r.contains(&gone.to_string())), "{taken:?}");
        store.conn.execute("UPDATE locks SET pid = ?1, origin = 'another-boot pid:[1]'", [gone]).unwrap();
        let err = store.lock("c", "alice@ws1", std::process::id(), "sealer apply").unwrap_err();
        assert!(matches!(err, StateError::Locked { .. }), "{err}");
        // A lock written before locks recorded their origin is refused too.
        store.conn.execute("UPDATE locks SET origin = ''", []).unwrap();
        assert!(store.lock("c", "alice@ws1", std::process::id(), "sealer apply").is_err());
    }
}
