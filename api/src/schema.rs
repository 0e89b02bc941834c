//! Documentation-only schemas of shapes the engine writes as JSON (`engine/src/cdr.rs`
//! `to_json`). The handlers send the engine's JSON as is; these types only describe it in the
//! OpenAPI document, and a test compares their fields with the keys `to_json` writes, so the
//! description cannot drift from the data.
#![allow(dead_code)] // never built: only their schemas are used

use utoipa::ToSchema;

/// A call's main record (主话单) with its sub-records. Enum fields hold stable codes; times are
/// unix milliseconds; `null` means unknown or does not apply (`ended_at_ms`, `result` and the
/// durations are `null` while the call is up).
#[derive(ToSchema)]
pub struct CdrRecord {
    call_id: String,
    /// `inbound`, `outbound`, `internal`, `click_to_dial`.
    call_type: String,
    /// `inbound`, `outbound`.
    direction: String,
    customer_number: String,
    trunk_number: Option<String>,
    service_number: Option<String>,
    caller_id: Option<String>,
    started_at_ms: i64,
    ring_at_ms: Option<i64>,
    answered_at_ms: Option<i64>,
    ended_at_ms: Option<i64>,
    duration_ms: Option<i64>,
    ring_ms: Option<i64>,
    talk_ms: Option<i64>,
    /// `answered`, `not_answered`, `system_not_answered`, `failed`.
    result: Option<String>,
    /// A missed-call reason code (`queue_timeout`, `blacklisted`, …).
    missed_reason: Option<String>,
    /// `caller`, `callee`, `system`.
    hangup_by: Option<String>,
    agent: Option<String>,
    queue: Option<String>,
    queue_wait_ms: Option<i64>,
    wrap_up_ms: Option<i64>,
    satisfaction: Vec<SatisfactionAnswer>,
    flow: Option<String>,
    flow_version: Option<String>,
    /// `flow:node→exit` entries, in order.
    ivr_trail: Vec<String>,
    /// Collected inputs; sensitive values are masked.
    inputs: Vec<CollectedInput>,
    recording_path: Option<String>,
    recording_duration_ms: Option<i64>,
    /// Marked for follow-up (标记).
    marked: bool,
    /// The mark's details; `null` when not marked.
    mark: Option<CdrMarkRecord>,
    /// Ordered by start.
    legs: Vec<CdrLegRecord>,
}

/// A record's mark as `PUT /api/v1/cdrs/{call_id}/mark` answers it (the record itself is for
/// the roles that read records, through `GET /api/v1/cdrs/{call_id}`).
#[derive(ToSchema)]
pub struct CdrMarkState {
    call_id: String,
    /// Always `true` after a `PUT`.
    marked: bool,
    mark: Option<CdrMarkRecord>,
}

/// A record's mark (标记).
#[derive(ToSchema)]
pub struct CdrMarkRecord {
    /// What the person marking wrote, at most 500 characters.
    note: Option<String>,
    /// The id of the API token that set the mark.
    marked_by: String,
    /// Unix milliseconds.
    marked_at_ms: i64,
}

/// A sub-record (子话单): one leg to an agent, a transfer target, a third party or a number.
#[derive(ToSchema)]
pub struct CdrLegRecord {
    leg_id: String,
    kind: String,
    peer: String,
    agent: Option<String>,
    queue: Option<String>,
    caller_id: Option<String>,
    trunk: Option<String>,
    started_at_ms: i64,
    answered_at_ms: Option<i64>,
    ended_at_ms: Option<i64>,
    duration_ms: Option<i64>,
    ring_ms: Option<i64>,
    talk_ms: Option<i64>,
    result: Option<String>,
    reason: Option<String>,
    hangup_by: Option<String>,
}

#[derive(ToSchema)]
pub struct SatisfactionAnswer {
    question: u8,
    score: u8,
}

#[derive(ToSchema)]
pub struct CollectedInput {
    name: String,
    value: String,
}

/// Schemas of query parameters the API reads as text and parses itself, for
/// `#[param(value_type = Option<…>, inline)]` (which keeps the field's description, unlike
/// `schema_with`), so the document says which values are taken. An empty value is the parameter
/// not given (`crate::error::ApiQuery`).
pub mod query {
    use switchboard_engine::cdr::{CallResult, CallType, MissedReason};
    use switchboard_engine::store::reports::Period;
    use utoipa::openapi::schema::{
        KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
    };
    use utoipa::openapi::RefOr;

    /// Text that is one of `codes`.
    fn one_of<'a>(codes: impl IntoIterator<Item = &'a str>) -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(codes.into_iter().collect::<Vec<_>>()))
            .into()
    }

    fn text(format: KnownFormat) -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(format)))
    }

    /// A parameter type: a name for `value_type`, and its schema.
    macro_rules! param_schema {
        ($(#[$doc:meta])* $name:ident => $schema:expr) => {
            $(#[$doc])*
            pub struct $name;

            impl utoipa::PartialSchema for $name {
                fn schema() -> RefOr<Schema> {
                    $schema
                }
            }

            impl utoipa::ToSchema for $name {}
        };
    }

    param_schema!(
        /// An instant: unix milliseconds or an RFC 3339 time.
        Instant => Schema::OneOf(
            OneOfBuilder::new()
                .item(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))),
                )
                .item(text(KnownFormat::DateTime))
                .build(),
        )
        .into()
    );
    param_schema!(
        /// A report's bound: an RFC 3339 time or a date.
        ReportBound => Schema::OneOf(
            OneOfBuilder::new()
                .item(text(KnownFormat::DateTime))
                .item(text(KnownFormat::Date))
                .build(),
        )
        .into()
    );
    param_schema!(CallTypeCode => one_of(CallType::ALL.iter().map(|v| v.code())));
    param_schema!(ResultCode => one_of(CallResult::ALL.iter().map(|v| v.code())));
    param_schema!(MissedReasonCode => one_of(MissedReason::ALL.iter().map(|v| v.code())));
    param_schema!(PeriodCode => one_of(Period::ALL.map(Period::code)));
    param_schema!(LangCode => one_of(["zh", "en"]));
    param_schema!(DirectionCode => one_of(["inbound", "outbound"]));
    param_schema!(MarkedFlag => one_of(["true", "false"]));
}
