//! `/api/v1/blacklist`: the customer-number blacklists (客户号码黑名单) at run time — listing,
//! adding, deleting, CSV import and export.
//!
//! The engine refuses the configured entries (`blacklist:` in the configuration file, listed
//! here with `source: "config"`, read-only) and the entries added here (`source: "api"`, stored
//! in the database). After every change the engine gets the new list
//! ([`EngineHandle::reload_blacklist`]): the next call is checked against it, no restart needed,
//! and a restart keeps what was added.
//!
//! Entries are numbers or prefixes: digits with an optional leading `+` and an optional trailing
//! `*`, spaces ignored, kept normalized (`+86 138 0000 0000` is `8613800000000`), so one number
//! written two ways is one entry.
//!
//! [`EngineHandle::reload_blacklist`]: switchboard_engine::rt::EngineHandle::reload_blacklist
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use switchboard_engine::cdr::{Direction, Lang};
use switchboard_engine::config::NumberPattern;
use switchboard_engine::rt::{BlacklistError, ControlError};
use switchboard_engine::store::blacklist::{
    BlacklistFilter, BlacklistRow, Imported, NewBlacklistEntry,
};

/// Who may read the blacklists.
const READERS: &[Role] = &[Role::Admin, Role::Supervisor, Role::Developer];
/// Who may change them.
const WRITERS: &[Role] = &[Role::Admin, Role::Supervisor];
/// The page size when `limit` is not given.
const DEFAULT_LIMIT: u32 = 50;
/// The largest page a client may ask for.
const MAX_LIMIT: u32 = 500;
/// Stored entries read per chunk of the CSV export.
const EXPORT_PAGE: u32 = 500;
/// The longest note accepted, in characters.
const MAX_NOTE: usize = 200;

/// A list entry.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BlacklistEntry {
    /// `null` for a configured entry: those change in the configuration file only.
    pub id: Option<i64>,
    /// `inbound` (callers refused) or `outbound` (numbers outbound calls may not dial).
    pub direction: String,
    /// Normalized: digits without `+` or spaces; a prefix ends in `*`.
    pub number: String,
    pub note: Option<String>,
    /// `config` (the configuration file, read-only here) or `api`.
    pub source: String,
    /// When it was added (`null` for a configured entry).
    pub created_at_ms: Option<i64>,
    /// The id of the API token that added it (`null` for a configured entry).
    pub created_by: Option<String>,
}

impl From<BlacklistRow> for BlacklistEntry {
    fn from(row: BlacklistRow) -> BlacklistEntry {
        BlacklistEntry {
            id: Some(row.id),
            direction: row.direction.code().to_owned(),
            number: row.pattern.text(),
            note: row.note,
            source: "api".into(),
            created_at_ms: Some(row.created_at_ms),
            created_by: Some(row.created_by),
        }
    }
}

impl BlacklistEntry {
    fn configured(direction: Direction, pattern: &NumberPattern) -> BlacklistEntry {
        BlacklistEntry {
            id: None,
            direction: direction.code().to_owned(),
            number: pattern.text(),
            note: None,
            source: "config".into(),
            created_at_ms: None,
            created_by: None,
        }
    }
}

/// A page of entries: the configured ones first, then the added ones, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BlacklistPage {
    pub items: Vec<BlacklistEntry>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Which list an entry is on.
#[derive(Deserialize, Clone, Copy, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListDirection {
    /// Callers refused on inbound calls.
    Inbound,
    /// Numbers outbound calls may not dial.
    Outbound,
}

impl From<ListDirection> for Direction {
    fn from(d: ListDirection) -> Direction {
        match d {
            ListDirection::Inbound => Direction::Inbound,
            ListDirection::Outbound => Direction::Outbound,
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEntry {
    pub direction: ListDirection,
    /// A number (`+8613800000000`) or a prefix ending in `*` (`1380000*`); spaces are ignored.
    #[schema(pattern = r"^ *\+?[0-9][0-9 ]{0,31}\*? *$", example = "+8613800000000")]
    pub number: String,
    /// Why it is listed; at most 200 characters.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub note: Option<String>,
}

/// What an import did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// Rows added.
    pub imported: usize,
    /// Rows already listed (configured, added before, or earlier in the same file).
    pub duplicates: usize,
    /// Rows refused, with their line in the file (the header is line 1).
    pub rejected: Vec<RejectedRow>,
}

#[derive(Serialize, utoipa::ToSchema, Debug, PartialEq, Eq)]
pub struct RejectedRow {
    pub line: usize,
    pub reason: String,
}

/// The list's query string.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `inbound` or `outbound`.
    #[param(value_type = Option<crate::schema::query::DirectionCode>, inline)]
    direction: Option<String>,
    /// Digits the number contains (spaces and a leading `+` ignored), or text the note contains.
    q: Option<String>,
    /// Page size: 1–500, default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// `next_cursor` of the previous page, as returned: any other text is `400`.
    cursor: Option<String>,
}

/// The export's query string.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `inbound` or `outbound`.
    #[param(value_type = Option<crate::schema::query::DirectionCode>, inline)]
    direction: Option<String>,
    /// Digits the number contains, or text the note contains.
    q: Option<String>,
    /// Column titles and direction labels: `zh` (default, `方向,号码,备注`) or `en`
    /// (`direction,number,note`).
    #[param(value_type = Option<crate::schema::query::LangCode>, inline)]
    lang: Option<String>,
}

fn bad(field: &str, value: &str, message: &str, allowed: Option<Vec<&str>>) -> ApiError {
    let mut details = json!({ "field": field, "value": value });
    if let Some(allowed) = allowed {
        details["allowed"] = json!(allowed);
    }
    ApiError::bad_request(format!("{field}: {message}"), details)
}

fn filter(direction: Option<&str>, q: Option<&str>) -> Result<BlacklistFilter, ApiError> {
    let direction = direction
        .map(|v| {
            Direction::from_code(v).ok_or_else(|| {
                bad(
                    "direction",
                    v,
                    "unknown code",
                    Some(vec!["inbound", "outbound"]),
                )
            })
        })
        .transpose()?;
    let text = q.map(str::trim).filter(|q| !q.is_empty()).map(|q| {
        // A number is searched as it is stored: without spaces and without a leading `+`.
        let compact: String = q.chars().filter(|c| !c.is_whitespace()).collect();
        let digits = compact.strip_prefix('+').unwrap_or(&compact);
        if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == '*') {
            digits.to_owned()
        } else {
            q.to_owned()
        }
    });
    Ok(BlacklistFilter { direction, text })
}

/// Where a page ends: after the n-th configured entry, or after a stored entry's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Position {
    Config(usize),
    Stored(i64),
}

/// An opaque cursor: hex of `config:<n>` or `api:<id>`.
fn encode_cursor(p: Position) -> String {
    hex::encode(match p {
        Position::Config(n) => format!("config:{n}"),
        Position::Stored(id) => format!("api:{id}"),
    })
}

fn decode_cursor(value: &str) -> Result<Position, ApiError> {
    let invalid = || bad("cursor", value, "not a cursor this API returned", None);
    let text = hex::decode(value)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(invalid)?;
    match text.split_once(':') {
        Some(("config", n)) => n.parse().map(Position::Config).map_err(|_| invalid()),
        Some(("api", id)) => id.parse().map(Position::Stored).map_err(|_| invalid()),
        _ => Err(invalid()),
    }
}

/// The configured entries in a fixed order (inbound, then outbound), which cursors count in.
fn configured(state: &AppState) -> Vec<(Direction, NumberPattern)> {
    let list = match (&state.engine, &state.config) {
        (Some(engine), _) => engine.configured_blacklist().clone(),
        (None, Some(config)) => config.blacklist.clone(),
        (None, None) => Default::default(),
    };
    let inbound = list.inbound.into_iter().map(|p| (Direction::Inbound, p));
    let outbound = list.outbound.into_iter().map(|p| (Direction::Outbound, p));
    inbound.chain(outbound).collect()
}

/// Gives the running engine the new list. A failure to reach it is only logged: the change is
/// stored, and an engine that is stopping loads it when it starts again.
async fn apply(state: &AppState) -> Result<(), ApiError> {
    let Some(engine) = &state.engine else {
        return Ok(());
    };
    match engine.reload_blacklist(&state.store).await {
        Ok(()) => Ok(()),
        Err(BlacklistError::Engine(ControlError::Stopped)) => {
            tracing::warn!(
                "blacklist changed while the engine is stopping; applied at the next start"
            );
            Ok(())
        }
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// The configured entries and the added ones, a page at a time.
#[utoipa::path(
    get, path = "/api/v1/blacklist", tag = "blacklist",
    params(ListQuery),
    responses((status = 200, description = "A page of entries", body = BlacklistPage)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<BlacklistPage>, ApiError> {
    caller.require(READERS)?;
    let filter = filter(query.direction.as_deref(), query.q.as_deref())?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<u32>() {
            Ok(n @ 1..=MAX_LIMIT) => n,
            _ => {
                return Err(ApiError::bad_request(
                    format!("limit: a page holds 1 to {MAX_LIMIT} entries"),
                    json!({ "field": "limit", "value": v, "min": 1, "max": MAX_LIMIT }),
                ))
            }
        },
    } as usize;
    let start = query.cursor.as_deref().map(decode_cursor).transpose()?;
    // One more than asked tells whether another page exists.
    let mut page: Vec<(Position, BlacklistEntry)> = Vec::with_capacity(limit + 1);
    let after_id = match start {
        None | Some(Position::Config(_)) => {
            let from = match start {
                Some(Position::Config(n)) => n,
                _ => 0,
            };
            let matching = configured(&state)
                .into_iter()
                .enumerate()
                .skip(from)
                .filter(|(_, (d, p))| filter.admits(*d, p, None))
                .take(limit + 1);
            for (n, (d, p)) in matching {
                page.push((Position::Config(n + 1), BlacklistEntry::configured(d, &p)));
            }
            None
        }
        Some(Position::Stored(id)) => Some(id),
    };
    if page.len() <= limit {
        let want = (limit + 1 - page.len()) as u32;
        let rows = state
            .store
            .blacklist_entries(&filter, after_id, want)
            .await?;
        page.extend(
            rows.into_iter()
                .map(|r| (Position::Stored(r.id), BlacklistEntry::from(r))),
        );
    }
    let more = page.len() > limit;
    page.truncate(limit);
    let next_cursor = more
        .then(|| page.last().map(|(p, _)| encode_cursor(*p)))
        .flatten();
    Ok(Json(BlacklistPage {
        items: page.into_iter().map(|(_, e)| e).collect(),
        next_cursor,
    }))
}

fn parsed_note(note: Option<&str>) -> Result<Option<String>, String> {
    let note = note.map(str::trim).filter(|n| !n.is_empty());
    match note {
        Some(n) if n.chars().count() > MAX_NOTE => {
            Err(format!("a note holds at most {MAX_NOTE} characters"))
        }
        n => Ok(n.map(str::to_owned)),
    }
}

fn pattern(number: &str) -> Result<NumberPattern, String> {
    NumberPattern::parse(number).ok_or_else(|| {
        format!(
            "{number:?} is not a number (`+8613800000000`) or a prefix ending in `*` (`1380000*`)"
        )
    })
}

/// Add an entry; the next call is checked against it.
#[utoipa::path(
    post, path = "/api/v1/blacklist", tag = "blacklist",
    request_body = NewEntry,
    responses(
        (status = 201, description = "Added", body = BlacklistEntry),
        (status = 409, description = "Already listed (`details.source`: `config` or `api`)", body = ErrorBody),
        (status = 422, description = "Not a number or prefix, a note too long, or an unknown field", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewEntry>,
) -> Result<(StatusCode, Json<BlacklistEntry>), ApiError> {
    caller.require(WRITERS)?;
    let direction = Direction::from(body.direction);
    let pattern = pattern(&body.number).map_err(|reason| ApiError::Validation {
        reason,
        field: Some("number".into()),
    })?;
    let note = parsed_note(body.note.as_deref()).map_err(|reason| ApiError::Validation {
        reason,
        field: Some("note".into()),
    })?;
    let duplicate = |source: &str| ApiError::Conflict {
        message: format!("{} is already on the {direction} blacklist", pattern.text()),
        details: json!({
            "direction": direction.code(),
            "number": pattern.text(),
            "source": source,
        }),
    };
    if configured(&state).contains(&(direction, pattern.clone())) {
        return Err(duplicate("config"));
    }
    let entry = NewBlacklistEntry {
        direction,
        pattern: pattern.clone(),
        note,
        created_at_ms: crate::clock::unix_ms(),
        created_by: caller.token_id.clone(),
    };
    let Some(row) = state.store.add_blacklist_entry(&entry).await? else {
        return Err(duplicate("api"));
    };
    apply(&state).await?;
    // The id, not the number: a customer's number stays out of the log.
    tracing::info!(by = %caller.token_id, id = row.id, direction = %direction, "blacklist entry added");
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// Configured entries have no id: every id that is not a stored entry's is not found.
fn not_found(id: String) -> ApiError {
    ApiError::NotFound {
        what: "blacklist entry",
        id: Some(id),
    }
}

/// One added entry.
#[utoipa::path(
    get, path = "/api/v1/blacklist/{id}", tag = "blacklist",
    params(("id" = i64, Path, description = "The entry's id")),
    responses(
        (status = 200, description = "The entry", body = BlacklistEntry),
        (status = 404, description = "No such entry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<BlacklistEntry>, ApiError> {
    caller.require(READERS)?;
    let Ok(n) = id.parse::<i64>() else {
        return Err(not_found(id));
    };
    match state.store.blacklist_entry(n).await? {
        Some(row) => Ok(Json(row.into())),
        None => Err(not_found(id)),
    }
}

/// Delete an added entry; the next call is no longer checked against it. Configured entries
/// are removed from the configuration file.
#[utoipa::path(
    delete, path = "/api/v1/blacklist/{id}", tag = "blacklist",
    params(("id" = i64, Path, description = "The entry's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such entry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(WRITERS)?;
    let Ok(n) = id.parse::<i64>() else {
        return Err(not_found(id));
    };
    if !state.store.delete_blacklist_entry(n).await? {
        return Err(not_found(id));
    }
    apply(&state).await?;
    tracing::info!(by = %caller.token_id, id = n, "blacklist entry deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// A CSV request body (`text/csv`, or `text/plain`), at most [`crate::error::MAX_BODY_BYTES`].
pub struct CsvBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for CsvBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case("text/csv") && !essence.eq_ignore_ascii_case("text/plain")
        {
            return Err(ApiError::InvalidBody {
                reason: format!("expected a text/csv body, got content type {content_type:?}"),
            });
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::BodyTooLarge {
                    limit: crate::error::MAX_BODY_BYTES,
                }
            } else {
                ApiError::InvalidBody {
                    reason: e.body_text(),
                }
            }
        })?;
        Ok(CsvBody(bytes))
    }
}

/// An import file, as the document describes it: the pattern holds the header in the order
/// the export writes it (the server also takes the columns in any order); an empty body, with no
/// header, is refused.
struct ImportCsv;

impl utoipa::PartialSchema for ImportCsv {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(
                r"^\ufeff?(direction,number(,note)?|方向,号码(,备注)?)(\r?\n|$)",
            ))
            .into()
    }
}

impl utoipa::ToSchema for ImportCsv {}

/// Import entries from CSV: a header (`direction,number,note` or `方向,号码,备注`, in any order;
/// the note column may be left out), then one entry per row. Valid rows are added even when
/// others are refused; the report names each refused row's line.
#[utoipa::path(
    post, path = "/api/v1/blacklist/import", tag = "blacklist",
    request_body(content = ImportCsv, content_type = "text/csv", description = "`direction,number,note` (or `方向,号码,备注`), then rows like `inbound,+8613800000000,spam`; directions as codes or labels (`呼入`, `呼出`)"),
    responses(
        (status = 200, description = "What was imported, what was already listed, which lines were refused", body = ImportReport),
        (status = 400, description = "Not a text/csv body", body = ErrorBody),
        (status = 422, description = "Not UTF-8 text, or no known header (`details.field`: an unknown column)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn import(
    State(state): State<AppState>,
    caller: Caller,
    CsvBody(body): CsvBody,
) -> Result<Json<ImportReport>, ApiError> {
    caller.require(WRITERS)?;
    let text = std::str::from_utf8(&body).map_err(|e| ApiError::Validation {
        reason: format!("the body is not UTF-8 text: {e}"),
        field: None,
    })?;
    let parsed = parse_import(text)?;
    let configured = configured(&state);
    let mut duplicates = 0;
    let mut entries = Vec::with_capacity(parsed.rows.len());
    let now_ms = crate::clock::unix_ms();
    for (direction, pattern, note) in parsed.rows {
        if configured.contains(&(direction, pattern.clone())) {
            duplicates += 1;
            continue;
        }
        entries.push(NewBlacklistEntry {
            direction,
            pattern,
            note,
            created_at_ms: now_ms,
            created_by: caller.token_id.clone(),
        });
    }
    let outcome = state.store.import_blacklist(&entries).await?;
    let imported = outcome.iter().filter(|&&o| o == Imported::Added).count();
    duplicates += outcome.len() - imported;
    if imported > 0 {
        apply(&state).await?;
    }
    tracing::info!(
        by = %caller.token_id,
        imported,
        duplicates,
        rejected = parsed.rejected.len(),
        "blacklist imported"
    );
    Ok(Json(ImportReport {
        imported,
        duplicates,
        rejected: parsed.rejected,
    }))
}

/// The file's columns, by their titles in either language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    Direction,
    Number,
    Note,
}

impl Column {
    const ALL: [Column; 3] = [Column::Direction, Column::Number, Column::Note];

    fn title(self, lang: Lang) -> &'static str {
        match (self, lang) {
            (Column::Direction, Lang::Zh) => "方向",
            (Column::Number, Lang::Zh) => "号码",
            (Column::Note, Lang::Zh) => "备注",
            (Column::Direction, Lang::En) => "direction",
            (Column::Number, Lang::En) => "number",
            (Column::Note, Lang::En) => "note",
        }
    }

    fn from_title(title: &str) -> Option<Column> {
        Column::ALL
            .into_iter()
            .find(|c| c.title(Lang::Zh) == title || c.title(Lang::En).eq_ignore_ascii_case(title))
    }
}

/// The rows an import file holds: those that read, and the lines of those that do not.
#[derive(Debug)]
struct ParsedImport {
    rows: Vec<(Direction, NumberPattern, Option<String>)>,
    rejected: Vec<RejectedRow>,
}

fn parse_import(text: &str) -> Result<ParsedImport, ApiError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = records(text).into_iter();
    let no_header = |reason: String, field: Option<String>| ApiError::Validation { reason, field };
    let Some(head) = records.next() else {
        return Err(no_header(
            "the body is empty: expected the header `direction,number,note` (or `方向,号码,备注`)"
                .into(),
            None,
        ));
    };
    let mut columns = Vec::with_capacity(head.fields.len());
    for title in &head.fields {
        let title = title.trim();
        match Column::from_title(title) {
            Some(c) if !columns.contains(&c) => columns.push(c),
            Some(_) => {
                return Err(no_header(
                    format!("line {}: the column {title:?} is there twice", head.line),
                    Some(title.to_owned()),
                ))
            }
            None => {
                return Err(no_header(
                    format!(
                        "line {}: unknown column {title:?}; the header is `direction,number,note` (or `方向,号码,备注`)",
                        head.line
                    ),
                    Some(title.to_owned()),
                ))
            }
        }
    }
    for required in [Column::Direction, Column::Number] {
        if !columns.contains(&required) {
            return Err(no_header(
                format!(
                    "line {}: the header has no {:?} column",
                    head.line,
                    required.title(Lang::En)
                ),
                Some(required.title(Lang::En).to_owned()),
            ));
        }
    }
    let mut parsed = ParsedImport {
        rows: Vec::new(),
        rejected: Vec::new(),
    };
    for record in records {
        match import_row(&columns, &record) {
            Ok(row) => parsed.rows.push(row),
            Err(reason) => parsed.rejected.push(RejectedRow {
                line: record.line,
                reason,
            }),
        }
    }
    Ok(parsed)
}

fn import_row(
    columns: &[Column],
    record: &Record,
) -> Result<(Direction, NumberPattern, Option<String>), String> {
    if let Some(reason) = record.error {
        return Err(reason.to_owned());
    }
    if record.fields.len() > columns.len() {
        return Err(format!(
            "{} fields, the header has {}",
            record.fields.len(),
            columns.len()
        ));
    }
    let get = |c: Column| {
        columns
            .iter()
            .position(|&x| x == c)
            .and_then(|i| record.fields.get(i))
            .map(|v| v.trim())
    };
    let direction = get(Column::Direction).unwrap_or_default();
    let direction = Direction::ALL
        .iter()
        .copied()
        .find(|d| {
            d.code().eq_ignore_ascii_case(direction)
                || d.label(Lang::Zh) == direction
                || d.label(Lang::En).eq_ignore_ascii_case(direction)
        })
        .ok_or_else(|| {
            format!("direction {direction:?}: expected inbound or outbound (呼入 or 呼出)")
        })?;
    let number = get(Column::Number).unwrap_or_default();
    let pattern = pattern(number)?;
    // The export writes a note that a spreadsheet would run as a formula with a `'` first.
    let note = get(Column::Note).map(|n| match n.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@']) => rest,
        _ => n,
    });
    let note = parsed_note(note)?;
    Ok((direction, pattern, note))
}

/// One CSV record, and the line it starts on (1-based).
#[derive(Debug, PartialEq, Eq)]
struct Record {
    line: usize,
    fields: Vec<String>,
    /// Why the record does not read as CSV, if it does not.
    error: Option<&'static str>,
}

/// RFC 4180 records: `,` between fields, `"` around a field that holds `,`, `"` (doubled) or a
/// line break; CRLF or LF line ends. Blank lines are skipped.
fn records(text: &str) -> Vec<Record> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let (mut in_quotes, mut was_quoted, mut error) = (false, false, None);
        loop {
            match chars.next() {
                None => {
                    if in_quotes {
                        error = Some("a quoted field is not closed");
                    }
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some('"') if in_quotes => {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        field.push('"');
                    } else {
                        in_quotes = false;
                    }
                }
                Some('"') if field.trim().is_empty() && !was_quoted => {
                    field.clear();
                    in_quotes = true;
                    was_quoted = true;
                }
                Some('"') => {
                    error.get_or_insert("a quote inside an unquoted field");
                    field.push('"');
                }
                Some('\n') if in_quotes => {
                    line += 1;
                    field.push('\n');
                }
                Some('\n') => {
                    line += 1;
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some('\r') if !in_quotes && chars.peek() == Some(&'\n') => {}
                Some(',') if !in_quotes => {
                    fields.push(std::mem::take(&mut field));
                    was_quoted = false;
                }
                Some(c) => field.push(c),
            }
        }
        let blank = fields.len() == 1 && fields[0].trim().is_empty() && !was_quoted;
        if !blank {
            out.push(Record {
                line: start,
                fields,
                error,
            });
        }
    }
    out
}

/// Where the export stream stands.
enum Export {
    Header,
    Configured,
    Stored(Option<i64>),
    Done,
}

fn csv_row(
    direction: Direction,
    pattern: &NumberPattern,
    note: Option<&str>,
    lang: Lang,
) -> String {
    let direction = match lang {
        Lang::Zh => direction.label(Lang::Zh),
        Lang::En => direction.code(),
    };
    let mut out = String::new();
    crate::cdrs::line(
        &mut out,
        &[
            direction.to_owned(),
            pattern.text(),
            note.unwrap_or_default().to_owned(),
        ],
    );
    out
}

/// Export the entries as CSV, configured ones first: the header `import` reads, in the chosen
/// language, after a UTF-8 byte order mark. Streamed a page at a time.
#[utoipa::path(
    get, path = "/api/v1/blacklist/export.csv", tag = "blacklist",
    params(ExportQuery),
    responses((status = 200, description = "CSV with a UTF-8 BOM and localized titles", content_type = "text/csv", body = String)),
    security(("bearer" = []))
)]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let filter = filter(query.direction.as_deref(), query.q.as_deref())?;
    let lang = match query.lang.as_deref() {
        None | Some("zh") => Lang::Zh,
        Some("en") => Lang::En,
        Some(v) => return Err(bad("lang", v, "unknown language", Some(vec!["zh", "en"]))),
    };
    let configured = configured(&state);
    let store = state.store.clone();
    let chunks = futures_util::stream::unfold(Export::Header, move |at| {
        let (store, filter, configured) = (store.clone(), filter.clone(), configured.clone());
        async move {
            match at {
                Export::Header => {
                    let mut out = String::from("\u{feff}");
                    let titles: Vec<String> = Column::ALL
                        .iter()
                        .map(|c| c.title(lang).to_owned())
                        .collect();
                    crate::cdrs::line(&mut out, &titles);
                    Some((Ok(out), Export::Configured))
                }
                Export::Configured => {
                    let out: String = configured
                        .iter()
                        .filter(|(d, p)| filter.admits(*d, p, None))
                        .map(|(d, p)| csv_row(*d, p, None, lang))
                        .collect();
                    Some((Ok(out), Export::Stored(None)))
                }
                Export::Stored(after) => {
                    let rows = match store.blacklist_entries(&filter, after, EXPORT_PAGE).await {
                        Ok(rows) => rows,
                        Err(e) => {
                            tracing::error!(cause = %e, "blacklist export failed");
                            return Some((Err(std::io::Error::other(e)), Export::Done));
                        }
                    };
                    let last = rows.last()?.id;
                    let next = if rows.len() == EXPORT_PAGE as usize {
                        Export::Stored(Some(last))
                    } else {
                        Export::Done
                    };
                    let out: String = rows
                        .iter()
                        .map(|r| csv_row(r.direction, &r.pattern, r.note.as_deref(), lang))
                        .collect();
                    Some((Ok(out), next))
                }
                Export::Done => None,
            }
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"blacklist.csv\"",
            ),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<(usize, Vec<String>)> {
        records(text)
            .into_iter()
            .map(|r| (r.line, r.fields))
            .collect()
    }

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn csv_records_keep_quoted_separators_and_count_lines() {
        let text = "a,b,c\r\n\"x, y\",\"say \"\"hi\"\"\",\"two\nlines\"\n\nlast,,\n";
        assert_eq!(
            fields(text),
            [
                (1, strings(&["a", "b", "c"])),
                (2, strings(&["x, y", "say \"hi\"", "two\nlines"])),
                (5, strings(&["last", "", ""])),
            ]
        );
        let open = records("a\n\"never closed,1\n");
        assert_eq!(open[1].line, 2);
        assert_eq!(open[1].error, Some("a quoted field is not closed"));
    }

    #[test]
    fn an_import_reads_either_header_and_names_the_bad_lines() {
        let text = "\u{feff}方向,号码,备注\n呼入,+86 138 0000 0001,骚扰\noutbound,1390*,\nsideways,1,\ninbound,12a,\n\ninbound,1,2,3\nInbound,555\n";
        let parsed = parse_import(text).unwrap();
        assert_eq!(
            parsed.rows,
            [
                (
                    Direction::Inbound,
                    NumberPattern::Exact("8613800000001".into()),
                    Some("骚扰".into())
                ),
                (
                    Direction::Outbound,
                    NumberPattern::Prefix("1390".into()),
                    None
                ),
                (Direction::Inbound, NumberPattern::Exact("555".into()), None),
            ]
        );
        let lines: Vec<usize> = parsed.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, [4, 5, 7]);

        let en = parse_import("number,Direction\n5550001,inbound\n").unwrap();
        assert_eq!(en.rows.len(), 1);
        for (bad, field) in [
            (
                "{\"direction\":\"inbound\"}\n",
                Some("{\"direction\":\"inbound\"}"),
            ),
            ("direction,number,colour\n", Some("colour")),
            ("direction,note\n", Some("number")),
            ("", None),
        ] {
            match parse_import(bad) {
                Err(ApiError::Validation { field: f, .. }) => {
                    assert_eq!(f.as_deref(), field, "{bad:?}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_defused_formula_note_reads_back_as_written() {
        let row = csv_row(
            Direction::Inbound,
            &NumberPattern::Exact("1".into()),
            Some("=HYPERLINK(\"x\")"),
            Lang::En,
        );
        let parsed = parse_import(&format!("direction,number,note\n{row}")).unwrap();
        assert_eq!(parsed.rows[0].2.as_deref(), Some("=HYPERLINK(\"x\")"));
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        for p in [Position::Config(3), Position::Stored(42)] {
            assert_eq!(decode_cursor(&encode_cursor(p)).unwrap(), p);
        }
        for bad in ["zz", "", &hex::encode("api:x"), &hex::encode("other:1")] {
            assert!(decode_cursor(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_searched_number_loses_its_plus_and_spaces() {
        let f = filter(Some("inbound"), Some(" +86 138 ")).unwrap();
        assert_eq!(f.text.as_deref(), Some("86138"));
        assert_eq!(f.direction, Some(Direction::Inbound));
        let f = filter(None, Some("Spam calls")).unwrap();
        assert_eq!(f.text.as_deref(), Some("Spam calls"));
        assert!(filter(Some("sideways"), None).is_err());
    }
}
