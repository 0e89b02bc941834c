//! The OpenAPI 3.1 description of `/api/v1`, generated from the handlers' `#[utoipa::path]`
//! attributes and served at `GET /api/v1/openapi.json`.
//!
//! A new endpoint is added in three places that a test keeps in step: its handler (with its
//! `#[utoipa::path]`), [`crate::ROUTES`] next to the router, and the `paths(...)` list below.
use crate::error::ErrorBody;
use axum::Json;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, Required, ResponseBuilder};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard API",
        description = "Call records, tokens, agents, queues, calls and IVR flows of a Switchboard contact center. \
            Every endpoint but this document takes `Authorization: Bearer sb_<id>_<secret>`. \
            Errors are `{\"error\": {\"code\", \"message\", \"details\"}}`."
    ),
    paths(
        openapi_json,
        crate::tokens::create,
        crate::tokens::list,
        crate::tokens::revoke,
        crate::blacklist::list,
        crate::blacklist::add,
        crate::blacklist::one,
        crate::blacklist::remove,
        crate::blacklist::import,
        crate::blacklist::export,
        crate::cdrs::search,
        crate::cdrs::one,
        crate::cdrs::export,
        crate::cdrs::mark,
        crate::cdrs::unmark,
        crate::agents::list,
        crate::agents::login,
        crate::agents::logout,
        crate::agents::set_state,
        crate::agents::queues,
        crate::reports::trunks,
        crate::reports::skill_groups,
        crate::reports::agents,
        crate::calls::list,
        crate::click::place,
        crate::click::status,
        crate::calls::hang_up,
        crate::calls::transfer,
        crate::calls::send_dtmf,
        crate::calls::start_recording,
        crate::calls::stop_recording,
        crate::events::stream,
        crate::flows::list,
        crate::flows::one,
        crate::flows::check_text,
        crate::flows::publish,
        crate::flows::history,
        crate::flows::graph_svg,
        crate::flows::run_tests,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Common)
)]
pub struct ApiDoc;

/// Adds the bearer scheme, and the error responses every authenticated endpoint can give, so
/// each handler lists only its own.
struct Common;

impl Modify for Common {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sb_<id>_<secret>")
                    .build(),
            ),
        );
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        let common = [
            ("400", "Bad query string or path"),
            ("401", "Missing, malformed, unknown or revoked token"),
            ("403", "The token's role may not use this endpoint"),
            ("429", "Too many failed authentications from this address"),
            ("500", "Internal error"),
        ];
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                // utoipa names an operation after its handler, and handlers of different
                // modules share names (`list`, `one`, `export`); OpenAPI wants each id unique
                // (clients are generated from them, and tools link operations by them), so
                // each is prefixed with its tag: `cdrs_one`, `flows_one`.
                if let (Some(id), Some(tag)) = (
                    &mut op.operation_id,
                    op.tags.as_ref().and_then(|t| t.first()),
                ) {
                    *id = format!("{tag}_{id}");
                }
                // `ApiQuery` takes an empty value (`?limit=`) as the parameter not given; OpenAPI
                // says so with `allowEmptyValue`, which utoipa has no field for.
                for param in op.parameters.iter_mut().flatten() {
                    if matches!(param.parameter_in, ParameterIn::Query)
                        && !matches!(param.required, Required::True)
                    {
                        param
                            .extensions
                            .get_or_insert_with(Default::default)
                            .insert("allowEmptyValue".to_owned(), true.into());
                    }
                }
                if op.security.is_none() {
                    continue;
                }
                for (status, description) in common {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(description).into());
                }
            }
        }
    }
}

/// This document (no token needed).
#[utoipa::path(
    get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object))
)]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
