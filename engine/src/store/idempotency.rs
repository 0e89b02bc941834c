//! Idempotency keys (`migrations/sqlite/0010_idempotency.sql`): the first answer to a request
//! carrying an `Idempotency-Key`, kept so a retry of the same request gets it again. The store
//! claims and fills rows; what counts as the same request is the API's business.
use super::{Store, StoreError};
use sqlx::Row;

/// How long a key is remembered.
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;
/// How long a claim without an answer holds the key (a request is served well within it).
pub const IN_FLIGHT_TTL_MS: i64 = 60 * 1000;

/// What a key already holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is new and now reserved for this request: serve it, then [`Store::settle_idempotency`].
    New,
    /// The same request was answered before: this is its answer.
    Answered {
        request_hash: String,
        status: u16,
        body: String,
    },
    /// A request with this key is being served right now (or was, by a process that stopped
    /// before answering: the key is free again [`IN_FLIGHT_TTL_MS`] after the claim).
    InFlight { request_hash: String },
}

impl Store {
    /// Reserve `key` for `token_id`'s request, or say what the key already holds. Keys older than
    /// [`IDEMPOTENCY_TTL_MS`] are forgotten first.
    pub async fn claim_idempotency(
        &self,
        token_id: &str,
        key: &str,
        request_hash: &str,
        now_ms: i64,
    ) -> Result<Claim, StoreError> {
        sqlx::query("DELETE FROM api_idempotency WHERE created_at_ms < ?")
            .bind(now_ms - IDEMPOTENCY_TTL_MS)
            .execute(self.pool())
            .await?;
        // A claim whose request never answered (the process stopped meanwhile) is taken over
        // after a minute; a row deleted between the insert and the read is claimed again.
        for _ in 0..3 {
            let inserted = sqlx::query(
                "INSERT INTO api_idempotency (token_id, key, request_hash, created_at_ms)
                 VALUES (?, ?, ?, ?)
                 ON CONFLICT (token_id, key) DO UPDATE
                   SET request_hash = excluded.request_hash, created_at_ms = excluded.created_at_ms
                   WHERE api_idempotency.status IS NULL AND api_idempotency.created_at_ms < ?",
            )
            .bind(token_id)
            .bind(key)
            .bind(request_hash)
            .bind(now_ms)
            .bind(now_ms - IN_FLIGHT_TTL_MS)
            .execute(self.pool())
            .await?
            .rows_affected();
            if inserted == 1 {
                return Ok(Claim::New);
            }
            let row = sqlx::query(
                "SELECT request_hash, status, body FROM api_idempotency
                 WHERE token_id = ? AND key = ?",
            )
            .bind(token_id)
            .bind(key)
            .fetch_optional(self.pool())
            .await?;
            let Some(row) = row else { continue };
            let request_hash: String = row.try_get("request_hash")?;
            let status: Option<i64> = row.try_get("status")?;
            let body: Option<String> = row.try_get("body")?;
            return Ok(match (status, body) {
                (Some(status), Some(body)) => Claim::Answered {
                    request_hash,
                    status: u16::try_from(status).unwrap_or(500),
                    body,
                },
                _ => Claim::InFlight { request_hash },
            });
        }
        Ok(Claim::InFlight {
            request_hash: request_hash.to_owned(),
        })
    }

    /// Keep the answer a claimed key's request got.
    pub async fn settle_idempotency(
        &self,
        token_id: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE api_idempotency SET status = ?, body = ? WHERE token_id = ? AND key = ?",
        )
        .bind(i64::from(status))
        .bind(body)
        .bind(token_id)
        .bind(key)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Forget a claimed key whose request failed on our side: a retry may try again.
    pub async fn release_idempotency(&self, token_id: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM api_idempotency WHERE token_id = ? AND key = ?")
            .bind(token_id)
            .bind(key)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn claim(store: &Store, token: &str, key: &str, hash: &str, at_ms: i64) -> Claim {
        store
            .claim_idempotency(token, key, hash, at_ms)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_key_is_claimed_once_answered_replayed_and_forgotten_after_a_day() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url).await.unwrap();
        let t0 = 1_800_000_000_000;
        assert_eq!(claim(&store, "tok", "k1", "h1", t0).await, Claim::New);
        assert_eq!(
            claim(&store, "tok", "k1", "h1", t0 + 5).await,
            Claim::InFlight {
                request_hash: "h1".into()
            }
        );
        assert_eq!(claim(&store, "tok", "k2", "h1", t0).await, Claim::New);
        assert_eq!(
            claim(&store, "tok", "k2", "h1", t0 + IN_FLIGHT_TTL_MS + 1).await,
            Claim::New,
            "a claim never answered is taken over after a minute"
        );
        // Another token's key of the same name is its own.
        assert_eq!(claim(&store, "other", "k1", "h9", t0).await, Claim::New);
        store
            .settle_idempotency("tok", "k1", 201, "{\"call_id\":\"c1\"}")
            .await
            .unwrap();
        assert_eq!(
            claim(&store, "tok", "k1", "h2", t0 + 10).await,
            Claim::Answered {
                request_hash: "h1".into(),
                status: 201,
                body: "{\"call_id\":\"c1\"}".into()
            }
        );
        store.release_idempotency("other", "k1").await.unwrap();
        assert_eq!(claim(&store, "other", "k1", "h9", t0).await, Claim::New);
        assert_eq!(
            claim(&store, "tok", "k1", "h3", t0 + IDEMPOTENCY_TTL_MS + 11).await,
            Claim::New,
            "a day later the key is new again"
        );
    }
}
