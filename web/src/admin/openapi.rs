//! The OpenAPI document, `GET /api/v1/openapi.json`.
//!
//! Its paths come from the same registration that routes the handlers (`api_scope!` in
//! `mod.rs`, through utoipa-actix-web), and each handler's parameters and responses from
//! its own `#[utoipa::path]`, so the document cannot list a route that does not exist or
//! miss one that does. The end-to-end test checks both directions against the server.

use std::sync::OnceLock;

use actix_web::{HttpResponse, http::header::ContentType};
use serde::Serialize;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

/// Body of every 4xx and 5xx answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What was wrong, in words; opaque ("internal error") for server faults.
    pub error: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "iptrack admin API",
        description = "Blocklist, flagged addresses, request logs and traffic statistics. \
                       Every operation needs `Authorization: Bearer $IPTRACK_ADMIN_TOKEN`; \
                       invalid parameters get 400 with `{\"error\": \"...\"}`."
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerToken)
)]
struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("The value of IPTRACK_ADMIN_TOKEN"))
                        .build(),
                ),
            );
    }
}

/// The document: the fixed parts above plus the paths and schemas of `registered`.
pub(super) fn document(registered: &impl utoipa_actix_web::OpenApiFactory) -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.paths.merge(registered.paths());
    let mut schemas = Vec::new();
    registered.schemas(&mut schemas);
    doc.components
        .get_or_insert_with(Default::default)
        .schemas
        .extend(schemas);
    doc.to_pretty_json().unwrap_or_else(|error| {
        tracing::error!(%error, "cannot serialise the OpenAPI document");
        String::from("{}")
    })
}

/// Built on first request, from a scope built the same way as the routed one.
pub(super) async fn serve() -> HttpResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let body = DOCUMENT.get_or_init(|| document(&api_scope!()));
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(body.as_str())
}
