//! Blacklist entries added at run time (`migrations/sqlite/0008_blacklist.sql`), through the HTTP
//! API. The configured entries (`blacklist:` in the file) are not stored: the engine refuses both,
//! [`Store::stored_blacklist`] being what it adds to the configured ones at start-up and after
//! every change.
//!
//! Entries are kept as [`NumberPattern`]s' normalized text (`8613800000000`, `1380000*`), so one
//! number written two ways (`+86 138 0000 0000`) is one entry, and the database's uniqueness on
//! `(direction, pattern)` is what finds duplicates.
use super::{Store, StoreError};
use crate::cdr::Direction;
use crate::config::{Blacklist, NumberPattern};
use sqlx::{QueryBuilder, Row, Sqlite};

/// An entry as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlacklistRow {
    pub id: i64,
    /// Inbound: callers refused; outbound: numbers that may not be dialled.
    pub direction: Direction,
    pub pattern: NumberPattern,
    pub note: Option<String>,
    pub created_at_ms: i64,
    /// The API token's id that added it.
    pub created_by: String,
}

/// An entry to add.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewBlacklistEntry {
    pub direction: Direction,
    pub pattern: NumberPattern,
    pub note: Option<String>,
    pub created_at_ms: i64,
    pub created_by: String,
}

/// Which entries to list; each field set narrows the list (AND).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlacklistFilter {
    pub direction: Option<Direction>,
    /// Digits the pattern contains, or text the note contains (case-insensitive for ASCII).
    pub text: Option<String>,
}

impl BlacklistFilter {
    /// Whether `direction`/`pattern`/`note` pass; the same test the SQL makes, for entries that
    /// are not in the database (the configured ones).
    pub fn admits(
        &self,
        direction: Direction,
        pattern: &NumberPattern,
        note: Option<&str>,
    ) -> bool {
        self.direction.is_none_or(|d| d == direction)
            && self.text.as_deref().is_none_or(|t| {
                let t = t.to_lowercase();
                pattern.text().contains(&t) || note.is_some_and(|n| n.to_lowercase().contains(&t))
            })
    }
}

/// What [`Store::import_blacklist`] did with each entry, in the order given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Imported {
    Added,
    /// Already listed (or listed twice in the import): nothing changed.
    Duplicate,
}

const COLUMNS: &str = "id, direction, pattern, note, created_at_ms, created_by";

fn blacklist_row(row: &sqlx::sqlite::SqliteRow) -> Result<BlacklistRow, StoreError> {
    let id: i64 = row.try_get("id")?;
    let unreadable = |column: &'static str, value: String| StoreError::Unreadable {
        column,
        key: id.to_string(),
        value,
    };
    let direction: String = row.try_get("direction")?;
    let pattern: String = row.try_get("pattern")?;
    Ok(BlacklistRow {
        id,
        direction: Direction::from_code(&direction)
            .ok_or_else(|| unreadable("direction", direction.clone()))?,
        pattern: NumberPattern::parse(&pattern)
            .ok_or_else(|| unreadable("pattern", pattern.clone()))?,
        note: row.try_get("note")?,
        created_at_ms: row.try_get("created_at_ms")?,
        created_by: row.try_get("created_by")?,
    })
}

/// `%`, `_` and the escape itself taken literally in a `LIKE … ESCAPE '\'`.
fn like_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

impl Store {
    /// Up to `limit` entries matching `filter`, oldest first (by id); with `after_id`, those
    /// after it.
    pub async fn blacklist_entries(
        &self,
        filter: &BlacklistFilter,
        after_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<BlacklistRow>, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS} FROM blacklist WHERE 1"));
        if let Some(d) = filter.direction {
            q.push(" AND direction = ").push_bind(d.code());
        }
        if let Some(text) = &filter.text {
            let like = like_escaped(text);
            q.push(" AND (pattern LIKE ")
                .push_bind(like.clone())
                .push(" ESCAPE '\\' OR note LIKE ")
                .push_bind(like)
                .push(" ESCAPE '\\')");
        }
        if let Some(after) = after_id {
            q.push(" AND id > ").push_bind(after);
        }
        q.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit));
        let rows = q.build().fetch_all(self.pool()).await?;
        rows.iter().map(blacklist_row).collect()
    }

    pub async fn blacklist_entry(&self, id: i64) -> Result<Option<BlacklistRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM blacklist WHERE id = ?"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(blacklist_row).transpose()
    }

    /// Adds an entry; `None` when the same direction already lists the same pattern.
    pub async fn add_blacklist_entry(
        &self,
        entry: &NewBlacklistEntry,
    ) -> Result<Option<BlacklistRow>, StoreError> {
        let row = sqlx::query(&format!(
            "INSERT INTO blacklist (direction, pattern, note, created_at_ms, created_by) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (direction, pattern) DO NOTHING RETURNING {COLUMNS}"
        ))
        .bind(entry.direction.code())
        .bind(entry.pattern.text())
        .bind(&entry.note)
        .bind(entry.created_at_ms)
        .bind(&entry.created_by)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(blacklist_row).transpose()
    }

    /// Deletes an entry; `false` when there is none with `id`.
    pub async fn delete_blacklist_entry(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM blacklist WHERE id = ?")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Adds many entries in one transaction: all of them or, on a failure, none. An entry
    /// already listed is left as it is.
    pub async fn import_blacklist(
        &self,
        entries: &[NewBlacklistEntry],
    ) -> Result<Vec<Imported>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let done = sqlx::query(
                "INSERT INTO blacklist (direction, pattern, note, created_at_ms, created_by) \
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (direction, pattern) DO NOTHING",
            )
            .bind(e.direction.code())
            .bind(e.pattern.text())
            .bind(&e.note)
            .bind(e.created_at_ms)
            .bind(&e.created_by)
            .execute(&mut *tx)
            .await?;
            out.push(if done.rows_affected() > 0 {
                Imported::Added
            } else {
                Imported::Duplicate
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Every stored entry, as the engine checks them (to be added to the configured ones).
    pub async fn stored_blacklist(&self) -> Result<Blacklist, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM blacklist ORDER BY id"))
            .fetch_all(self.pool())
            .await?;
        let mut list = Blacklist::default();
        for row in &rows {
            let row = blacklist_row(row)?;
            match row.direction {
                Direction::Inbound => list.inbound.push(row.pattern),
                Direction::Outbound => list.outbound.push(row.pattern),
            }
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}/sb.db", dir.path().display()))
            .await
            .unwrap();
        (dir, store)
    }

    fn entry(direction: Direction, pattern: &str, note: Option<&str>) -> NewBlacklistEntry {
        NewBlacklistEntry {
            direction,
            pattern: NumberPattern::parse(pattern).unwrap(),
            note: note.map(str::to_owned),
            created_at_ms: 1_700_000_000_000,
            created_by: "0123456789ab".into(),
        }
    }

    fn patterns(rows: &[BlacklistRow]) -> Vec<String> {
        rows.iter().map(|r| r.pattern.text()).collect()
    }

    #[tokio::test]
    async fn entries_are_added_once_read_and_deleted() {
        let (_dir, store) = temp_store().await;
        let added = store
            .add_blacklist_entry(&entry(
                Direction::Inbound,
                "+86 138 0000 0000",
                Some("spam"),
            ))
            .await
            .unwrap()
            .expect("a new entry");
        assert_eq!(added.pattern, NumberPattern::Exact("8613800000000".into()));
        assert_eq!(added.note.as_deref(), Some("spam"));
        assert_eq!(added.created_by, "0123456789ab");
        // The same number written another way is the same entry; the other direction is not.
        let again = entry(Direction::Inbound, "8613800000000", None);
        assert_eq!(store.add_blacklist_entry(&again).await.unwrap(), None);
        let outbound = entry(Direction::Outbound, "8613800000000", None);
        assert!(store
            .add_blacklist_entry(&outbound)
            .await
            .unwrap()
            .is_some());

        assert_eq!(
            store.blacklist_entry(added.id).await.unwrap().as_ref(),
            Some(&added)
        );
        assert!(store.delete_blacklist_entry(added.id).await.unwrap());
        assert!(!store.delete_blacklist_entry(added.id).await.unwrap());
        assert_eq!(store.blacklist_entry(added.id).await.unwrap(), None);
        let left = store.stored_blacklist().await.unwrap();
        assert!(left.inbound.is_empty());
        assert_eq!(
            left.outbound,
            [NumberPattern::Exact("8613800000000".into())]
        );
    }

    #[tokio::test]
    async fn the_list_is_filtered_and_paged_by_id() {
        let (_dir, store) = temp_store().await;
        for (d, p, note) in [
            (Direction::Inbound, "13800000001", Some("Fraud 100%")),
            (Direction::Outbound, "13800000002", None),
            (Direction::Inbound, "1390*", None),
            (Direction::Inbound, "13800000003", Some("complaint")),
        ] {
            store
                .add_blacklist_entry(&entry(d, p, note))
                .await
                .unwrap()
                .unwrap();
        }
        let all = BlacklistFilter::default();
        let first = store.blacklist_entries(&all, None, 2).await.unwrap();
        assert_eq!(patterns(&first), ["13800000001", "13800000002"]);
        let rest = store
            .blacklist_entries(&all, Some(first[1].id), 10)
            .await
            .unwrap();
        assert_eq!(patterns(&rest), ["1390*", "13800000003"]);

        let inbound = BlacklistFilter {
            direction: Some(Direction::Inbound),
            text: None,
        };
        let got = store.blacklist_entries(&inbound, None, 10).await.unwrap();
        assert_eq!(patterns(&got), ["13800000001", "1390*", "13800000003"]);

        for (text, want) in [
            ("138000", vec!["13800000001", "13800000002", "13800000003"]),
            ("fraud", vec!["13800000001"]),
            // `%` is a character here, not a wildcard.
            ("0%", vec!["13800000001"]),
            ("_", vec![]),
            ("90*", vec!["1390*"]),
        ] {
            let filter = BlacklistFilter {
                direction: None,
                text: Some(text.into()),
            };
            let got = store.blacklist_entries(&filter, None, 10).await.unwrap();
            assert_eq!(patterns(&got), want, "text {text:?}");
            // The in-memory test agrees with the SQL.
            let admitted: Vec<String> = store
                .blacklist_entries(&all, None, 10)
                .await
                .unwrap()
                .into_iter()
                .filter(|r| filter.admits(r.direction, &r.pattern, r.note.as_deref()))
                .map(|r| r.pattern.text())
                .collect();
            assert_eq!(admitted, want, "admits {text:?}");
        }
    }

    #[tokio::test]
    async fn an_import_adds_new_entries_and_counts_duplicates_in_one_transaction() {
        let (_dir, store) = temp_store().await;
        store
            .add_blacklist_entry(&entry(Direction::Inbound, "13800000001", None))
            .await
            .unwrap()
            .unwrap();
        let got = store
            .import_blacklist(&[
                entry(Direction::Inbound, "13800000001", None),
                entry(Direction::Inbound, "13800000002", Some("a")),
                entry(Direction::Outbound, "13800000001", None),
                entry(Direction::Inbound, "+13800000002", Some("b")),
            ])
            .await
            .unwrap();
        assert_eq!(
            got,
            [
                Imported::Duplicate,
                Imported::Added,
                Imported::Added,
                Imported::Duplicate
            ]
        );
        let list = store.stored_blacklist().await.unwrap();
        assert_eq!(list.inbound.len(), 2);
        assert!(list.blocks("+13800000002") && list.blocks_outbound("13800000001"));
        // The first of two equal rows is the one kept.
        let rows = store
            .blacklist_entries(&BlacklistFilter::default(), None, 10)
            .await
            .unwrap();
        assert_eq!(rows[1].note.as_deref(), Some("a"));
        assert!(store.import_blacklist(&[]).await.unwrap().is_empty());
    }
}
