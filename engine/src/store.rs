//! The database store (sqlx, SQLite by default): what the system produces and must not lose.
//!
//! The registrar's bindings, call detail records ([`crate::cdr`]) and the IVR operation log. The
//! schema lives in `migrations/sqlite/`, is compiled into the binary and applied at start-up.
//! Registrar writes come in batches from the runtime's writer task: one transaction for many
//! REGISTERs (group commit), which is what keeps a durable registrar fast. SQLite runs in WAL mode
//! with `synchronous=NORMAL`: a committed transaction survives the process being killed.
//!
//! ## CDRs survive crashes
//! A call's main record is inserted when the call arrives ([`Store::open_cdr`] returns once the row
//! is committed) and updated when it ends ([`Store::close_cdr`]). A crash in between leaves an open
//! row, which [`Store::repair_open_cdrs`] closes at start-up as a system failure: a call is never
//! lost from the records, even one that was in progress when the process died.
use crate::cdr::{CallResult, CallType, CdrClose, CdrOpen, Direction, HangupBy, MissedReason};
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
    /// A stored value this version can not read: an enum code it does not know (a row written by a
    /// newer version) or malformed JSON.
    #[error("unreadable {column} in row {key}: {value:?}")]
    Unreadable {
        column: &'static str,
        key: String,
        value: String,
    },
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

    /// Inserts a call's main record; returns once the row is committed, so a crash from here on
    /// leaves a row that [`Store::repair_open_cdrs`] closes. A `call_id` already stored is an error.
    pub async fn open_cdr(&self, open: &CdrOpen) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO cdrs (call_id, call_type, direction, customer_number, trunk_number, \
             service_number, started_at_ms, last_seen_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&open.call_id)
        .bind(open.call_type.code())
        .bind(open.direction.code())
        .bind(&open.customer_number)
        .bind(&open.trunk_number)
        .bind(&open.service_number)
        .bind(open.started_at_ms)
        .bind(open.started_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that an open call was alive at `at_ms` (answered, transferred…), so that a crash
    /// after this point is repaired with this time as its end. Closed rows are left alone.
    pub async fn touch_cdr(&self, call_id: &str, at_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE cdrs SET last_seen_ms = max(last_seen_ms, ?) \
             WHERE call_id = ? AND ended_at_ms IS NULL",
        )
        .bind(at_ms)
        .bind(call_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Closes an open main record. Returns `false`, changing nothing, when there is no open record
    /// with this id (never opened, already closed, or repaired after a crash): the first close wins.
    pub async fn close_cdr(&self, call_id: &str, close: &CdrClose) -> Result<bool, StoreError> {
        let trail = serde_json::to_string(&close.ivr_trail).expect("strings serialize");
        let inputs: Vec<StoredInput<'_>> = close
            .inputs
            .iter()
            .map(|(name, value)| StoredInput {
                name: name.into(),
                value: value.into(),
            })
            .collect();
        let inputs = serde_json::to_string(&inputs).expect("strings serialize");
        let r = sqlx::query(
            "UPDATE cdrs SET ended_at_ms = ?, last_seen_ms = max(last_seen_ms, ?), ring_at_ms = ?, \
             answered_at_ms = ?, result = ?, missed_reason = ?, ivr_trail = ?, inputs = ?, \
             flow = ?, flow_version = ?, hangup_by = ?, recording_path = ?, \
             recording_duration_ms = ? WHERE call_id = ? AND ended_at_ms IS NULL",
        )
        .bind(close.ended_at_ms)
        .bind(close.ended_at_ms)
        .bind(close.ring_at_ms)
        .bind(close.answered_at_ms)
        .bind(close.result.code())
        .bind(close.missed_reason.map(MissedReason::code))
        .bind(trail)
        .bind(inputs)
        .bind(&close.flow)
        .bind(&close.flow_version)
        .bind(close.hangup_by.map(HangupBy::code))
        .bind(&close.recording_path)
        .bind(close.recording_duration_ms)
        .bind(call_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Closes every record a crash left open, as result `failed`, reason `system_failure`, hung up
    /// by the system. The end is the last time the call was known alive (its start, or the latest
    /// [`Store::touch_cdr`]), never later than `now_ms`: a record claims no duration nobody saw.
    /// Returns how many rows were repaired. Run at start-up, before any call is accepted.
    pub async fn repair_open_cdrs(&self, now_ms: i64) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "UPDATE cdrs SET ended_at_ms = min(last_seen_ms, ?), result = ?, missed_reason = ?, \
             hangup_by = ? WHERE ended_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(CallResult::Failed.code())
        .bind(MissedReason::SystemFailure.code())
        .bind(HangupBy::System.code())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// One main record, open or closed.
    pub async fn cdr(&self, call_id: &str) -> Result<Option<CdrRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {CDR_COLUMNS} FROM cdrs WHERE call_id = ?"))
            .bind(call_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(cdr_row).transpose()
    }

    /// The `limit` most recently started main records, newest first.
    pub async fn recent_cdrs(&self, limit: u32) -> Result<Vec<CdrRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CDR_COLUMNS} FROM cdrs ORDER BY started_at_ms DESC, call_id DESC LIMIT ?"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(cdr_row).collect()
    }

    /// Appends to the IVR operation log; returns the entry's id.
    pub async fn log_flow_publication(&self, entry: &FlowPublication) -> Result<i64, StoreError> {
        let r = sqlx::query(
            "INSERT INTO flow_publications (at_ms, flow, version, actor, action, diff, errors) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(entry.at_ms)
        .bind(&entry.flow)
        .bind(&entry.version)
        .bind(&entry.actor)
        .bind(entry.action.code())
        .bind(&entry.diff)
        .bind(&entry.errors)
        .execute(&self.pool)
        .await?;
        Ok(r.last_insert_rowid())
    }

    /// The operation log of one flow, oldest first.
    pub async fn flow_publications(
        &self,
        flow: &str,
    ) -> Result<Vec<LoggedPublication>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at_ms, flow, version, actor, action, diff, errors \
             FROM flow_publications WHERE flow = ? ORDER BY id",
        )
        .bind(flow)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let action: String = row.try_get("action")?;
            let action =
                PublishAction::from_code(&action).ok_or_else(|| StoreError::Unreadable {
                    column: "flow_publications.action",
                    key: id.to_string(),
                    value: action,
                })?;
            out.push(LoggedPublication {
                id,
                entry: FlowPublication {
                    at_ms: row.try_get("at_ms")?,
                    flow: row.try_get("flow")?,
                    version: row.try_get("version")?,
                    actor: row.try_get("actor")?,
                    action,
                    diff: row.try_get("diff")?,
                    errors: row.try_get("errors")?,
                },
            });
        }
        Ok(out)
    }
}

/// A main record as stored: what was known when the call arrived, and what its end added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdrRow {
    pub open: CdrOpen,
    /// `None` while the call is up (or, before start-up repair, after a crash).
    pub close: Option<CdrClose>,
}

impl CdrRow {
    pub fn is_open(&self) -> bool {
        self.close.is_none()
    }

    /// From arrival to end.
    pub fn duration_ms(&self) -> Option<i64> {
        let close = self.close.as_ref()?;
        Some(close.ended_at_ms - self.open.started_at_ms)
    }

    /// From answer to end (通话时长); `None` when never answered.
    pub fn talk_ms(&self) -> Option<i64> {
        let close = self.close.as_ref()?;
        Some(close.ended_at_ms - close.answered_at_ms?)
    }
}

/// An entry of the IVR operation log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowPublication {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// The flow's name (its file stem).
    pub flow: String,
    /// The content hash of the file that was published or rejected.
    pub version: String,
    /// Who or what published: `file-watch`, `start-up`, an API user.
    pub actor: String,
    pub action: PublishAction,
    /// What changed against the version that was serving (unified diff); `None` for a first publish.
    pub diff: Option<String>,
    /// Why a rejected file was rejected, one error per line.
    pub errors: Option<String>,
}

/// A logged [`FlowPublication`] with its id (ascending in log order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedPublication {
    pub id: i64,
    pub entry: FlowPublication,
}

/// What a publish did. Stored as its code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PublishAction {
    /// The new version serves new calls.
    Published,
    /// The file was invalid; the previous version keeps serving.
    Rejected,
}

impl PublishAction {
    pub fn code(self) -> &'static str {
        match self {
            PublishAction::Published => "published",
            PublishAction::Rejected => "rejected",
        }
    }

    pub fn from_code(code: &str) -> Option<PublishAction> {
        match code {
            "published" => Some(PublishAction::Published),
            "rejected" => Some(PublishAction::Rejected),
            _ => None,
        }
    }
}

/// One collected input in the `inputs` JSON column.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredInput<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    value: std::borrow::Cow<'a, str>,
}

const CDR_COLUMNS: &str = "call_id, call_type, direction, customer_number, trunk_number, \
    service_number, started_at_ms, ring_at_ms, answered_at_ms, ended_at_ms, result, \
    missed_reason, ivr_trail, inputs, flow, flow_version, hangup_by, recording_path, \
    recording_duration_ms";

fn cdr_row(row: &sqlx::sqlite::SqliteRow) -> Result<CdrRow, StoreError> {
    let call_id: String = row.try_get("call_id")?;
    let unreadable = |column: &'static str, value: &str| StoreError::Unreadable {
        column,
        key: call_id.clone(),
        value: value.to_owned(),
    };
    // An enum column: NULL stays `None`, an unknown code is an error.
    macro_rules! code {
        ($column:literal, $ty:ty) => {
            match row.try_get::<Option<String>, _>($column)? {
                None => None,
                Some(text) => {
                    Some(<$ty>::from_code(&text).ok_or_else(|| unreadable($column, &text))?)
                }
            }
        };
    }
    let open = CdrOpen {
        call_id: call_id.clone(),
        call_type: code!("call_type", CallType).ok_or_else(|| unreadable("call_type", "NULL"))?,
        direction: code!("direction", Direction).ok_or_else(|| unreadable("direction", "NULL"))?,
        customer_number: row.try_get("customer_number")?,
        trunk_number: row.try_get("trunk_number")?,
        service_number: row.try_get("service_number")?,
        started_at_ms: row.try_get("started_at_ms")?,
    };
    let Some(ended_at_ms) = row.try_get::<Option<i64>, _>("ended_at_ms")? else {
        return Ok(CdrRow { open, close: None });
    };
    let trail_text: String = row.try_get("ivr_trail")?;
    let ivr_trail: Vec<String> =
        serde_json::from_str(&trail_text).map_err(|_| unreadable("ivr_trail", &trail_text))?;
    let inputs_text: String = row.try_get("inputs")?;
    let inputs: Vec<StoredInput<'_>> =
        serde_json::from_str(&inputs_text).map_err(|_| unreadable("inputs", &inputs_text))?;
    let close = CdrClose {
        ended_at_ms,
        ring_at_ms: row.try_get("ring_at_ms")?,
        answered_at_ms: row.try_get("answered_at_ms")?,
        result: code!("result", CallResult).ok_or_else(|| unreadable("result", "NULL"))?,
        missed_reason: code!("missed_reason", MissedReason),
        ivr_trail,
        inputs: inputs
            .into_iter()
            .map(|i| (i.name.into_owned(), i.value.into_owned()))
            .collect(),
        flow: row.try_get("flow")?,
        flow_version: row.try_get("flow_version")?,
        hangup_by: code!("hangup_by", HangupBy),
        recording_path: row.try_get("recording_path")?,
        recording_duration_ms: row.try_get("recording_duration_ms")?,
        ..CdrClose::default()
    };
    Ok(CdrRow {
        open,
        close: Some(close),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::TrailStep;

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

    fn inbound(call_id: &str, started_at_ms: i64) -> CdrOpen {
        CdrOpen {
            call_id: call_id.into(),
            call_type: CallType::Inbound,
            direction: Direction::Inbound,
            customer_number: "13800000001".into(),
            trunk_number: Some("02188880000".into()),
            service_number: Some("4000".into()),
            started_at_ms,
        }
    }

    async fn temp_store() -> (tempfile::TempDir, String, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/sb.db", dir.path().display());
        let store = Store::open(&url).await.unwrap();
        (dir, url, store)
    }

    #[tokio::test]
    async fn a_cdr_is_opened_closed_and_read_back() {
        let (_dir, url, store) = temp_store().await;
        let open = inbound("c-1", 1_700_000_000_000);
        store.open_cdr(&open).await.unwrap();
        // Durable once awaited: another connection (a restarted process) sees the open row.
        let reopened = Store::open(&url).await.unwrap();
        let row = reopened.cdr("c-1").await.unwrap().unwrap();
        assert_eq!(
            row,
            CdrRow {
                open: open.clone(),
                close: None
            }
        );
        assert!(row.is_open());
        assert_eq!(row.duration_ms(), None);
        // Opening the same call twice is refused.
        assert!(store.open_cdr(&open).await.is_err());

        let id_card = "110101199003071234";
        let close = CdrClose {
            ended_at_ms: open.started_at_ms + 95_000,
            ring_at_ms: Some(open.started_at_ms + 20_000),
            answered_at_ms: Some(open.started_at_ms + 25_000),
            result: CallResult::Answered,
            missed_reason: None,
            ivr_trail: vec![
                "main:hours→open".into(),
                "main:menu→1".into(),
                "main:ask_id→ok".into(),
                "main:sales→answered_then_hangup".into(),
            ],
            inputs: vec![
                ("id_card".into(), crate::cdr::mask(id_card)),
                ("order \"no\"".into(), "42#".into()),
            ],
            flow: Some("main".into()),
            flow_version: Some("9f86d081884c7d65".into()),
            hangup_by: Some(HangupBy::Caller),
            recording_path: Some("data/recordings/c-1.wav".into()),
            recording_duration_ms: Some(70_000),
        };
        assert!(store.close_cdr("c-1", &close).await.unwrap());
        let row = store.cdr("c-1").await.unwrap().unwrap();
        assert_eq!(row.close.as_ref(), Some(&close));
        assert_eq!(row.duration_ms(), Some(95_000));
        assert_eq!(row.talk_ms(), Some(70_000));
        // The trail reads back as the steps it was written from.
        let steps: Vec<TrailStep> = row
            .close
            .unwrap()
            .ivr_trail
            .iter()
            .map(|e| TrailStep::parse(e).unwrap())
            .collect();
        assert_eq!(steps[1].node, "menu");
        assert_eq!(steps[1].exit.as_deref(), Some("1"));
        // The second close loses: the first end is the record.
        let later = CdrClose {
            ended_at_ms: close.ended_at_ms + 1,
            ..close.clone()
        };
        assert!(!store.close_cdr("c-1", &later).await.unwrap());
        assert!(!store.close_cdr("no-such-call", &later).await.unwrap());
        assert_eq!(
            store
                .cdr("c-1")
                .await
                .unwrap()
                .unwrap()
                .close
                .unwrap()
                .ended_at_ms,
            close.ended_at_ms
        );
        assert_eq!(store.cdr("no-such-call").await.unwrap(), None);

        // The sensitive input is masked in the stored JSON: the clear value is nowhere in the row.
        let (inputs, trail): (String, String) =
            sqlx::query_as("SELECT inputs, ivr_trail FROM cdrs WHERE call_id = 'c-1'")
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert!(!inputs.contains(id_card), "{inputs}");
        assert!(inputs.contains("11**************34"), "{inputs}");
        // Plain JSON that SQL can query.
        let second: String = sqlx::query_scalar("SELECT json_extract(?, '$[1]')")
            .bind(&trail)
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(second, "main:menu→1");
    }

    #[tokio::test]
    async fn a_missed_call_keeps_result_and_reason_apart() {
        let (_dir, _url, store) = temp_store().await;
        let open = CdrOpen {
            trunk_number: None,
            service_number: None,
            ..inbound("c-2", 1_000)
        };
        store.open_cdr(&open).await.unwrap();
        let reason = MissedReason::Blacklisted;
        let close = CdrClose {
            ended_at_ms: 1_200,
            result: reason.result(),
            missed_reason: Some(reason),
            hangup_by: Some(HangupBy::System),
            ..CdrClose::default()
        };
        assert!(store.close_cdr("c-2", &close).await.unwrap());
        let row = store.cdr("c-2").await.unwrap().unwrap();
        let got = row.close.unwrap();
        assert_eq!(got.result, CallResult::SystemNotAnswered);
        assert_eq!(got.missed_reason, Some(MissedReason::Blacklisted));
        assert!(got.ivr_trail.is_empty() && got.inputs.is_empty());
        assert_eq!(row.open.trunk_number, None);
        let (result, reason): (String, String) =
            sqlx::query_as("SELECT result, missed_reason FROM cdrs WHERE call_id = 'c-2'")
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(
            (result.as_str(), reason.as_str()),
            ("system_not_answered", "blacklisted")
        );
    }

    #[tokio::test]
    async fn start_up_repairs_records_a_crash_left_open() {
        let (_dir, url, store) = temp_store().await;
        store
            .open_cdr(&inbound("up-untouched", 10_000))
            .await
            .unwrap();
        store
            .open_cdr(&inbound("up-touched", 20_000))
            .await
            .unwrap();
        store.touch_cdr("up-touched", 50_000).await.unwrap();
        // Time never goes back.
        store.touch_cdr("up-touched", 30_000).await.unwrap();
        store.open_cdr(&inbound("closed", 30_000)).await.unwrap();
        let close = CdrClose {
            ended_at_ms: 31_000,
            result: CallResult::NotAnswered,
            missed_reason: Some(MissedReason::HungUpInIvr),
            ..CdrClose::default()
        };
        store.close_cdr("closed", &close).await.unwrap();
        // The process dies here; the next one starts.
        drop(store);
        let store = Store::open(&url).await.unwrap();
        assert_eq!(store.repair_open_cdrs(90_000).await.unwrap(), 2);
        assert_eq!(store.repair_open_cdrs(90_000).await.unwrap(), 0);
        let repaired = |ended_at_ms| CdrClose {
            ended_at_ms,
            result: CallResult::Failed,
            missed_reason: Some(MissedReason::SystemFailure),
            hangup_by: Some(HangupBy::System),
            ..CdrClose::default()
        };
        let got = store.cdr("up-untouched").await.unwrap().unwrap().close;
        assert_eq!(got, Some(repaired(10_000)));
        let got = store.cdr("up-touched").await.unwrap().unwrap().close;
        assert_eq!(got, Some(repaired(50_000)));
        assert_eq!(
            store.cdr("closed").await.unwrap().unwrap().close,
            Some(close)
        );
        // A repaired record is closed: a late close from nowhere can not rewrite it.
        assert!(!store.close_cdr("up-touched", &repaired(1)).await.unwrap());
        let recent: Vec<String> = store
            .recent_cdrs(2)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.open.call_id)
            .collect();
        assert_eq!(recent, ["closed", "up-touched"]);
    }

    #[tokio::test]
    async fn unknown_codes_are_reported_not_guessed() {
        let (_dir, _url, store) = temp_store().await;
        store.open_cdr(&inbound("c-3", 1)).await.unwrap();
        sqlx::query("UPDATE cdrs SET call_type = 'fax' WHERE call_id = 'c-3'")
            .execute(store.pool())
            .await
            .unwrap();
        let err = store.cdr("c-3").await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Unreadable { column: "call_type", value, .. } if value == "fax"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn flow_publications_are_logged_per_flow_in_order() {
        let (_dir, _url, store) = temp_store().await;
        let first = FlowPublication {
            at_ms: 1_000,
            flow: "main".into(),
            version: "aaaa".into(),
            actor: "start-up".into(),
            action: PublishAction::Published,
            diff: None,
            errors: None,
        };
        let rejected = FlowPublication {
            at_ms: 2_000,
            version: "bbbb".into(),
            actor: "file-watch".into(),
            action: PublishAction::Rejected,
            diff: Some("-  timeout_s: 5\n+  timeout_s: x\n".into()),
            errors: Some("ivr-flows/main.yaml:7:14: menu.timeout_s: expected a number".into()),
            ..first.clone()
        };
        let other = FlowPublication {
            flow: "support".into(),
            ..first.clone()
        };
        let a = store.log_flow_publication(&first).await.unwrap();
        store.log_flow_publication(&other).await.unwrap();
        let b = store.log_flow_publication(&rejected).await.unwrap();
        assert!(a < b);
        let log = store.flow_publications("main").await.unwrap();
        assert_eq!(
            log,
            [
                LoggedPublication {
                    id: a,
                    entry: first
                },
                LoggedPublication {
                    id: b,
                    entry: rejected
                },
            ]
        );
        assert!(store.flow_publications("nope").await.unwrap().is_empty());
    }
}
