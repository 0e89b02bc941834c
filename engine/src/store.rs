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
//!
//! A call's sub-records (legs, [`Store::upsert_cdr_leg`]) are written when a leg starts and again
//! when it ends, after the main record's open; the same repair closes the legs a crash left open.
use crate::cdr::{
    CallResult, CallType, CdrClose, CdrLeg, CdrOpen, Direction, HangupBy, LegKind, MissedReason,
};
use crate::registrar::{Binding, Change};
use crate::sip::transport::Transport;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
pub mod blacklist;
pub mod idempotency;
pub mod marks;
pub mod reports;
pub mod search;
pub mod tokens;

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
    /// A sub-record written before (or without) its main record: the call code must open the
    /// main record first.
    #[error("leg {leg_id}: no call record {call_id}")]
    NoSuchCall { leg_id: String, call_id: String },
    /// A sub-record written again under another call than the one it was first written for.
    #[error("leg {leg_id} belongs to another call than {call_id}")]
    LegOfAnotherCall { leg_id: String, call_id: String },
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
        let satisfaction: Vec<StoredAnswer> = close
            .satisfaction
            .iter()
            .map(|&(question, score)| StoredAnswer { question, score })
            .collect();
        let satisfaction = serde_json::to_string(&satisfaction).expect("numbers serialize");
        let r = sqlx::query(
            "UPDATE cdrs SET ended_at_ms = ?, last_seen_ms = max(last_seen_ms, ?), ring_at_ms = ?, \
             answered_at_ms = ?, result = ?, missed_reason = ?, ivr_trail = ?, inputs = ?, \
             flow = ?, flow_version = ?, hangup_by = ?, recording_path = ?, \
             recording_duration_ms = ?, agent = ?, queue = ?, queue_wait_ms = ?, talk_ms = ?, \
             wrap_up_ms = ?, satisfaction = ?, caller_id = ? \
             WHERE call_id = ? AND ended_at_ms IS NULL",
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
        .bind(&close.agent)
        .bind(&close.queue)
        .bind(close.queue_wait_ms)
        .bind(close.talk_ms)
        .bind(close.wrap_up_ms)
        .bind(satisfaction)
        .bind(&close.caller_id)
        .bind(call_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Closes every record a crash left open, as result `failed`, reason `system_failure`, hung up
    /// by the system. The end is the last time the call was known alive (its start, or the latest
    /// [`Store::touch_cdr`] or leg write), never later than `now_ms`: a record claims no duration
    /// nobody saw.
    ///
    /// Legs left open end when their main record ended (or when they were last seen, if that is
    /// later: their start or answer), hung up by the system. A leg that was answered keeps result
    /// `answered`, since the parties did talk; any other is `failed` with `system_failure`. This
    /// also closes legs whose end was lost although their main record was closed.
    ///
    /// Returns how many main records were repaired. Run at start-up, before any call is accepted.
    pub async fn repair_open_cdrs(&self, now_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let calls = sqlx::query(
            "UPDATE cdrs SET ended_at_ms = min(last_seen_ms, ?), result = ?, missed_reason = ?, \
             hangup_by = ? WHERE ended_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(CallResult::Failed.code())
        .bind(MissedReason::SystemFailure.code())
        .bind(HangupBy::System.code())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // Every main record is closed now, so each open leg has an end to take.
        let legs = sqlx::query(
            "UPDATE cdr_legs SET \
               ended_at_ms = max(started_at_ms, coalesce(answered_at_ms, started_at_ms), \
                 coalesce((SELECT c.ended_at_ms FROM cdrs c WHERE c.call_id = cdr_legs.call_id), \
                          started_at_ms)), \
               result = CASE WHEN answered_at_ms IS NULL THEN ? ELSE ? END, \
               reason = CASE WHEN answered_at_ms IS NULL THEN ? ELSE NULL END, \
               hangup_by = ? \
             WHERE ended_at_ms IS NULL",
        )
        .bind(CallResult::Failed.code())
        .bind(CallResult::Answered.code())
        .bind(MissedReason::SystemFailure.code())
        .bind(HangupBy::System.code())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if legs > 0 {
            tracing::warn!(legs, "closed call legs left open by a crash");
        }
        Ok(calls)
    }

    /// Writes a sub-record: inserted the first time its `leg_id` is seen (the leg started),
    /// updated by every later write (it was answered, it ended). A later write never erases what
    /// an earlier one knew: a `None` in it leaves the stored answer, end, result, reason, agent,
    /// queue, hangup side, caller ID and trunk as they were, and the start stays the earliest
    /// written.
    /// Kind and peer are taken from the latest write.
    ///
    /// The main record must exist ([`StoreError::NoSuchCall`] otherwise) and a leg never moves to
    /// another call ([`StoreError::LegOfAnotherCall`]). While the main record is open, the leg's
    /// latest time also counts as a sign of life for start-up repair, as [`Store::touch_cdr`].
    pub async fn upsert_cdr_leg(&self, leg: &CdrLeg) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let written = sqlx::query(
            "INSERT INTO cdr_legs (leg_id, call_id, kind, peer, started_at_ms, answered_at_ms, \
             ended_at_ms, result, reason, agent, queue, hangup_by, caller_id, trunk) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (leg_id) DO UPDATE SET \
               kind = excluded.kind, \
               peer = excluded.peer, \
               started_at_ms = min(cdr_legs.started_at_ms, excluded.started_at_ms), \
               answered_at_ms = coalesce(excluded.answered_at_ms, cdr_legs.answered_at_ms), \
               ended_at_ms = coalesce(excluded.ended_at_ms, cdr_legs.ended_at_ms), \
               result = coalesce(excluded.result, cdr_legs.result), \
               reason = coalesce(excluded.reason, cdr_legs.reason), \
               agent = coalesce(excluded.agent, cdr_legs.agent), \
               queue = coalesce(excluded.queue, cdr_legs.queue), \
               hangup_by = coalesce(excluded.hangup_by, cdr_legs.hangup_by), \
               caller_id = coalesce(excluded.caller_id, cdr_legs.caller_id), \
               trunk = coalesce(excluded.trunk, cdr_legs.trunk) \
             WHERE cdr_legs.call_id = excluded.call_id",
        )
        .bind(&leg.leg_id)
        .bind(&leg.call_id)
        .bind(leg.kind.code())
        .bind(&leg.peer)
        .bind(leg.started_at_ms)
        .bind(leg.answered_at_ms)
        .bind(leg.ended_at_ms)
        .bind(leg.result.map(CallResult::code))
        .bind(leg.reason.map(MissedReason::code))
        .bind(&leg.agent)
        .bind(&leg.queue)
        .bind(leg.hangup_by.map(HangupBy::code))
        .bind(&leg.caller_id)
        .bind(&leg.trunk)
        .execute(&mut *tx)
        .await;
        let written = match written {
            Ok(r) => r.rows_affected(),
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                return Err(StoreError::NoSuchCall {
                    leg_id: leg.leg_id.clone(),
                    call_id: leg.call_id.clone(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        if written == 0 {
            // The conflict's WHERE refused the update: the leg is stored under another call.
            return Err(StoreError::LegOfAnotherCall {
                leg_id: leg.leg_id.clone(),
                call_id: leg.call_id.clone(),
            });
        }
        let latest = [leg.answered_at_ms, leg.ended_at_ms]
            .into_iter()
            .flatten()
            .fold(leg.started_at_ms, i64::max);
        sqlx::query(
            "UPDATE cdrs SET last_seen_ms = max(last_seen_ms, ?) \
             WHERE call_id = ? AND ended_at_ms IS NULL",
        )
        .bind(latest)
        .bind(&leg.call_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The talk seconds of `trunk`'s legs answered at or after `since_ms` and ended: what the
    /// trunk's quota has used this period, for seeding it at start-up
    /// ([`crate::trunk::Quota::seed`]).
    ///
    /// Each leg counts from its answer to its end, rounded up to the second, as the running
    /// count does when a leg ends, so the seeded and the running count agree. A leg still up
    /// (none after start-up repair) counts once it ends.
    pub async fn trunk_usage_since(&self, trunk: &str, since_ms: i64) -> Result<u64, StoreError> {
        let seconds: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum((max(ended_at_ms - answered_at_ms, 0) + 999) / 1000), 0) \
             FROM cdr_legs \
             WHERE trunk = ? AND answered_at_ms >= ? AND ended_at_ms IS NOT NULL",
        )
        .bind(trunk)
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(seconds.max(0) as u64)
    }

    /// One main record, open or closed.
    pub async fn cdr(&self, call_id: &str) -> Result<Option<CdrRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {CDR_COLUMNS} FROM cdrs WHERE call_id = ?"))
            .bind(call_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(mut row) = row.as_ref().map(cdr_row).transpose()? else {
            return Ok(None);
        };
        let legs = sqlx::query(&format!(
            "SELECT {LEG_COLUMNS} FROM cdr_legs WHERE call_id = ? \
             ORDER BY started_at_ms, leg_id"
        ))
        .bind(call_id)
        .fetch_all(&self.pool)
        .await?;
        row.legs = legs.iter().map(leg_row).collect::<Result<_, _>>()?;
        Ok(Some(row))
    }

    /// The `limit` most recently started main records, newest first.
    pub async fn recent_cdrs(&self, limit: u32) -> Result<Vec<CdrRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CDR_COLUMNS} FROM cdrs ORDER BY started_at_ms DESC, call_id DESC LIMIT ?"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut page: Vec<CdrRow> = rows.iter().map(cdr_row).collect::<Result<_, _>>()?;
        if page.is_empty() {
            return Ok(page);
        }
        // The page's legs in one query: the ids go in as one JSON array, so any page size is a
        // single bound parameter.
        let ids: Vec<&str> = page.iter().map(|r| r.open.call_id.as_str()).collect();
        let ids = serde_json::to_string(&ids).expect("strings serialize");
        let legs = sqlx::query(&format!(
            "SELECT {LEG_COLUMNS} FROM cdr_legs \
             WHERE call_id IN (SELECT value FROM json_each(?)) \
             ORDER BY call_id, started_at_ms, leg_id"
        ))
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        let mut by_call: HashMap<String, Vec<CdrLeg>> = HashMap::new();
        for leg in legs.iter().map(leg_row) {
            let leg = leg?;
            by_call.entry(leg.call_id.clone()).or_default().push(leg);
        }
        for row in &mut page {
            row.legs = by_call.remove(&row.open.call_id).unwrap_or_default();
        }
        Ok(page)
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
    /// The sub-records, ordered by start (then leg id).
    pub legs: Vec<CdrLeg>,
    /// The record's mark (标记), when someone marked it.
    pub mark: Option<marks::CdrMark>,
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

    /// Talk time (通话时长): the ACD's sum over the answered legs when it gave one, else from
    /// answer to end; `None` when never answered.
    pub fn talk_ms(&self) -> Option<i64> {
        let close = self.close.as_ref()?;
        close
            .talk_ms
            .or_else(|| Some(close.ended_at_ms - close.answered_at_ms?))
    }

    /// Ring time (振铃时长): from the ring to the answer, or to the end when never answered;
    /// `None` when nothing rang.
    pub fn ring_ms(&self) -> Option<i64> {
        let close = self.close.as_ref()?;
        let ring = close.ring_at_ms?;
        Some(close.answered_at_ms.unwrap_or(close.ended_at_ms) - ring)
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

/// One satisfaction answer in the `satisfaction` JSON column.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredAnswer {
    question: u8,
    score: u8,
}

const CDR_COLUMNS: &str = "call_id, call_type, direction, customer_number, trunk_number, \
    service_number, started_at_ms, ring_at_ms, answered_at_ms, ended_at_ms, result, \
    missed_reason, ivr_trail, inputs, flow, flow_version, hangup_by, recording_path, \
    recording_duration_ms, agent, queue, queue_wait_ms, talk_ms, wrap_up_ms, satisfaction, \
    caller_id, marked, mark_note, marked_by, marked_at_ms";

const LEG_COLUMNS: &str = "leg_id, call_id, kind, peer, started_at_ms, answered_at_ms, \
    ended_at_ms, result, reason, agent, queue, hangup_by, caller_id, trunk";

/// An enum column: NULL stays `None`, an unknown code is [`StoreError::Unreadable`].
fn code_column<T>(
    row: &sqlx::sqlite::SqliteRow,
    column: &'static str,
    key: &str,
    from_code: fn(&str) -> Option<T>,
) -> Result<Option<T>, StoreError> {
    match row.try_get::<Option<String>, _>(column)? {
        None => Ok(None),
        Some(text) => from_code(&text)
            .map(Some)
            .ok_or_else(|| StoreError::Unreadable {
                column,
                key: key.to_owned(),
                value: text,
            }),
    }
}

fn leg_row(row: &sqlx::sqlite::SqliteRow) -> Result<CdrLeg, StoreError> {
    let leg_id: String = row.try_get("leg_id")?;
    let kind = code_column(row, "kind", &leg_id, LegKind::from_code);
    Ok(CdrLeg {
        call_id: row.try_get("call_id")?,
        kind: kind?.ok_or_else(|| StoreError::Unreadable {
            column: "kind",
            key: leg_id.clone(),
            value: "NULL".into(),
        })?,
        peer: row.try_get("peer")?,
        started_at_ms: row.try_get("started_at_ms")?,
        answered_at_ms: row.try_get("answered_at_ms")?,
        ended_at_ms: row.try_get("ended_at_ms")?,
        result: code_column(row, "result", &leg_id, CallResult::from_code)?,
        reason: code_column(row, "reason", &leg_id, MissedReason::from_code)?,
        agent: row.try_get("agent")?,
        queue: row.try_get("queue")?,
        hangup_by: code_column(row, "hangup_by", &leg_id, HangupBy::from_code)?,
        caller_id: row.try_get("caller_id")?,
        trunk: row.try_get("trunk")?,
        leg_id,
    })
}

fn cdr_row(row: &sqlx::sqlite::SqliteRow) -> Result<CdrRow, StoreError> {
    let call_id: String = row.try_get("call_id")?;
    let unreadable = |column: &'static str, value: &str| StoreError::Unreadable {
        column,
        key: call_id.clone(),
        value: value.to_owned(),
    };
    macro_rules! code {
        ($column:literal, $ty:ty) => {
            code_column(row, $column, &call_id, <$ty>::from_code)?
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
        return Ok(CdrRow {
            open,
            close: None,
            legs: Vec::new(),
            mark: marks::mark_of(row)?,
        });
    };
    let trail_text: String = row.try_get("ivr_trail")?;
    let ivr_trail: Vec<String> =
        serde_json::from_str(&trail_text).map_err(|_| unreadable("ivr_trail", &trail_text))?;
    let inputs_text: String = row.try_get("inputs")?;
    let inputs: Vec<StoredInput<'_>> =
        serde_json::from_str(&inputs_text).map_err(|_| unreadable("inputs", &inputs_text))?;
    let satisfaction_text: String = row.try_get("satisfaction")?;
    let satisfaction: Vec<StoredAnswer> = serde_json::from_str(&satisfaction_text)
        .map_err(|_| unreadable("satisfaction", &satisfaction_text))?;
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
        agent: row.try_get("agent")?,
        queue: row.try_get("queue")?,
        queue_wait_ms: row.try_get("queue_wait_ms")?,
        talk_ms: row.try_get("talk_ms")?,
        wrap_up_ms: row.try_get("wrap_up_ms")?,
        satisfaction: satisfaction
            .into_iter()
            .map(|a| (a.question, a.score))
            .collect(),
        caller_id: row.try_get("caller_id")?,
    };
    Ok(CdrRow {
        open,
        close: Some(close),
        legs: Vec::new(),
        mark: marks::mark_of(row)?,
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
                close: None,
                legs: Vec::new(),
                mark: None,
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
            agent: Some("8001".into()),
            queue: Some("sales".into()),
            queue_wait_ms: Some(12_000),
            talk_ms: None,
            wrap_up_ms: Some(30_000),
            satisfaction: vec![(1, 5), (2, 3)],
            caller_id: Some("02188880001".into()),
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
        let (satisfaction, agent): (String, String) =
            sqlx::query_as("SELECT satisfaction, agent FROM cdrs WHERE call_id = 'c-1'")
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(
            satisfaction,
            r#"[{"question":1,"score":5},{"question":2,"score":3}]"#
        );
        assert_eq!(agent, "8001");
    }

    fn agent_leg(leg_id: &str, call_id: &str, agent: &str, started_at_ms: i64) -> CdrLeg {
        CdrLeg {
            leg_id: leg_id.into(),
            call_id: call_id.into(),
            kind: LegKind::Agent,
            peer: agent.into(),
            started_at_ms,
            answered_at_ms: None,
            ended_at_ms: None,
            result: None,
            reason: None,
            agent: Some(agent.into()),
            queue: Some("sales".into()),
            hangup_by: None,
            caller_id: None,
            trunk: None,
        }
    }

    #[tokio::test]
    async fn legs_are_written_at_start_and_end_and_read_with_their_call() {
        let (_dir, url, store) = temp_store().await;
        store.open_cdr(&inbound("c-1", 1_000)).await.unwrap();
        // The first agent rings out; the second answers and the caller hangs up.
        let rang_out = agent_leg("l-1", "c-1", "8002", 2_000);
        store.upsert_cdr_leg(&rang_out).await.unwrap();
        let answered = agent_leg("l-2", "c-1", "8001", 20_000);
        store.upsert_cdr_leg(&answered).await.unwrap();
        // Started, not ended: the record shows both legs up, in start order.
        let row = store.cdr("c-1").await.unwrap().unwrap();
        assert_eq!(row.legs, [rang_out.clone(), answered.clone()]);

        let rang_out = CdrLeg {
            ended_at_ms: Some(17_000),
            result: Some(MissedReason::AgentNoAnswer.result()),
            reason: Some(MissedReason::AgentNoAnswer),
            hangup_by: Some(HangupBy::System),
            ..rang_out
        };
        store.upsert_cdr_leg(&rang_out).await.unwrap();
        let answered_at = CdrLeg {
            answered_at_ms: Some(25_000),
            ..answered.clone()
        };
        store.upsert_cdr_leg(&answered_at).await.unwrap();
        // The end as the call code sends it may not repeat what it sent before (the answer time,
        // the queue): the stored values stay.
        let ended = CdrLeg {
            ended_at_ms: Some(95_000),
            result: Some(CallResult::Answered),
            hangup_by: Some(HangupBy::Caller),
            queue: None,
            ..answered
        };
        store.upsert_cdr_leg(&ended).await.unwrap();
        let want_answered = CdrLeg {
            answered_at_ms: Some(25_000),
            queue: Some("sales".into()),
            ..ended.clone()
        };
        // Read back by another connection: durable once awaited.
        let reopened = Store::open(&url).await.unwrap();
        let row = reopened.cdr("c-1").await.unwrap().unwrap();
        assert_eq!(row.legs, [rang_out.clone(), want_answered.clone()]);
        assert_eq!(row.legs[1].talk_ms(), Some(70_000));
        assert_eq!(row.legs[0].ring_ms(), Some(15_000));

        // A duplicate start written late (a retry) does not reopen an ended leg.
        store
            .upsert_cdr_leg(&agent_leg("l-1", "c-1", "8002", 2_000))
            .await
            .unwrap();
        let row = store.cdr("c-1").await.unwrap().unwrap();
        assert_eq!(row.legs[0], rang_out);
        let codes: (String, String, String) =
            sqlx::query_as("SELECT kind, result, reason FROM cdr_legs WHERE leg_id = 'l-1'")
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(
            codes,
            (
                "agent".to_owned(),
                "not_answered".to_owned(),
                "agent_no_answer".to_owned()
            )
        );
    }

    /// 0002 is applied in running databases: their records and legs must read back once 0003
    /// adds its columns, with the new fields unknown rather than invented.
    #[tokio::test]
    async fn records_written_before_the_acd_fields_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/sb.db", dir.path().display());
        let options = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        let before = sqlx::migrate::Migrator {
            migrations: MIGRATOR
                .iter()
                .filter(|m| m.version <= 2)
                .cloned()
                .collect::<Vec<_>>()
                .into(),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        before.run(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO cdrs (call_id, call_type, direction, customer_number, started_at_ms, \
             last_seen_ms, ended_at_ms, result, missed_reason) \
             VALUES ('old', 'inbound', 'inbound', '13800000001', 1000, 1000, 5000, \
             'not_answered', 'hung_up_in_ivr'); \
             INSERT INTO cdr_legs (leg_id, call_id, kind, peer, started_at_ms, ended_at_ms, \
             result, reason) VALUES ('old-leg', 'old', 'agent', '8001', 2000, 4000, \
             'not_answered', 'agent_no_answer')",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let store = Store::open(&url).await.unwrap();
        let row = store.cdr("old").await.unwrap().unwrap();
        let close = row.close.unwrap();
        assert_eq!(close.missed_reason, Some(MissedReason::HungUpInIvr));
        assert_eq!((close.agent, close.queue_wait_ms), (None, None));
        assert!(close.satisfaction.is_empty());
        assert_eq!(
            row.legs,
            [CdrLeg {
                ended_at_ms: Some(4_000),
                result: Some(CallResult::NotAnswered),
                reason: Some(MissedReason::AgentNoAnswer),
                agent: None,
                queue: None,
                ..agent_leg("old-leg", "old", "8001", 2_000)
            }]
        );
    }

    #[tokio::test]
    async fn a_leg_without_its_call_is_a_typed_error() {
        let (_dir, _url, store) = temp_store().await;
        let err = store
            .upsert_cdr_leg(&agent_leg("l-1", "no-such-call", "8001", 1_000))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::NoSuchCall { leg_id, call_id }
                if leg_id == "l-1" && call_id == "no-such-call"),
            "{err}"
        );
        // A leg keeps its call: the same id under another call is refused, and changes nothing.
        store.open_cdr(&inbound("c-1", 1_000)).await.unwrap();
        store.open_cdr(&inbound("c-2", 1_000)).await.unwrap();
        store
            .upsert_cdr_leg(&agent_leg("l-1", "c-1", "8001", 1_000))
            .await
            .unwrap();
        let err = store
            .upsert_cdr_leg(&CdrLeg {
                ended_at_ms: Some(9_000),
                ..agent_leg("l-1", "c-2", "8001", 1_000)
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::LegOfAnotherCall { call_id, .. } if call_id == "c-2"),
            "{err}"
        );
        let row = store.cdr("c-1").await.unwrap().unwrap();
        assert_eq!(row.legs[0].ended_at_ms, None);
        assert!(store.cdr("c-2").await.unwrap().unwrap().legs.is_empty());
    }

    #[tokio::test]
    async fn recent_records_carry_their_own_legs() {
        let (_dir, _url, store) = temp_store().await;
        for (i, call) in ["a", "b", "c"].into_iter().enumerate() {
            store
                .open_cdr(&inbound(call, 1_000 * i as i64))
                .await
                .unwrap();
        }
        // Written out of start order, across calls.
        for (leg, call, started) in [
            ("b-2", "b", 1_500),
            ("a-1", "a", 100),
            ("b-1", "b", 1_200),
            ("c-1", "c", 2_100),
        ] {
            store
                .upsert_cdr_leg(&agent_leg(leg, call, "8001", started))
                .await
                .unwrap();
        }
        let page = store.recent_cdrs(2).await.unwrap();
        let got: Vec<(&str, Vec<&str>)> = page
            .iter()
            .map(|r| {
                (
                    r.open.call_id.as_str(),
                    r.legs.iter().map(|l| l.leg_id.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(got, [("c", vec!["c-1"]), ("b", vec!["b-1", "b-2"])]);
        assert!(store.recent_cdrs(0).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn start_up_repairs_legs_a_crash_left_open() {
        let (_dir, url, store) = temp_store().await;
        store.open_cdr(&inbound("up", 10_000)).await.unwrap();
        // Ringing when the process died.
        store
            .upsert_cdr_leg(&agent_leg("ringing", "up", "8002", 12_000))
            .await
            .unwrap();
        // Talking when the process died; the answer is the call's last sign of life.
        store
            .upsert_cdr_leg(&CdrLeg {
                answered_at_ms: Some(40_000),
                ..agent_leg("talking", "up", "8001", 30_000)
            })
            .await
            .unwrap();
        // A call that ended normally, but whose leg end was lost in the crash.
        store.open_cdr(&inbound("closed", 50_000)).await.unwrap();
        store
            .upsert_cdr_leg(&agent_leg("lost-end", "closed", "8003", 51_000))
            .await
            .unwrap();
        let close = CdrClose {
            ended_at_ms: 60_000,
            result: CallResult::NotAnswered,
            missed_reason: Some(MissedReason::AbandonedInQueue),
            ..CdrClose::default()
        };
        assert!(store.close_cdr("closed", &close).await.unwrap());
        drop(store);

        let store = Store::open(&url).await.unwrap();
        assert_eq!(store.repair_open_cdrs(90_000).await.unwrap(), 1);
        let row = store.cdr("up").await.unwrap().unwrap();
        assert_eq!(row.close.as_ref().unwrap().ended_at_ms, 40_000);
        let repaired = |leg: CdrLeg, ended_at_ms, result, reason| CdrLeg {
            ended_at_ms: Some(ended_at_ms),
            result: Some(result),
            reason,
            hangup_by: Some(HangupBy::System),
            ..leg
        };
        assert_eq!(
            row.legs,
            [
                repaired(
                    agent_leg("ringing", "up", "8002", 12_000),
                    40_000,
                    CallResult::Failed,
                    Some(MissedReason::SystemFailure)
                ),
                repaired(
                    CdrLeg {
                        answered_at_ms: Some(40_000),
                        ..agent_leg("talking", "up", "8001", 30_000)
                    },
                    40_000,
                    CallResult::Answered,
                    None
                ),
            ]
        );
        let row = store.cdr("closed").await.unwrap().unwrap();
        assert_eq!(row.close, Some(close));
        assert_eq!(
            row.legs,
            [repaired(
                agent_leg("lost-end", "closed", "8003", 51_000),
                60_000,
                CallResult::Failed,
                Some(MissedReason::SystemFailure)
            )]
        );
        // Nothing is left open: a second start repairs nothing.
        assert_eq!(store.repair_open_cdrs(90_000).await.unwrap(), 0);
        let open_legs: i64 =
            sqlx::query_scalar("SELECT count(*) FROM cdr_legs WHERE ended_at_ms IS NULL")
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(open_legs, 0);
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
    /// A trunk's quota is seeded at start-up from this sum: only its own legs count, only
    /// answered and ended ones, only those answered since the period began, each rounded up
    /// to the second as the running count rounds it.
    #[tokio::test]
    async fn trunk_usage_sums_the_talk_of_one_trunks_legs_this_period() {
        let (_dir, url, store) = temp_store().await;
        let period = 1_772_323_200_000; // 2026-03-01T00:00:00Z
        store
            .open_cdr(&inbound("c-1", period - 60_000))
            .await
            .unwrap();
        let mut n = 0;
        let mut out = |trunk: &str, answered: Option<i64>, ended: Option<i64>| {
            n += 1;
            CdrLeg {
                kind: LegKind::Outbound,
                peer: "+8613800000000".into(),
                agent: None,
                queue: None,
                answered_at_ms: answered,
                ended_at_ms: ended,
                trunk: Some(trunk.into()),
                ..agent_leg(&format!("l-{n}"), "c-1", "", period - 60_000)
            }
        };
        let legs = [
            // Answered before the period began: last month's minutes.
            out("carrier", Some(period - 50_000), Some(period + 10_000)),
            // 30.2 s counts as 31 s.
            out("carrier", Some(period + 1_000), Some(period + 31_200)),
            // Exactly 10 s.
            out("carrier", Some(period + 40_000), Some(period + 50_000)),
            // Rang out: no talk.
            out("carrier", None, Some(period + 70_000)),
            // Another trunk's call.
            out("backup", Some(period + 1_000), Some(period + 601_000)),
            // Still up.
            out("carrier", Some(period + 80_000), None),
        ];
        for leg in &legs {
            store.upsert_cdr_leg(leg).await.unwrap();
        }
        // An agent's leg has no trunk.
        let agent = CdrLeg {
            answered_at_ms: Some(period + 1_000),
            ended_at_ms: Some(period + 100_000),
            ..agent_leg("l-agent", "c-1", "8001", period)
        };
        store.upsert_cdr_leg(&agent).await.unwrap();
        // A later write that does not name the trunk keeps it.
        store
            .upsert_cdr_leg(&CdrLeg {
                trunk: None,
                ..legs[2].clone()
            })
            .await
            .unwrap();
        let row = store.cdr("c-1").await.unwrap().unwrap();
        assert_eq!(row.legs[2].trunk.as_deref(), Some("carrier"));
        assert_eq!(row.legs.iter().filter(|l| l.trunk.is_none()).count(), 1);

        // A restarted process reads the same sums.
        let reopened = Store::open(&url).await.unwrap();
        assert_eq!(
            reopened.trunk_usage_since("carrier", period).await.unwrap(),
            41
        );
        assert_eq!(
            reopened.trunk_usage_since("backup", period).await.unwrap(),
            600
        );
        assert_eq!(
            reopened.trunk_usage_since("nowhere", period).await.unwrap(),
            0
        );
        // From the month before, the leg answered then counts too: 60 s more.
        assert_eq!(
            reopened
                .trunk_usage_since("carrier", period - 86_400_000)
                .await
                .unwrap(),
            101
        );
    }
}
