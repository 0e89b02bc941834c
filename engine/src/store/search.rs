//! Searching call records page by page: the SQL behind the HTTP API's `GET /api/v1/cdrs` and its
//! CSV export.
//!
//! Pages are keyed, not numbered: a page ends at the last record it holds, and the next one starts
//! strictly after it in the order `started_at_ms DESC, call_id DESC`. Calls that arrive while a
//! client walks the pages start later than every record already seen, so they never shift a page
//! nor show a record twice (an offset would).
use super::{cdr_row, leg_row, Store, StoreError, CDR_COLUMNS, LEG_COLUMNS};
use crate::cdr::{CallResult, CallType, CdrLeg, MissedReason};
use crate::store::CdrRow;
use sqlx::{QueryBuilder, Sqlite};
use std::collections::HashMap;

/// Which main records to return; every field set narrows the search (AND).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CdrFilter {
    /// Started at or after (unix ms).
    pub from_ms: Option<i64>,
    /// Started before (unix ms).
    pub to_ms: Option<i64>,
    /// Exact customer number; records store it trimmed, so the caller strips spaces first.
    pub customer_number: Option<String>,
    /// Exact trunk number (中继号码).
    pub trunk_number: Option<String>,
    pub call_type: Option<CallType>,
    pub result: Option<CallResult>,
    pub missed_reason: Option<MissedReason>,
    /// The skill group the call was last queued to.
    pub queue: Option<String>,
    /// The agent who served the call last.
    pub agent: Option<String>,
    /// Only marked (`true`) or only unmarked (`false`) records (标记).
    pub marked: Option<bool>,
}

/// Where a page ends: the last record it returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdrCursor {
    pub started_at_ms: i64,
    pub call_id: String,
}

impl CdrCursor {
    pub fn after(row: &CdrRow) -> CdrCursor {
        CdrCursor {
            started_at_ms: row.open.started_at_ms,
            call_id: row.open.call_id.clone(),
        }
    }
}

impl Store {
    /// Up to `limit` main records matching `filter`, newest first, each with its legs; with
    /// `after`, the records that follow that cursor.
    pub async fn search_cdrs(
        &self,
        filter: &CdrFilter,
        after: Option<&CdrCursor>,
        limit: u32,
    ) -> Result<Vec<CdrRow>, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new(format!("SELECT {CDR_COLUMNS} FROM cdrs WHERE 1"));
        if let Some(from) = filter.from_ms {
            q.push(" AND started_at_ms >= ").push_bind(from);
        }
        if let Some(to) = filter.to_ms {
            q.push(" AND started_at_ms < ").push_bind(to);
        }
        let texts = [
            ("customer_number", filter.customer_number.as_deref()),
            ("trunk_number", filter.trunk_number.as_deref()),
            ("call_type", filter.call_type.map(CallType::code)),
            ("result", filter.result.map(CallResult::code)),
            (
                "missed_reason",
                filter.missed_reason.map(MissedReason::code),
            ),
            ("queue", filter.queue.as_deref()),
            ("agent", filter.agent.as_deref()),
        ];
        for (column, value) in texts {
            if let Some(value) = value {
                q.push(format_args!(" AND {column} = "))
                    .push_bind(value.to_owned());
            }
        }
        if let Some(marked) = filter.marked {
            // A literal, not a bound value: SQLite picks the partial index of marked records
            // only for a constant it can see.
            q.push(if marked {
                " AND marked = 1"
            } else {
                " AND marked = 0"
            });
        }
        if let Some(c) = after {
            q.push(" AND (started_at_ms < ")
                .push_bind(c.started_at_ms)
                .push(" OR (started_at_ms = ")
                .push_bind(c.started_at_ms)
                .push(" AND call_id < ")
                .push_bind(c.call_id.clone())
                .push("))");
        }
        q.push(" ORDER BY started_at_ms DESC, call_id DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(self.pool()).await?;
        let mut page: Vec<CdrRow> = rows.iter().map(cdr_row).collect::<Result<_, _>>()?;
        self.attach_legs(&mut page).await?;
        Ok(page)
    }

    /// Fills in the legs of a page of records with one query.
    async fn attach_legs(&self, page: &mut [CdrRow]) -> Result<(), StoreError> {
        if page.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = page.iter().map(|r| r.open.call_id.as_str()).collect();
        let ids = serde_json::to_string(&ids).expect("strings serialize");
        let legs = sqlx::query(&format!(
            "SELECT {LEG_COLUMNS} FROM cdr_legs \
             WHERE call_id IN (SELECT value FROM json_each(?)) \
             ORDER BY call_id, started_at_ms, leg_id"
        ))
        .bind(ids)
        .fetch_all(self.pool())
        .await?;
        let mut by_call: HashMap<String, Vec<CdrLeg>> = HashMap::new();
        for leg in legs.iter().map(leg_row) {
            let leg = leg?;
            by_call.entry(leg.call_id.clone()).or_default().push(leg);
        }
        for row in page {
            row.legs = by_call.remove(&row.open.call_id).unwrap_or_default();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::{CdrClose, CdrOpen, Direction, LegKind};

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}/sb.db", dir.path().display()))
            .await
            .unwrap();
        (dir, store)
    }

    async fn call(store: &Store, id: &str, at: i64, customer: &str, close: CdrClose) {
        store
            .open_cdr(&CdrOpen {
                call_id: id.into(),
                call_type: CallType::Inbound,
                direction: Direction::Inbound,
                customer_number: customer.into(),
                trunk_number: Some("02188880000".into()),
                service_number: Some("4000".into()),
                started_at_ms: at,
            })
            .await
            .unwrap();
        store.close_cdr(id, &close).await.unwrap();
    }

    fn ids(rows: &[CdrRow]) -> Vec<&str> {
        rows.iter().map(|r| r.open.call_id.as_str()).collect()
    }

    #[tokio::test]
    async fn filters_narrow_and_legs_come_along() {
        let (_dir, store) = store().await;
        let answered = CdrClose {
            ended_at_ms: 1_500,
            answered_at_ms: Some(1_100),
            result: CallResult::Answered,
            agent: Some("8001".into()),
            queue: Some("sales".into()),
            ..CdrClose::default()
        };
        let missed = CdrClose {
            ended_at_ms: 2_500,
            result: CallResult::NotAnswered,
            missed_reason: Some(MissedReason::QueueTimeout),
            queue: Some("support".into()),
            ..CdrClose::default()
        };
        call(&store, "c1", 1_000, "13800000001", answered).await;
        call(&store, "c2", 2_000, "13800000002", missed).await;
        store
            .upsert_cdr_leg(&CdrLeg {
                leg_id: "l1".into(),
                call_id: "c1".into(),
                kind: LegKind::Agent,
                peer: "8001".into(),
                started_at_ms: 1_050,
                answered_at_ms: Some(1_100),
                ended_at_ms: Some(1_500),
                result: Some(CallResult::Answered),
                reason: None,
                agent: Some("8001".into()),
                queue: Some("sales".into()),
                hangup_by: None,
                caller_id: None,
                trunk: None,
            })
            .await
            .unwrap();

        let all = store
            .search_cdrs(&CdrFilter::default(), None, 10)
            .await
            .unwrap();
        assert_eq!(ids(&all), ["c2", "c1"]);
        assert_eq!(all[1].legs.len(), 1, "the main record comes with its legs");

        let by = |f: CdrFilter| {
            let store = store.clone();
            async move { store.search_cdrs(&f, None, 10).await.unwrap() }
        };
        let customer = by(CdrFilter {
            customer_number: Some("13800000001".into()),
            ..CdrFilter::default()
        });
        assert_eq!(ids(&customer.await), ["c1"]);
        let reason = by(CdrFilter {
            missed_reason: Some(MissedReason::QueueTimeout),
            ..CdrFilter::default()
        });
        assert_eq!(ids(&reason.await), ["c2"]);
        let agent = by(CdrFilter {
            agent: Some("8001".into()),
            result: Some(CallResult::Answered),
            ..CdrFilter::default()
        });
        assert_eq!(ids(&agent.await), ["c1"]);
        let window = by(CdrFilter {
            from_ms: Some(1_000),
            to_ms: Some(2_000),
            ..CdrFilter::default()
        });
        assert_eq!(
            ids(&window.await),
            ["c1"],
            "from is inclusive, to exclusive"
        );
        let trunk_miss = by(CdrFilter {
            trunk_number: Some("13800000001".into()),
            ..CdrFilter::default()
        });
        assert!(
            trunk_miss.await.is_empty(),
            "the customer and trunk numbers are separate filters"
        );

        let mark = crate::store::marks::CdrMark {
            note: None,
            by: "0123456789ab".into(),
            at_ms: 3_000,
        };
        assert!(store.set_cdr_mark("c2", &mark).await.unwrap());
        let marked = by(CdrFilter {
            marked: Some(true),
            ..CdrFilter::default()
        });
        let marked = marked.await;
        assert_eq!(ids(&marked), ["c2"]);
        assert_eq!(marked[0].mark, Some(mark), "the page carries the mark");
        let unmarked = by(CdrFilter {
            marked: Some(false),
            ..CdrFilter::default()
        });
        assert_eq!(ids(&unmarked.await), ["c1"]);
    }

    /// Records inserted between two pages, even at the same millisecond as the cursor, neither
    /// repeat nor hide a record of the walk.
    #[tokio::test]
    async fn pages_walk_everything_once_under_inserts() {
        let (_dir, store) = store().await;
        for i in 0..7 {
            // Pairs share a start time, so the call id breaks ties.
            call(
                &store,
                &format!("c{i}"),
                1_000 + i / 2,
                "1",
                CdrClose::default(),
            )
            .await;
        }
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store
                .search_cdrs(&CdrFilter::default(), cursor.as_ref(), 3)
                .await
                .unwrap();
            if seen.len() == 3 {
                call(&store, "late", 5_000, "1", CdrClose::default()).await;
            }
            seen.extend(ids(&page).into_iter().map(str::to_owned));
            match page.last() {
                Some(last) if page.len() == 3 => cursor = Some(CdrCursor::after(last)),
                _ => break,
            }
        }
        assert_eq!(seen, ["c6", "c5", "c4", "c3", "c2", "c1", "c0"]);
    }
}
