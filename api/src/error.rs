//! The API's one error type and its one JSON shape.
//!
//! Every failure of every `/api/v1` endpoint is answered as
//! `{"error": {"code": "...", "message": "...", "details": {...}}}`: `code` is a stable
//! snake_case string clients branch on, `message` is for people and may be reworded, `details`
//! (possibly empty) names what was wrong (the field, the allowed values, the limit). Extractor
//! rejections (a malformed JSON body, an unknown field, a body over the limit, a bad query string)
//! go through the same shape, never axum's plain-text defaults.
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

/// The largest JSON body an endpoint reads; larger bodies are refused with `413 body_too_large`.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query parameter or path segment that does not parse (an unknown code, a bad time).
    #[error("{message}")]
    BadRequest { message: String, details: Value },
    /// The body is not JSON, or not JSON at all (syntax, missing content type).
    #[error("the request body is not valid JSON: {reason}")]
    InvalidBody { reason: String },
    /// The body is JSON but not the expected object: an unknown or missing field, a wrong type.
    #[error("the request body does not match the expected shape: {reason}")]
    Validation {
        reason: String,
        field: Option<String>,
    },
    /// The body is well formed but its content is refused, with what is wrong in `details`
    /// (a flow that does not validate: `details.errors`).
    #[error("{message}")]
    Invalid { message: String, details: Value },
    #[error("missing, malformed, unknown or revoked bearer token")]
    Unauthorized,
    #[error("the {role} role may not use this endpoint")]
    Forbidden {
        role: &'static str,
        allowed: Vec<&'static str>,
    },
    #[error("no such {what}")]
    NotFound {
        what: &'static str,
        id: Option<String>,
    },
    #[error("this endpoint does not take that method")]
    MethodNotAllowed,
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("too many failed attempts from this address; retry in {retry_after_s} s")]
    TooManyRequests { retry_after_s: u64 },
    /// The request is well formed but the current state refuses it (an agent on a call cannot
    /// go on a break; an agent already logged in cannot log in again).
    #[error("{message}")]
    Conflict { message: String, details: Value },
    /// A request the domain refuses with a code of its own (a click-to-dial call to a blacklisted
    /// number: `403 blacklisted`), with the status that says whether to retry.
    #[error("{message}")]
    Refused {
        status: StatusCode,
        code: &'static str,
        message: String,
        details: Value,
    },
    /// The engine is not taking requests (shutting down).
    #[error("the call engine is not available")]
    Unavailable,
    /// A failure on our side; the cause is logged, not sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>, details: Value) -> ApiError {
        ApiError::BadRequest {
            message: message.into(),
            details,
        }
    }

    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(cause.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } | ApiError::InvalidBody { .. } => StatusCode::BAD_REQUEST,
            ApiError::Validation { .. } | ApiError::Invalid { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Refused { status, .. } => *status,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::InvalidBody { .. } => "invalid_body",
            ApiError::Validation { .. } | ApiError::Invalid { .. } => "validation_failed",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::NotFound { .. } => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Conflict { .. } => "conflict",
            ApiError::Refused { code, .. } => code,
            ApiError::Unavailable => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn details(&self) -> Value {
        match self {
            ApiError::BadRequest { details, .. } => details.clone(),
            ApiError::InvalidBody { reason } => json!({ "reason": reason }),
            ApiError::Validation { reason, field } => json!({ "reason": reason, "field": field }),
            ApiError::Forbidden { role, allowed } => json!({ "role": role, "allowed": allowed }),
            ApiError::NotFound { id, .. } => match id {
                Some(id) => json!({ "id": id }),
                None => json!({}),
            },
            ApiError::BodyTooLarge { limit } => json!({ "limit_bytes": limit }),
            ApiError::TooManyRequests { retry_after_s } => {
                json!({ "retry_after_s": retry_after_s })
            }
            ApiError::Conflict { details, .. }
            | ApiError::Invalid { details, .. }
            | ApiError::Refused { details, .. } => details.clone(),
            ApiError::Unauthorized
            | ApiError::MethodNotAllowed
            | ApiError::Unavailable
            | ApiError::Internal(_) => json!({}),
        }
    }
}

/// The error document, as the OpenAPI description shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable: `bad_request`, `invalid_body`, `unauthorized`, `forbidden`, `not_found`,
    /// `body_too_large`, `validation_failed`, `too_many_requests`, `conflict`, `unavailable`,
    /// `internal`, and the typed refusals of click-to-dial (`invalid_number`, `blacklisted`,
    /// `unknown_flow`, `unknown_skill_group`, `unknown_agent`, `unknown_trunk`, `agent_unreachable`,
    /// `agent_not_available`, `no_trunk`, `over_quota`, `trunk_busy`) and of idempotency keys
    /// (`idempotency_key_reused`, `idempotency_in_progress`).
    pub code: String,
    /// For people; may be reworded.
    pub message: String,
    /// What was wrong: the field, the allowed values, the limit (may be empty).
    #[schema(value_type = Object)]
    pub details: Value,
}

impl ApiError {
    /// The error document this error answers with.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
                details: self.details(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(%cause, "API request failed");
        }
        let status = self.status();
        let body = self.body();
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::TooManyRequests { retry_after_s } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
            }
            // A refusal to retry later says when.
            ApiError::Refused { details, .. } => {
                if let Some(s) = details.get("retry_after_s").and_then(Value::as_u64) {
                    headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
                }
            }
            _ => {}
        }
        response
    }
}

impl From<switchboard_engine::store::StoreError> for ApiError {
    fn from(e: switchboard_engine::store::StoreError) -> ApiError {
        ApiError::internal(e)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        match rejection {
            JsonRejection::JsonDataError(e) => {
                let reason = std::error::Error::source(&e)
                    .map(ToString::to_string)
                    .unwrap_or_else(|| e.body_text());
                let field = unknown_field(&reason);
                ApiError::Validation { reason, field }
            }
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::BodyTooLarge {
                    limit: MAX_BODY_BYTES,
                }
            }
            other => ApiError::InvalidBody {
                reason: other.body_text(),
            },
        }
    }
}

/// The field serde named in "unknown field `x`, expected …".
fn unknown_field(reason: &str) -> Option<String> {
    let rest = reason.split("unknown field `").nth(1)?;
    Some(rest.split('`').next()?.to_owned())
}

/// A JSON body, rejected in the API's error shape. Use with `#[serde(deny_unknown_fields)]`
/// types: a misspelt field is an error, not silently ignored.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(value))
    }
}

/// A whole number in a JSON body, written `40` or `40.0`: JSON has one number type, and the
/// document's `integer` (JSON Schema) is any number without a fraction, so a client that writes
/// every number with a point (as some JSON libraries do) is not refused. For body fields, with
/// `#[serde(deserialize_with = "crate::error::whole_number")]`.
pub fn whole_number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::{Deserialize, Error, Unexpected};
    /// Up to here every whole number is exact as a float.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    let n = serde_json::Number::deserialize(deserializer)?;
    let whole = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=EXACT).contains(f))
            .map(|f| f as u64)
    });
    let unexpected = match (n.as_u64(), n.as_i64(), n.as_f64()) {
        (Some(u), _, _) => Unexpected::Unsigned(u),
        (_, Some(i), _) => Unexpected::Signed(i),
        (_, _, f) => Unexpected::Float(f.unwrap_or(f64::NAN)),
    };
    let expected = "a whole number in range";
    let whole = whole.ok_or_else(|| D::Error::invalid_value(unexpected, &expected))?;
    T::try_from(whole).map_err(|_| D::Error::invalid_value(unexpected, &expected))
}

/// [`whole_number`] for an optional field (`#[serde(default, deserialize_with = …)]`).
pub fn optional_whole_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    #[derive(serde::Deserialize)]
    struct Whole<T: TryFrom<u64>>(#[serde(deserialize_with = "whole_number")] T);
    let v: Option<Whole<T>> = serde::Deserialize::deserialize(deserializer)?;
    Ok(v.map(|Whole(t)| t))
}

/// A query string, rejected in the API's error shape (`400 bad_request`).
///
/// A parameter with an empty value (`?limit=&cursor=`, or a bare `?limit`) is taken as not
/// given, as forms and most HTTP clients send an unset field: every query parameter of the API
/// is optional text with a default, and none gives the empty string a meaning of its own. So an
/// unknown parameter is refused only when it has a value: empty, it says nothing.
pub struct ApiQuery<T>(pub T);

/// The query string without its empty-valued parameters.
fn without_empty_values(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| !matches!(pair.split_once('='), None | Some((_, ""))))
        .collect::<Vec<_>>()
        .join("&")
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = without_empty_values(parts.uri.query().unwrap_or(""));
        // Only the query matters to the extractor; a URI of it alone always parses, as the
        // parameters kept are the request's own, already percent-encoded.
        let uri = axum::http::Uri::builder()
            .path_and_query(format!("/?{query}"))
            .build()
            .map_err(ApiError::internal)?;
        match axum::extract::Query::<T>::try_from_uri(&uri) {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => {
                let reason = match &rejection {
                    QueryRejection::FailedToDeserializeQueryString(e) => {
                        std::error::Error::source(e)
                            .map(ToString::to_string)
                            .unwrap_or_else(|| e.body_text())
                    }
                    other => other.body_text(),
                };
                Err(ApiError::bad_request(
                    "invalid query string",
                    json!({ "reason": reason }),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_agree() {
        let cases = [
            (ApiError::Unauthorized, 401, "unauthorized"),
            (ApiError::BodyTooLarge { limit: 1 }, 413, "body_too_large"),
            (
                ApiError::Validation {
                    reason: "x".into(),
                    field: None,
                },
                422,
                "validation_failed",
            ),
            (
                ApiError::TooManyRequests { retry_after_s: 3 },
                429,
                "too_many_requests",
            ),
        ];
        for (e, status, code) in cases {
            assert_eq!((e.status().as_u16(), e.code()), (status, code));
        }
    }

    #[test]
    fn empty_query_values_are_not_given() {
        assert_eq!(
            without_empty_values("limit=&cursor=abc&q&lang=en"),
            "cursor=abc&lang=en"
        );
        assert_eq!(without_empty_values(""), "");
        assert_eq!(without_empty_values("q=%20"), "q=%20");
    }

    #[test]
    fn whole_numbers_may_be_written_with_a_point() {
        #[derive(serde::Deserialize, Debug)]
        struct Body {
            #[serde(deserialize_with = "whole_number")]
            ms: u32,
            #[serde(default, deserialize_with = "optional_whole_number")]
            s: Option<u16>,
        }
        let read = |json: &str| serde_json::from_str::<Body>(json).map(|b| (b.ms, b.s));
        assert_eq!(read(r#"{"ms": 40}"#).unwrap(), (40, None));
        assert_eq!(read(r#"{"ms": 40.0, "s": 5.0}"#).unwrap(), (40, Some(5)));
        assert_eq!(read(r#"{"ms": 1e3, "s": null}"#).unwrap(), (1000, None));
        for bad in [
            r#"{"ms": 40.5}"#,
            r#"{"ms": -1}"#,
            r#"{"ms": -1.0}"#,
            r#"{"ms": 4294967296}"#,
            r#"{"ms": "40"}"#,
            r#"{"ms": 1, "s": 70000}"#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_unknown_field_is_named() {
        assert_eq!(
            unknown_field("unknown field `rolle`, expected `name` or `role` at line 1 column 8"),
            Some("rolle".into())
        );
    }
}
