//! The dashboard at `/dashboard`: a page for people, drawn in the browser from the admin
//! API (`/api/v1/`), with the admin token the user signs in with.
//!
//! Its files are compiled into the binary (`include_str!`), the libraries and the world
//! map included (vendored from npm with their licences, versions in
//! `assets/vendor/README.md`), so it works offline and loads nothing from elsewhere: the
//! Content-Security-Policy below allows only this origin. The files hold no data, so they
//! are served without the token; the data comes from API calls that carry it.

use actix_web::{HttpRequest, HttpResponse, http::header, web};

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// `asset!(URL under /dashboard, content type, file under assets/)`.
macro_rules! asset {
    ($path:literal, $content_type:expr, $file:literal) => {
        Asset {
            path: concat!("/dashboard", $path),
            content_type: $content_type,
            body: include_str!(concat!("assets/", $file)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("", HTML, "index.html"),
    asset!("/app.css", CSS, "app.css"),
    // The page's scripts are ES modules importing each other by these paths.
    asset!("/app.js", JS, "app.js"),
    asset!("/api.js", JS, "api.js"),
    asset!("/dom.js", JS, "dom.js"),
    asset!("/ip.js", JS, "ip.js"),
    asset!("/route.js", JS, "route.js"),
    asset!("/range.js", JS, "range.js"),
    asset!("/live.js", JS, "live.js"),
    asset!("/class-chart.js", JS, "class-chart.js"),
    asset!("/logs-table.js", JS, "logs-table.js"),
    asset!("/views/overview.js", JS, "views/overview.js"),
    asset!("/views/address.js", JS, "views/address.js"),
    asset!("/views/requests.js", JS, "views/requests.js"),
    asset!("/views/countries.js", JS, "views/countries.js"),
    asset!("/vendor/chart.umd.min.js", JS, "vendor/chart.umd.min.js"),
    asset!(
        "/vendor/chart.js-LICENSE.md",
        TEXT,
        "vendor/chart.js-LICENSE.md"
    ),
    asset!(
        "/vendor/chartjs-chart-geo.umd.min.js",
        JS,
        "vendor/chartjs-chart-geo.umd.min.js"
    ),
    asset!(
        "/vendor/chartjs-chart-geo-LICENSE",
        TEXT,
        "vendor/chartjs-chart-geo-LICENSE"
    ),
    asset!(
        "/vendor/chartjs-chart-geo-bundled-LICENSES",
        TEXT,
        "vendor/chartjs-chart-geo-bundled-LICENSES"
    ),
    asset!(
        "/vendor/countries-110m.json",
        JSON,
        "vendor/countries-110m.json"
    ),
    asset!(
        "/vendor/world-atlas-LICENSE",
        TEXT,
        "vendor/world-atlas-LICENSE"
    ),
    asset!(
        "/vendor/iso-country-codes.json",
        JSON,
        "vendor/iso-country-codes.json"
    ),
    asset!(
        "/vendor/i18n-iso-countries-LICENSE",
        TEXT,
        "vendor/i18n-iso-countries-LICENSE"
    ),
    asset!("/vendor/README.md", TEXT, "vendor/README.md"),
];

/// Only this origin's scripts, styles, images and API calls; no framing (clickjacking of
/// the block buttons).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'none'";

/// FNV-1a over the file: an entity tag that changes with the content, computed at compile
/// time. Not a defence against anyone (the files are public), only a version stamp.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// Whether the browser's `If-None-Match` names `etag` (a list, or `*`).
fn still_fresh(request: &HttpRequest, etag: &str) -> bool {
    request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(',')
                .map(|tag| tag.trim().trim_start_matches("W/"))
                .any(|tag| tag == etag || tag == "*")
        })
}

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    for asset in ASSETS {
        let etag = format!("\"{:016x}\"", fnv1a(asset.body.as_bytes()));
        cfg.route(
            asset.path,
            web::get().to(move |request: HttpRequest| serve(asset, etag.clone(), request)),
        );
    }
}

async fn serve(asset: &'static Asset, etag: String, request: HttpRequest) -> HttpResponse {
    // `no-cache` (revalidate every time) keeps the page fresh after an upgrade; the tag
    // makes that revalidation a 304 rather than the map and libraries (half a megabyte)
    // again on every load.
    let fresh = still_fresh(&request, &etag);
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if fresh {
        response.finish()
    } else {
        response.content_type(asset.content_type).body(asset.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_its_own_path_and_a_stable_tag() {
        let mut paths: Vec<_> = ASSETS.iter().map(|a| a.path).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), ASSETS.len());
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
