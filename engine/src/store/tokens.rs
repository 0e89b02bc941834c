//! API tokens (`migrations/sqlite/0006_api_tokens.sql`): the rows behind the HTTP API's bearer
//! tokens. The store only keeps and finds them; making a token, hashing it and checking roles is
//! the API's business (`switchboard-api`'s `auth` module).
use super::{Store, StoreError};
use sqlx::Row;

/// A token as stored: never the secret, only its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    /// The role's code (`admin`, `supervisor`, `agent`, `developer`); the API parses it.
    pub role: String,
    /// Lowercase hex SHA-256 of the whole token.
    pub hash: String,
    pub created_at_ms: i64,
    pub last_used_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

const TOKEN_COLUMNS: &str = "id, name, role, hash, created_at_ms, last_used_at_ms, revoked_at_ms";

fn token_row(row: &sqlx::sqlite::SqliteRow) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        hash: row.try_get("hash")?,
        created_at_ms: row.try_get("created_at_ms")?,
        last_used_at_ms: row.try_get("last_used_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
    })
}

impl Store {
    pub async fn insert_token(&self, token: &TokenRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&token.id)
        .bind(&token.name)
        .bind(&token.role)
        .bind(&token.hash)
        .bind(token.created_at_ms)
        .bind(token.last_used_at_ms)
        .bind(token.revoked_at_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// One token by id, revoked or not.
    pub async fn token(&self, id: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(token_row).transpose()
    }

    /// Every token, oldest first, revoked ones included.
    pub async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at_ms, id"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(token_row).collect()
    }

    /// Revokes a token; `false` when there is no token `id` (revoking twice keeps the first time).
    pub async fn revoke_token(&self, id: &str, at_ms: i64) -> Result<bool, StoreError> {
        let found = sqlx::query(
            "UPDATE api_tokens SET revoked_at_ms = COALESCE(revoked_at_ms, ?) WHERE id = ?",
        )
        .bind(at_ms)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(found.rows_affected() > 0)
    }

    /// Records a successful use. Coarse on purpose: callers may skip it when the last one is
    /// recent, so a busy integration does not write on every request.
    pub async fn touch_token(&self, id: &str, at_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_tokens SET last_used_at_ms = ? WHERE id = ?")
            .bind(at_ms)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: &str, at: i64) -> TokenRow {
        TokenRow {
            id: id.into(),
            name: "ci".into(),
            role: "developer".into(),
            hash: "ab".repeat(32),
            created_at_ms: at,
            last_used_at_ms: None,
            revoked_at_ms: None,
        }
    }

    #[tokio::test]
    async fn tokens_are_listed_touched_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}/sb.db", dir.path().display()))
            .await
            .unwrap();
        store.insert_token(&token("b", 2)).await.unwrap();
        store.insert_token(&token("a", 1)).await.unwrap();
        let ids: Vec<String> = store
            .tokens()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
        store.touch_token("a", 5).await.unwrap();
        assert!(store.revoke_token("a", 7).await.unwrap());
        assert!(store.revoke_token("a", 9).await.unwrap());
        assert!(!store.revoke_token("nope", 9).await.unwrap());
        let a = store.token("a").await.unwrap().unwrap();
        assert_eq!((a.last_used_at_ms, a.revoked_at_ms), (Some(5), Some(7)));
        assert_eq!(store.token("nope").await.unwrap(), None);
    }
}
