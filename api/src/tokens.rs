//! `/api/v1/tokens`: creating, listing and revoking bearer tokens (admin only).
use crate::auth::{self, Caller, Role};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use switchboard_engine::store::tokens::TokenRow;

/// The longest token name accepted.
const MAX_NAME: usize = 100;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What the token is for ("ci", "crm"); 1–100 characters, not blank (it is trimmed).
    #[schema(min_length = 1, max_length = 100, pattern = r"\S", example = "crm")]
    pub name: String,
    pub role: Role,
}

/// A token as listed: never its secret nor its hash.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    /// `admin`, `supervisor`, `agent` or `developer`.
    pub role: String,
    pub created_at_ms: i64,
    pub last_used_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

impl From<TokenRow> for TokenInfo {
    fn from(row: TokenRow) -> TokenInfo {
        TokenInfo {
            id: row.id,
            name: row.name,
            role: row.role,
            created_at_ms: row.created_at_ms,
            last_used_at_ms: row.last_used_at_ms,
            revoked_at_ms: row.revoked_at_ms,
        }
    }
}

/// A created token: the only response that ever carries the secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    /// `sb_<id>_<secret>`: shown once, keep it safe.
    pub token: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenList {
    pub items: Vec<TokenInfo>,
}

/// Create a token; the response is the only time its secret is shown.
#[utoipa::path(
    post, path = "/api/v1/tokens", tag = "tokens",
    request_body = CreateToken,
    responses(
        (status = 201, description = "Created", body = CreatedToken),
        (status = 422, description = "Unknown field, bad role or name", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    caller.require(&[Role::Admin])?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(ApiError::Validation {
            reason: format!("name must be 1 to {MAX_NAME} characters"),
            field: Some("name".into()),
        });
    }
    let (row, token) =
        auth::create_token(&state.store, name, body.role, crate::clock::unix_ms()).await?;
    tracing::info!(by = %caller.token_id, id = %row.id, role = %row.role, "API token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            info: row.into(),
            token,
        }),
    ))
}

/// Every token, revoked ones included, oldest first.
#[utoipa::path(
    get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, description = "The tokens", body = TokenList)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<TokenList>, ApiError> {
    caller.require(&[Role::Admin])?;
    let items = state.store.tokens().await?;
    Ok(Json(TokenList {
        items: items.into_iter().map(TokenInfo::from).collect(),
    }))
}

/// Revoke a token: it stops working at once and stays listed.
#[utoipa::path(
    delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "The token's id (the part after `sb_`)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&[Role::Admin])?;
    if state
        .store
        .revoke_token(&id, crate::clock::unix_ms())
        .await?
    {
        tracing::info!(by = %caller.token_id, %id, "API token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound {
            what: "token",
            id: Some(id),
        })
    }
}
