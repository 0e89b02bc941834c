//! The `webhook_outbox` table: what is waiting to be delivered, and the wake-up of each worker.
use std::sync::Arc;

use sqlx::{Row, SqlitePool};
use tokio::sync::Notify;

use crate::config::WebhookConfig;
use crate::events::CallEvent;

/// Why an event could not be stored or a row could not be updated.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("webhook outbox: {0}")]
    Query(#[from] sqlx::Error),
    #[error("webhook outbox: cannot encode the {kind} event of call {call_id}: {source}")]
    Encode {
        kind: &'static str,
        call_id: String,
        source: serde_json::Error,
    },
}

/// The configured webhooks and the table their events wait in. Cheap to clone: the shell keeps
/// one for [`Outbox::enqueue`] and gives one to [`super::spawn_delivery`].
#[derive(Clone)]
pub struct Outbox {
    pool: SqlitePool,
    hooks: Arc<[Hook]>,
}

pub(super) struct Hook {
    pub config: WebhookConfig,
    /// Wakes this webhook's worker when a row is added. `notify_one` keeps a permit when the
    /// worker is busy, so a row enqueued during a delivery pass is not missed.
    pub wake: Notify,
}

/// A row to attempt.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub id: i64,
    pub kind: String,
    pub body: Vec<u8>,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// An undelivered, not given-up row. `o` is the candidate row; the condition says that no
/// earlier row of its call is still waiting for the same webhook, which is what keeps a call's
/// events in order.
const HEAD_OF_CALL: &str = "o.webhook = ?1 AND o.delivered_at_ms IS NULL AND o.failed = 0 \
     AND NOT EXISTS (SELECT 1 FROM webhook_outbox e WHERE e.webhook = o.webhook \
     AND e.call_id = o.call_id AND e.id < o.id AND e.delivered_at_ms IS NULL AND e.failed = 0)";

impl Outbox {
    /// `pool` is the store's ([`crate::store::Store::pool`]), already migrated.
    pub fn new(pool: SqlitePool, webhooks: Vec<WebhookConfig>) -> Outbox {
        let hooks = webhooks
            .into_iter()
            .map(|config| Hook {
                config,
                wake: Notify::new(),
            })
            .collect();
        Outbox { pool, hooks }
    }

    pub fn webhooks(&self) -> impl Iterator<Item = &WebhookConfig> {
        self.hooks.iter().map(|h| &h.config)
    }

    pub(super) fn hooks(&self) -> &[Hook] {
        &self.hooks
    }

    /// Store `event` for every webhook subscribed to its kind, in one transaction, and wake their
    /// workers. Returns once the rows are committed. Call it for one event at a time, in the order
    /// the events were raised: the row ids are the delivery order.
    pub async fn enqueue(&self, event: &CallEvent) -> Result<(), OutboxError> {
        let subscribed: Vec<&Hook> = self
            .hooks
            .iter()
            .filter(|h| h.config.subscribes(event.kind))
            .collect();
        if subscribed.is_empty() {
            return Ok(());
        }
        let body = serde_json::to_vec(event).map_err(|source| OutboxError::Encode {
            kind: event.kind.code(),
            call_id: event.call_id.clone(),
            source,
        })?;
        let now_ms = crate::rt::unix_ms();
        let mut tx = self.pool.begin().await?;
        for hook in &subscribed {
            sqlx::query(
                "INSERT INTO webhook_outbox (webhook, call_id, kind, body, created_at_ms, \
                 next_attempt_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&hook.config.name)
            .bind(&event.call_id)
            .bind(event.kind.code())
            .bind(&body)
            .bind(now_ms)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        for hook in subscribed {
            hook.wake.notify_one();
        }
        Ok(())
    }

    /// Rows of `webhook` waiting for delivery (due or not), given-up rows excluded.
    pub async fn pending(&self, webhook: &str) -> Result<u64, OutboxError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM webhook_outbox \
             WHERE webhook = ? AND delivered_at_ms IS NULL AND failed = 0",
        )
        .bind(webhook)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Up to `limit` rows of `webhook` due at `now_ms` that head their call, in id order. Each is
    /// of a different call, so they may be sent concurrently.
    pub(super) async fn due(
        &self,
        webhook: &str,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<Pending>, OutboxError> {
        let rows = sqlx::query(&format!(
            "SELECT o.id, o.kind, o.body, o.attempts FROM webhook_outbox o \
             WHERE {HEAD_OF_CALL} AND o.next_attempt_at_ms <= ?2 ORDER BY o.id LIMIT ?3"
        ))
        .bind(webhook)
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(Pending {
                    id: row.try_get("id")?,
                    kind: row.try_get("kind")?,
                    body: row.try_get("body")?,
                    attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(0),
                })
            })
            .collect()
    }

    /// When the earliest row of `webhook` that heads its call is due; `None` when nothing waits.
    pub(super) async fn next_due_at(&self, webhook: &str) -> Result<Option<i64>, OutboxError> {
        let at: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT MIN(o.next_attempt_at_ms) FROM webhook_outbox o WHERE {HEAD_OF_CALL}"
        ))
        .bind(webhook)
        .fetch_one(&self.pool)
        .await?;
        Ok(at)
    }

    pub(super) async fn mark_delivered(&self, id: i64, now_ms: i64) -> Result<(), OutboxError> {
        sqlx::query(
            "UPDATE webhook_outbox SET attempts = attempts + 1, delivered_at_ms = ?, \
             last_error = NULL WHERE id = ?",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Record the `attempts`-th failure: try again at `next_at_ms`, or, when `give_up`, mark the
    /// row failed (`next_at_ms` is then the time it was given up, which pruning goes by).
    pub(super) async fn mark_failed_attempt(
        &self,
        id: i64,
        attempts: u32,
        next_at_ms: i64,
        give_up: bool,
        error: &str,
    ) -> Result<(), OutboxError> {
        sqlx::query(
            "UPDATE webhook_outbox SET attempts = ?, last_error = ?, next_attempt_at_ms = ?, \
             failed = ? WHERE id = ?",
        )
        .bind(i64::from(attempts))
        .bind(error)
        .bind(next_at_ms)
        .bind(give_up)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Delete rows delivered, or given up, before `now_ms - retention`. Returns how many.
    pub async fn prune(
        &self,
        now_ms: i64,
        retention: std::time::Duration,
    ) -> Result<u64, OutboxError> {
        let cutoff =
            now_ms.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        let done = sqlx::query(
            "DELETE FROM webhook_outbox WHERE (delivered_at_ms IS NOT NULL AND delivered_at_ms < ?1) \
             OR (failed = 1 AND next_attempt_at_ms < ?1)",
        )
        .bind(cutoff)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
