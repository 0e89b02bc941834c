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
use sqlx::{Row, SqlitePool};
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
    pub async fn apply(&self, changes: &[Change]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for c in changes {
            match c {
                Change::Upsert(b) => {
                    sqlx::query(
                        "INSERT INTO registrations (aor, contact, expires_at, q, call_id, cseq, \
                         transport, source_addr, local_addr, user_agent, registered_at) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                         ON CONFLICT (aor, contact) DO UPDATE SET expires_at = excluded.expires_at, \
                         q = excluded.q, call_id = excluded.call_id, cseq = excluded.cseq, \
                         transport = excluded.transport, source_addr = excluded.source_addr, \
                         local_addr = excluded.local_addr, user_agent = excluded.user_agent, \
                         registered_at = excluded.registered_at",
                    )
                    .bind(&b.aor)
                    .bind(&b.contact)
                    .bind(b.expires_at as i64)
                    .bind(i64::from(b.q))
                    .bind(&b.call_id)
                    .bind(i64::from(b.cseq))
                    .bind(b.transport.as_str())
                    .bind(b.source.to_string())
                    .bind(b.local.to_string())
                    .bind(&b.user_agent)
                    .bind(b.registered_at as i64)
                    .execute(&mut *tx)
                    .await?;
                }
                Change::Remove { aor, contact } => {
                    sqlx::query("DELETE FROM registrations WHERE aor = ? AND contact = ?")
                        .bind(aor)
                        .bind(contact)
                        .execute(&mut *tx)
                        .await?;
                }
            }
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
}
