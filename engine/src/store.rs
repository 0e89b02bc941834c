//! The database store (sqlx, SQLite by default): what the system produces and must not lose.
//!
//! For now that is the registrar's bindings. The schema lives in `migrations/sqlite/`, is
//! compiled into the binary and applied at start-up. Writes come in batches from the
//! runtime's writer task: one transaction for many REGISTERs (group commit), which is what
//! keeps a durable registrar fast. SQLite runs in WAL mode with `synchronous=NORMAL`: a
//! committed transaction survives the process being killed.
use crate::registrar::{Binding, Change};
use crate::sip::transport::Transport;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL {url:?}: {source}")]
    Url { url: String, source: sqlx::Error },
    #[error("cannot create the database folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the database {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
}

/// 11 columns × 500 rows stays far below SQLite's 32,766 bound parameters.
const ROWS_PER_STATEMENT: usize = 500;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Open (creating the file and its folder if needed) and migrate.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|source| StoreError::Url {
                url: url.to_owned(),
                source,
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let file = options.get_filename();
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            if file.as_os_str() != ":memory:" {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
                    path: dir.to_owned(),
                    source,
                })?;
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                url: url.to_owned(),
                source,
            })?;
        MIGRATOR.run(&pool).await?;
        Ok(Store { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Every binding that has not expired at `now_unix`.
    pub async fn load_bindings(&self, now_unix: u64) -> Result<Vec<Binding>, StoreError> {
        let rows = sqlx::query(
            "SELECT aor, contact, expires_at, q, call_id, cseq, transport, source_addr, \
             local_addr, user_agent, registered_at FROM registrations WHERE expires_at > ?",
        )
        .bind(now_unix as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let transport: String = row.try_get("transport")?;
            let source: String = row.try_get("source_addr")?;
            let local: String = row.try_get("local_addr")?;
            // A row we cannot read back is skipped with a warning rather than failing start-up:
            // the phone re-registers and the row is replaced.
            let (Some(transport), Ok(source), Ok(local)) = (
                Transport::from_token(&transport),
                source.parse(),
                local.parse(),
            ) else {
                tracing::warn!(aor = %row.try_get::<String, _>("aor")?, "skipping unreadable registration row");
                continue;
            };
            out.push(Binding {
                aor: row.try_get("aor")?,
                contact: row.try_get("contact")?,
                expires_at: row.try_get::<i64, _>("expires_at")? as u64,
                q: row.try_get::<i64, _>("q")?.clamp(0, 1000) as u16,
                call_id: row.try_get("call_id")?,
                cseq: row.try_get::<i64, _>("cseq")? as u32,
                transport,
                source,
                local,
                conn: None,
                user_agent: row.try_get("user_agent")?,
                registered_at: row.try_get::<i64, _>("registered_at")? as u64,
            });
        }
        Ok(out)
    }

    /// Apply registrar changes in one transaction.
    ///
    /// A batch holds the changes of many REGISTERs. Only the last change of each binding
    /// matters, and the rest become a few multi-row statements: per-statement overhead, not
    /// SQLite itself, is what limits a busy registrar.
    pub async fn apply(&self, changes: &[Change]) -> Result<(), StoreError> {
        let mut last: HashMap<(&str, &str), &Change> = HashMap::with_capacity(changes.len());
        let mut order = Vec::with_capacity(changes.len());
        for c in changes {
            let key = match c {
                Change::Upsert(b) => (b.aor.as_str(), b.contact.as_str()),
                Change::Remove { aor, contact } => (aor.as_str(), contact.as_str()),
            };
            if last.insert(key, c).is_none() {
                order.push(key);
            }
        }
        let mut upserts = Vec::new();
        let mut removes = Vec::new();
        for key in order {
            match last[&key] {
                Change::Upsert(b) => upserts.push(b),
                Change::Remove { .. } => removes.push(key),
            }
        }
        let mut tx = self.pool.begin().await?;
        for chunk in upserts.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO registrations (aor, contact, expires_at, q, call_id, cseq, \
                 transport, source_addr, local_addr, user_agent, registered_at) ",
            );
            q.push_values(chunk, |mut row, b| {
                row.push_bind(&b.aor)
                    .push_bind(&b.contact)
                    .push_bind(b.expires_at as i64)
                    .push_bind(i64::from(b.q))
                    .push_bind(&b.call_id)
                    .push_bind(i64::from(b.cseq))
                    .push_bind(b.transport.as_str())
                    .push_bind(b.source.to_string())
                    .push_bind(b.local.to_string())
                    .push_bind(&b.user_agent)
                    .push_bind(b.registered_at as i64);
            });
            q.push(
                " ON CONFLICT (aor, contact) DO UPDATE SET expires_at = excluded.expires_at, \
                 q = excluded.q, call_id = excluded.call_id, cseq = excluded.cseq, \
                 transport = excluded.transport, source_addr = excluded.source_addr, \
                 local_addr = excluded.local_addr, user_agent = excluded.user_agent, \
                 registered_at = excluded.registered_at",
            );
            q.build().execute(&mut *tx).await?;
        }
        for chunk in removes.chunks(ROWS_PER_STATEMENT) {
            let mut q =
                QueryBuilder::<Sqlite>::new("DELETE FROM registrations WHERE (aor, contact) IN (");
            q.push_values(chunk, |mut row, (aor, contact)| {
                row.push_bind(*aor).push_bind(*contact);
            });
            q.push(")");
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Delete bindings that expired by `now_unix`; returns how many.
    pub async fn delete_expired(&self, now_unix: u64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM registrations WHERE expires_at <= ?")
            .bind(now_unix as i64)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(contact: &str, expires_at: u64) -> Binding {
        Binding {
            aor: "1001".into(),
            contact: contact.into(),
            expires_at,
            q: 500,
            call_id: "c".into(),
            cseq: 3,
            transport: Transport::Tcp,
            source: "192.0.2.1:5062".parse().unwrap(),
            local: "127.0.0.1:5060".parse().unwrap(),
            conn: None,
            user_agent: Some("phone".into()),
            registered_at: 10,
        }
    }

    #[tokio::test]
    async fn bindings_survive_reopen_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/nested/sb.db", dir.path().display());
        let store = Store::open(&url).await.unwrap();
        store
            .apply(&[
                Change::Upsert(binding("sip:a@h", 100)),
                Change::Upsert(binding("sip:b@h", 200)),
            ])
            .await
            .unwrap();
        store
            .apply(&[
                Change::Upsert(binding("sip:a@h", 300)),
                Change::Remove {
                    aor: "1001".into(),
                    contact: "sip:b@h".into(),
                },
            ])
            .await
            .unwrap();
        drop(store);
        let store = Store::open(&url).await.unwrap();
        let got = store.load_bindings(50).await.unwrap();
        assert_eq!(got, vec![binding("sip:a@h", 300)]);
        assert!(store.load_bindings(300).await.unwrap().is_empty());
        assert_eq!(store.delete_expired(300).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_large_batch_keeps_the_last_change_of_each_binding() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}/sb.db", dir.path().display()))
            .await
            .unwrap();
        let mut changes: Vec<Change> = (0..1_234)
            .map(|i| Change::Upsert(binding(&format!("sip:{i}@h"), 100)))
            .collect();
        // Later in the same batch: one refreshed, one removed, one removed then re-added.
        changes.push(Change::Upsert(binding("sip:7@h", 900)));
        changes.push(Change::Remove {
            aor: "1001".into(),
            contact: "sip:8@h".into(),
        });
        changes.push(Change::Remove {
            aor: "1001".into(),
            contact: "sip:9@h".into(),
        });
        changes.push(Change::Upsert(binding("sip:9@h", 500)));
        store.apply(&changes).await.unwrap();
        let got = store.load_bindings(0).await.unwrap();
        assert_eq!(got.len(), 1_233);
        let find = |c: &str| got.iter().find(|b| b.contact == c).map(|b| b.expires_at);
        assert_eq!(find("sip:7@h"), Some(900));
        assert_eq!(find("sip:8@h"), None);
        assert_eq!(find("sip:9@h"), Some(500));
        // A batch of removals only.
        let removals: Vec<Change> = (0..600)
            .map(|i| Change::Remove {
                aor: "1001".into(),
                contact: format!("sip:{i}@h"),
            })
            .collect();
        store.apply(&removals).await.unwrap();
        // sip:8@h was already gone: 599 of the 600 rows existed.
        assert_eq!(store.load_bindings(0).await.unwrap().len(), 1_233 - 599);
    }
}
