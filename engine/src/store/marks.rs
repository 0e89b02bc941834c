//! Marks on call records (标记, `migrations/sqlite/0007_cdr_marks.sql`): a flag for follow-up with
//! an optional note, who set it and when. Marks are written only here, never by the call code, so
//! a call that ends after it was marked keeps its mark.
use super::{Store, StoreError};
use sqlx::Row;

/// A record's mark, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdrMark {
    /// What the person marking wrote (may be absent).
    pub note: Option<String>,
    /// Who marked: the API token's id.
    pub by: String,
    /// Unix milliseconds.
    pub at_ms: i64,
}

impl Store {
    /// Marks the record `call_id` (again: a later mark replaces the note, author and time).
    /// Returns `false`, writing nothing, when there is no such record.
    pub async fn set_cdr_mark(&self, call_id: &str, mark: &CdrMark) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE cdrs SET marked = 1, mark_note = ?, marked_by = ?, marked_at_ms = ? \
             WHERE call_id = ?",
        )
        .bind(&mark.note)
        .bind(&mark.by)
        .bind(mark.at_ms)
        .bind(call_id)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Removes the mark of `call_id`, if it has one. Returns `false` when there is no such
    /// record (an unmarked record is not an error: the result is the same).
    pub async fn clear_cdr_mark(&self, call_id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE cdrs SET marked = 0, mark_note = NULL, marked_by = NULL, \
             marked_at_ms = NULL WHERE call_id = ?",
        )
        .bind(call_id)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }
}

/// The mark columns of a `cdrs` row read with [`super::CDR_COLUMNS`].
pub(super) fn mark_of(row: &sqlx::sqlite::SqliteRow) -> Result<Option<CdrMark>, StoreError> {
    if row.try_get::<i64, _>("marked")? == 0 {
        return Ok(None);
    }
    Ok(Some(CdrMark {
        note: row.try_get("mark_note")?,
        by: row
            .try_get::<Option<String>, _>("marked_by")?
            .unwrap_or_default(),
        at_ms: row
            .try_get::<Option<i64>, _>("marked_at_ms")?
            .unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::{CallType, CdrClose, CdrOpen, Direction};

    fn open(call_id: &str) -> CdrOpen {
        CdrOpen {
            call_id: call_id.into(),
            call_type: CallType::Inbound,
            direction: Direction::Inbound,
            customer_number: "13800000001".into(),
            trunk_number: None,
            service_number: Some("4000".into()),
            started_at_ms: 1_000,
        }
    }

    #[tokio::test]
    async fn a_mark_is_set_on_an_open_call_survives_its_close_and_is_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}/sb.db", dir.path().display()))
            .await
            .unwrap();
        store.open_cdr(&open("c-1")).await.unwrap();
        assert_eq!(store.cdr("c-1").await.unwrap().unwrap().mark, None);

        let mark = CdrMark {
            note: Some("客户投诉, call back".into()),
            by: "0123456789ab".into(),
            at_ms: 1_500,
        };
        assert!(store.set_cdr_mark("c-1", &mark).await.unwrap());
        assert_eq!(
            store.cdr("c-1").await.unwrap().unwrap().mark.as_ref(),
            Some(&mark),
            "marked while the call is up"
        );
        let close = CdrClose {
            ended_at_ms: 2_000,
            ..CdrClose::default()
        };
        assert!(store.close_cdr("c-1", &close).await.unwrap());
        let row = store.cdr("c-1").await.unwrap().unwrap();
        assert_eq!(row.mark.as_ref(), Some(&mark), "the close keeps the mark");
        assert_eq!(row.close.unwrap().ended_at_ms, 2_000);

        // Marking again replaces the note; no note at all is allowed.
        let again = CdrMark {
            note: None,
            by: "ba9876543210".into(),
            at_ms: 3_000,
        };
        assert!(store.set_cdr_mark("c-1", &again).await.unwrap());
        assert_eq!(store.cdr("c-1").await.unwrap().unwrap().mark, Some(again));

        assert!(store.clear_cdr_mark("c-1").await.unwrap());
        assert_eq!(store.cdr("c-1").await.unwrap().unwrap().mark, None);
        assert!(
            store.clear_cdr_mark("c-1").await.unwrap(),
            "clearing an unmarked record is not an error"
        );

        assert!(!store.set_cdr_mark("no-such-call", &mark).await.unwrap());
        assert!(!store.clear_cdr_mark("no-such-call").await.unwrap());
    }
}
