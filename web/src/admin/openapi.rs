//! The OpenAPI document, `GET /api/v1/openapi.json`.
//!
//! Its paths come from the same registration that routes the handlers (`api_scope!` in
//! `mod.rs`, through utoipa-actix-web), and each handler's parameters and responses from
//! its own `#[utoipa::path]`, so the document cannot list a route that does not exist or
//! miss one that does. The end-to-end test checks both directions against the server.
//! The same document decides which methods a path allows when a request uses another
//! (405 and `Allow`, see [`unrouted`]).

use std::{collections::BTreeMap, sync::OnceLock};

use actix_web::{
    HttpRequest, HttpResponse,
    http::header::{self, ContentType},
};
use serde::Serialize;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        PathItem,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use super::ApiError;

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
fn document(registered: &impl utoipa_actix_web::OpenApiFactory) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.paths.merge(registered.paths());
    let mut schemas = Vec::new();
    registered.schemas(&mut schemas);
    doc.components
        .get_or_insert_with(Default::default)
        .schemas
        .extend(schemas);
    doc
}

/// The document as served, and for each of its paths the methods it declares.
struct Published {
    json: String,
    allowed: BTreeMap<String, String>,
}

/// Built once, from a scope built the same way as the routed one.
fn published() -> &'static Published {
    static PUBLISHED: OnceLock<Published> = OnceLock::new();
    PUBLISHED.get_or_init(|| {
        let doc = document(&api_scope!());
        let mut allowed: BTreeMap<String, String> = doc
            .paths
            .paths
            .iter()
            .map(|(path, item)| (path.clone(), declared_methods(item).join(", ")))
            .collect();
        allowed.insert(DOCUMENT_PATH.to_owned(), "GET".to_owned());
        let json = doc.to_pretty_json().unwrap_or_else(|error| {
            tracing::error!(%error, "cannot serialise the OpenAPI document");
            String::from("{}")
        });
        Published { json, allowed }
    })
}

/// Where the document is served (outside its own paths: it is not an API operation).
pub(super) const DOCUMENT_PATH: &str = "/api/v1/openapi.json";

fn declared_methods(item: &PathItem) -> Vec<&'static str> {
    [
        ("DELETE", &item.delete),
        ("GET", &item.get),
        ("HEAD", &item.head),
        ("OPTIONS", &item.options),
        ("PATCH", &item.patch),
        ("POST", &item.post),
        ("PUT", &item.put),
        ("TRACE", &item.trace),
    ]
    .into_iter()
    .filter_map(|(name, operation)| operation.is_some().then_some(name))
    .collect()
}

pub(super) async fn serve() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(published().json.as_str())
}

/// Every request under `/api/v1/` that no route took. On a path the document declares,
/// the method is the problem: 405 with the `Allow` header HTTP requires (RFC 9110,
/// section 15.5.6), taken from the document so it lists exactly the declared methods.
/// Anywhere else, 404.
pub(super) async fn unrouted(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    let allowed = &published().allowed;
    let found = allowed.get(request.path()).or_else(|| {
        allowed
            .iter()
            .find(|(template, _)| matches_template(template, request.path()))
            .map(|(_, allow)| allow)
    });
    let Some(allow) = found else {
        return Err(ApiError::NotFound(format!(
            "no admin API endpoint at {}",
            request.path()
        )));
    };
    Ok(HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, allow.as_str()))
        .json(ErrorBody {
            error: format!(
                "{} is not allowed on {}; allowed: {allow}",
                request.method(),
                request.path()
            ),
        }))
}

/// Whether `path` is an instance of the document's `template`: the same segments, a
/// `{name}` segment standing for any non-empty one (`/api/v1/addresses/{ip}`).
fn matches_template(template: &str, path: &str) -> bool {
    if !template.contains('{') {
        return false;
    }
    let (mut template, mut path) = (template.split('/'), path.split('/'));
    loop {
        match (template.next(), path.next()) {
            (None, None) => return true,
            (Some(t), Some(p)) if t.starts_with('{') && t.ends_with('}') && !p.is_empty() => {}
            (Some(t), Some(p)) if t == p => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches_template;

    #[test]
    fn a_template_segment_stands_for_one_non_empty_segment() {
        let template = "/api/v1/addresses/{ip}";
        assert!(matches_template(template, "/api/v1/addresses/1.2.3.4"));
        assert!(matches_template(template, "/api/v1/addresses/%7Bip%7D"));
        assert!(!matches_template(template, "/api/v1/addresses/"));
        assert!(!matches_template(template, "/api/v1/addresses/1/2"));
        assert!(!matches_template(template, "/api/v1/address/1.2.3.4"));
        assert!(!matches_template("/api/v1/logs", "/api/v1/logs"));
    }
}
