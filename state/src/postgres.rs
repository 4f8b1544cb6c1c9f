//! The PostgreSQL state store, for teams and CI sharing one state: the lock is a session-level advisory
//! lock (released by the server when the holder's connection dies, so a killed apply never leaves the
//! state locked for good) plus a row that says who holds it.
//!
//! The synchronous `postgres` client drives its own Tokio runtime, which cannot run inside the apply's
//! runtime; so the connection lives on a thread of its own and every call is handed to it.

use std::sync::mpsc;
use std::thread::JoinHandle;

use postgres::{Client, GenericClient, NoTls};
use sealer_engine::{Address, HistoryEntry, LockInfo, ResourceWrite, State, StateError, StateStore};

use crate::codec::{decode, encode};

/// Each entry migrates the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE sealer_clusters (
    name TEXT PRIMARY KEY,
    lineage TEXT NOT NULL,
    serial BIGINT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE sealer_resources (
    cluster TEXT NOT NULL REFERENCES sealer_clusters(name),
    address TEXT NOT NULL,
    kind TEXT NOT NULL,
    host TEXT,
    status TEXT NOT NULL,
    attributes TEXT NOT NULL,
    depends_on TEXT NOT NULL,
    serial BIGINT NOT NULL,
    PRIMARY KEY (cluster, address)
);
CREATE TABLE sealer_history (
    id BIGSERIAL PRIMARY KEY,
    cluster TEXT NOT NULL,
    serial BIGINT NOT NULL,
    command TEXT NOT NULL,
    who TEXT NOT NULL,
    at TEXT NOT NULL,
    summary TEXT NOT NULL
);
CREATE TABLE sealer_locks (
    cluster TEXT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    who TEXT NOT NULL,
    pid BIGINT NOT NULL,
    command TEXT NOT NULL,
    created TEXT NOT NULL,
    backend_pid INTEGER NOT NULL
);
"#];

pub const PG_SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// First key of the cluster locks ("SEA1"; the second is `hashtext(cluster)`), so that they cannot collide
/// with other users of advisory locks in a shared database.
const LOCK_CLASS: i32 = 0x5345_4131;
/// First key of the transaction lock under which a cluster lock and the row naming its holder are taken
/// together ("SEA2"), so that a refused locker always finds the row.
const RECORD_CLASS: i32 = 0x5345_4132;
/// The single-key lock that serialises schema migrations ("SEALERMG"; one-key locks never collide with
/// the two-key ones above).
const MIGRATION_LOCK: i64 = 0x5345_414c_4552_4d47;

const NOW: &str = r#"to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"#;

/// The URL with its password replaced, for every message that names the database.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    // libpq also takes the password as a query parameter.
    let path = match path.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_string(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => path.to_string(),
    };
    format!("{scheme}://{authority}{path}")
}

fn backend(message: impl Into<String>) -> impl FnOnce(postgres::Error) -> StateError {
    let message = message.into();
    move |e| StateError::Backend { message, source: Some(Box::new(e)) }
}

fn serial_of(n: i64) -> Result<u64, StateError> {
    u64::try_from(n)
        .map_err(|_| StateError::Backend { message: format!("stored serial {n} is negative"), source: None })
}

type Job = Box<dyn FnOnce(&mut Client) + Send>;

/// The connection's own thread.
struct Connection {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// The URL without its password.
    shown: String,
}

impl Connection {
    fn open(url: &str) -> Result<Self, StateError> {
        let shown = redact_url(url);
        let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| StateError::Backend {
            message: format!("`{shown}` is not a PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE): {e}"),
            source: None,
        })?;
        // An unreachable server is an error within seconds, not a hang (the URL's connect_timeout wins).
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready, connected) = mpsc::sync_channel(1);
        let connect_error = shown.clone();
        let thread = std::thread::Builder::new()
            .name("sealer-postgres".into())
            .spawn(move || {
                let mut client = match config.connect(NoTls) {
                    Ok(c) => {
                        let _ = ready.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready.send(Err(backend(format!("cannot connect to `{connect_error}`"))(e)));
                        return;
                    }
                };
                while let Ok(job) = inbox.recv() {
                    job(&mut client);
                }
            })
            .map_err(|e| StateError::Backend {
                message: "cannot start the PostgreSQL connection thread".into(),
                source: Some(Box::new(e)),
            })?;
        let gone = || StateError::Backend { message: "the PostgreSQL connection thread stopped".into(), source: None };
        connected.recv().map_err(|_| gone())??;
        Ok(Connection { jobs: Some(jobs), thread: Some(thread), shown })
    }

    fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Client) -> Result<R, StateError> + Send + 'static,
    ) -> Result<R, StateError> {
        let gone =
            || StateError::Backend { message: format!("the connection to `{}` is closed", self.shown), source: None };
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |client| {
            let _ = reply.send(work(client));
        });
        self.jobs.as_ref().ok_or_else(gone)?.send(job).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Closing the channel ends the thread, which closes the session and with it any advisory lock.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub struct PostgresStore {
    conn: Connection,
}

fn schema_version(client: &mut impl GenericClient) -> Result<Option<i32>, StateError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('sealer_schema') IS NOT NULL", &[])
        .map_err(backend("cannot read the schema"))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client.query_opt("SELECT version FROM sealer_schema", &[]).map_err(backend("cannot read the schema"))?;
    Ok(Some(row.map(|r| r.get(0)).unwrap_or(0)))
}

fn lock_info(row: &postgres::Row) -> Result<LockInfo, StateError> {
    let pid: i64 = row.get(3);
    Ok(LockInfo {
        replaced: None,
        cluster: row.get(0),
        id: row.get(1),
        who: row.get(2),
        pid: u32::try_from(pid)
            .map_err(|_| StateError::Backend { message: format!("stored lock has pid {pid}"), source: None })?,
        command: row.get(4),
        created: row.get(5),
    })
}

const LOCK_COLUMNS: &str = "cluster, id, who, pid, command, created";

impl PostgresStore {
    /// Opens the state for reading only; `None` when the database holds no sealer state yet. Creates
    /// nothing.
    pub fn open_read_only(url: &str) -> Result<Option<Self>, StateError> {
        let conn = Connection::open(url)?;
        let shown = conn.shown.clone();
        let version = conn.run(schema_version)?;
        match version {
            None => Ok(None),
            Some(v) if v == PG_SCHEMA_VERSION => Ok(Some(PostgresStore { conn })),
            Some(v) => Err(StateError::Backend {
                message: format!(
                    "state `{shown}` has schema version {v}, this sealer reads version {PG_SCHEMA_VERSION}{}",
                    if v < PG_SCHEMA_VERSION {
                        "; run any writing command (e.g. `sealer apply`) to migrate it"
                    } else {
                        "; upgrade sealer"
                    }
                ),
                source: None,
            }),
        }
    }

    /// Opens the state for writing, creating and migrating its tables.
    pub fn open(url: &str) -> Result<Self, StateError> {
        let conn = Connection::open(url)?;
        let shown = conn.shown.clone();
        conn.run(move |client| {
            let mut tx = client.transaction().map_err(backend("cannot start a migration"))?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .map_err(backend("cannot lock the schema for migration"))?;
            let version = match schema_version(&mut tx)? {
                Some(v) => v,
                None => {
                    tx.batch_execute("CREATE TABLE sealer_schema (version INTEGER NOT NULL); INSERT INTO sealer_schema VALUES (0);")
                        .map_err(backend("cannot create the schema table"))?;
                    0
                }
            };
            if version > PG_SCHEMA_VERSION {
                return Err(StateError::Backend {
                    message: format!("state `{shown}` has schema version {version}, newer than this sealer ({PG_SCHEMA_VERSION}); upgrade sealer"),
                    source: None,
                });
            }
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                tx.batch_execute(sql).map_err(backend(format!("migration to schema version {}", i + 1)))?;
                tx.execute("UPDATE sealer_schema SET version = $1", &[&(i as i32 + 1)])
                    .map_err(backend("cannot record the schema version"))?;
            }
            tx.commit().map_err(backend("cannot commit the migration"))
        })?;
        Ok(PostgresStore { conn })
    }

    /// Fails unless `lock` is the cluster's current lock and this session holds it.
    fn check_lock(tx: &mut postgres::Transaction<'_>, lock: &LockInfo) -> Result<(), StateError> {
        let held = tx
            .query_opt(
                "SELECT id FROM sealer_locks WHERE cluster = $1 AND backend_pid = pg_backend_pid() FOR UPDATE",
                &[&lock.cluster],
            )
            .map_err(backend("cannot read the lock"))?;
        match held {
            Some(row) if row.get::<_, String>(0) == lock.id => Ok(()),
            _ => Err(StateError::NoSuchLock(lock.id.clone())),
        }
    }
}

impl StateStore for PostgresStore {
    fn load(&self, cluster: &str) -> Result<Option<State>, StateError> {
        let cluster = cluster.to_string();
        self.conn.run(move |client| {
            // One snapshot for the head and the resources: never a serial with another write's resources.
            let mut tx = client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(backend("cannot start a read"))?;
            let Some(head) = tx
                .query_opt("SELECT lineage, serial FROM sealer_clusters WHERE name = $1", &[&cluster])
                .map_err(backend("cannot read the cluster"))?
            else {
                return Ok(None);
            };
            let mut state = State {
                cluster: cluster.clone(),
                lineage: Some(head.get(0)),
                serial: serial_of(head.get(1))?,
                ..Default::default()
            };
            let rows = tx
                .query(
                    "SELECT address, host, status, attributes, depends_on FROM sealer_resources WHERE cluster = $1",
                    &[&cluster],
                )
                .map_err(backend("cannot read resources"))?;
            for row in rows {
                let resource = decode(row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))?;
                state.resources.insert(resource.address.clone(), resource);
            }
            tx.commit().map_err(backend("cannot finish a read"))?;
            Ok(Some(state))
        })
    }

    fn clusters(&self) -> Result<Vec<String>, StateError> {
        self.conn.run(|client| {
            let rows = client
                .query("SELECT name FROM sealer_clusters ORDER BY name", &[])
                .map_err(backend("cannot list clusters"))?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn lock(&mut self, cluster: &str, who: &str, pid: u32, command: &str) -> Result<LockInfo, StateError> {
        let (cluster, who, command) = (cluster.to_string(), who.to_string(), command.to_string());
        self.conn.run(move |client| {
            let taken = (|| {
                let mut tx = client.transaction().map_err(backend("cannot take the lock"))?;
                tx.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", &[&RECORD_CLASS, &cluster])
                    .map_err(backend("cannot take the lock"))?;
                let acquired: bool = tx
                    .query_one("SELECT pg_try_advisory_lock($1, hashtext($2))", &[&LOCK_CLASS, &cluster])
                    .map_err(backend("cannot take the lock"))?
                    .get(0);
                if !acquired {
                    let held = tx
                        .query_opt(&format!("SELECT {LOCK_COLUMNS} FROM sealer_locks WHERE cluster = $1"), &[&cluster])
                        .map_err(backend("cannot read the lock"))?;
                    return Err(match held {
                        Some(row) => {
                            let held = lock_info(&row)?;
                            StateError::Locked { id: held.id.clone(), holder: held.to_string() }
                        }
                        None => StateError::Backend {
                            message: format!(
                                "the lock of cluster `{cluster}` is held by a database session that is not sealer's"
                            ),
                            source: None,
                        },
                    });
                }
                // A row left here belongs to a session that is gone: the server released its advisory lock.
                tx.execute("DELETE FROM sealer_locks WHERE cluster = $1", &[&cluster])
                    .map_err(backend("cannot take the lock"))?;
                let id = uuid::Uuid::new_v4().to_string();
                let row = tx
                    .query_one(
                        &format!(
                            "INSERT INTO sealer_locks (cluster, id, who, pid, command, created, backend_pid)
                             VALUES ($1, $2, $3, $4, $5, {NOW}, pg_backend_pid()) RETURNING {LOCK_COLUMNS}"
                        ),
                        &[&cluster, &id, &who, &i64::from(pid), &command],
                    )
                    .map_err(backend("cannot take the lock"))?;
                let lock = lock_info(&row)?;
                tx.commit().map_err(backend("cannot take the lock"))?;
                Ok(lock)
            })();
            if let Err(StateError::Backend { .. }) = &taken {
                // A session lock outlives a rolled-back transaction: give it back.
                let _ = client.execute("SELECT pg_advisory_unlock($1, hashtext($2))", &[&LOCK_CLASS, &cluster]);
            }
            taken
        })
    }

    fn unlock(&mut self, lock: &LockInfo) -> Result<(), StateError> {
        let lock = lock.clone();
        self.conn.run(move |client| {
            let n = client
                .execute("DELETE FROM sealer_locks WHERE id = $1 AND backend_pid = pg_backend_pid()", &[&lock.id])
                .map_err(backend("cannot release the lock"))?;
            client
                .execute("SELECT pg_advisory_unlock($1, hashtext($2))", &[&LOCK_CLASS, &lock.cluster])
                .map_err(backend("cannot release the lock"))?;
            if n == 0 {
                return Err(StateError::NoSuchLock(lock.id.clone()));
            }
            Ok(())
        })
    }

    fn force_unlock(&mut self, lock_id: &str) -> Result<LockInfo, StateError> {
        let lock_id = lock_id.to_string();
        self.conn.run(move |client| {
            let row = client
                .query_opt(
                    &format!(
                        "DELETE FROM sealer_locks WHERE id = $1 RETURNING {LOCK_COLUMNS}, backend_pid, \
                         backend_pid = pg_backend_pid()"
                    ),
                    &[&lock_id],
                )
                .map_err(backend("cannot release the lock"))?
                .ok_or_else(|| StateError::NoSuchLock(lock_id.clone()))?;
            let held = lock_info(&row)?;
            let (backend_pid, ours): (i32, bool) = (row.get(6), row.get(7));
            if ours {
                client
                    .execute("SELECT pg_advisory_unlock($1, hashtext($2))", &[&LOCK_CLASS, &held.cluster])
                    .map_err(backend("cannot release the lock"))?;
            } else {
                // The advisory lock belongs to the holder's session: end that session (a hung or half-dead
                // client), waiting for it to be gone, as force-unlock promises the lock is free afterwards.
                client
                    .execute(
                        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE pid = $1",
                        &[&backend_pid],
                    )
                    .map_err(backend("cannot end the session that holds the lock"))?;
            }
            Ok(held)
        })
    }

    fn write_resources(&mut self, lock: &LockInfo, writes: &[ResourceWrite<'_>]) -> Result<u64, StateError> {
        let lock = lock.clone();
        let rows = writes
            .iter()
            .map(|w| {
                let row = w.resource.map(|r| encode(w.address, r)).transpose()?;
                Ok((w.address.to_string(), w.from.map(Address::to_string), row))
            })
            .collect::<Result<Vec<_>, StateError>>()?;
        self.conn.run(move |client| {
            let mut tx = client.transaction().map_err(backend("cannot start a state write"))?;
            Self::check_lock(&mut tx, &lock)?;
            // The first write creates the cluster with its lineage; every write bumps the serial.
            let serial: i64 = tx
                .query_one(
                    &format!(
                        "INSERT INTO sealer_clusters (name, lineage, serial, created_at) VALUES ($1, $2, 1, {NOW})
                         ON CONFLICT (name) DO UPDATE SET serial = sealer_clusters.serial + 1 RETURNING serial"
                    ),
                    &[&lock.cluster, &uuid::Uuid::new_v4().to_string()],
                )
                .map_err(backend("cannot bump the serial"))?
                .get(0);
            for (key, from, row) in &rows {
                if let Some(from) = from {
                    tx.execute(
                        "DELETE FROM sealer_resources WHERE cluster = $1 AND address = $2",
                        &[&lock.cluster, from],
                    )
                    .map_err(backend(format!("cannot move `{from}`")))?;
                }
                match row {
                    None => {
                        tx.execute(
                            "DELETE FROM sealer_resources WHERE cluster = $1 AND address = $2",
                            &[&lock.cluster, key],
                        )
                        .map_err(backend(format!("cannot delete `{key}`")))?;
                    }
                    Some(r) => {
                        tx.execute(
                            "INSERT INTO sealer_resources
                                 (cluster, address, kind, host, status, attributes, depends_on, serial)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                             ON CONFLICT (cluster, address) DO UPDATE SET host = $4, status = $5, attributes = $6,
                                 depends_on = $7, serial = $8",
                            &[
                                &lock.cluster,
                                &r.address,
                                &r.kind,
                                &r.host,
                                &r.status,
                                &r.attributes,
                                &r.depends_on,
                                &serial,
                            ],
                        )
                        .map_err(backend(format!("cannot record `{key}`")))?;
                    }
                }
            }
            tx.commit().map_err(backend("cannot commit the state write"))?;
            serial_of(serial)
        })
    }

    fn record_history(&mut self, lock: &LockInfo, summary: &str) -> Result<(), StateError> {
        let (lock, summary) = (lock.clone(), summary.to_string());
        self.conn.run(move |client| {
            client
                .execute(
                    &format!(
                        "INSERT INTO sealer_history (cluster, serial, command, who, at, summary)
                         SELECT $1, COALESCE((SELECT serial FROM sealer_clusters WHERE name = $1), 0), $2, $3, {NOW}, $4"
                    ),
                    &[&lock.cluster, &lock.command, &lock.who, &summary],
                )
                .map_err(backend("cannot record the history"))?;
            Ok(())
        })
    }

    fn history(&self, cluster: &str) -> Result<Vec<HistoryEntry>, StateError> {
        let cluster = cluster.to_string();
        self.conn.run(move |client| {
            let rows = client
                .query(
                    "SELECT serial, command, who, at, summary FROM sealer_history WHERE cluster = $1 ORDER BY id",
                    &[&cluster],
                )
                .map_err(backend("cannot read the history"))?;
            rows.iter()
                .map(|r| {
                    Ok(HistoryEntry {
                        serial: serial_of(r.get(0))?,
                        command: r.get(1),
                        who: r.get(2),
                        at: r.get(3),
                        summary: r.get(4),
                    })
                })
                .collect()
        })
    }

    fn import(&mut self, lock: &LockInfo, state: &State, history: &[HistoryEntry]) -> Result<(), StateError> {
        let lock = lock.clone();
        let lineage = state.lineage.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let serial = i64::try_from(state.serial).map_err(|_| StateError::Backend {
            message: format!("serial {} is too large", state.serial),
            source: None,
        })?;
        let rows = state.resources.iter().map(|(a, r)| encode(a, r)).collect::<Result<Vec<_>, _>>()?;
        let history = history.to_vec();
        self.conn.run(move |client| {
            let mut tx = client.transaction().map_err(backend("cannot start the import"))?;
            Self::check_lock(&mut tx, &lock)?;
            let inserted = tx
                .execute(
                    &format!(
                        "INSERT INTO sealer_clusters (name, lineage, serial, created_at) VALUES ($1, $2, $3, {NOW})
                         ON CONFLICT (name) DO NOTHING"
                    ),
                    &[&lock.cluster, &lineage, &serial],
                )
                .map_err(backend("cannot create the cluster state"))?;
            if inserted == 0 {
                return Err(StateError::Backend {
                    message: format!("the target already holds a state of cluster `{}`", lock.cluster),
                    source: None,
                });
            }
            for r in &rows {
                tx.execute(
                    "INSERT INTO sealer_resources (cluster, address, kind, host, status, attributes, depends_on, serial)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[&lock.cluster, &r.address, &r.kind, &r.host, &r.status, &r.attributes, &r.depends_on, &serial],
                )
                .map_err(backend(format!("cannot record `{}`", r.address)))?;
            }
            for h in &history {
                let at_serial = i64::try_from(h.serial).unwrap_or(i64::MAX);
                tx.execute(
                    "INSERT INTO sealer_history (cluster, serial, command, who, at, summary) VALUES ($1, $2, $3, $4, $5, $6)",
                    &[&lock.cluster, &at_serial, &h.command, &h.who, &h.at, &h.summary],
                )
                .map_err(backend("cannot record the history"))?;
            }
            tx.commit().map_err(backend("cannot commit the import"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn the_password_never_shows() {
        assert_eq!(
            redact_url("postgres://u:s3cret@db:5432/x?sslmode=disable"),
            "postgres://u:***@db:5432/x?sslmode=disable"
        );
        assert_eq!(redact_url("postgres://u:p@ss:w@db/x"), "postgres://u:***@db/x");
        assert_eq!(redact_url("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(
            redact_url("postgres://u@db/x?sslmode=disable&password=s3cret&PASSWORD=again"),
            "postgres://u@db/x?sslmode=disable&password=***&PASSWORD=***"
        );
        assert_eq!(redact_url("postgresql://db/x"), "postgresql://db/x");
    }
}
