//! The dashboard at `/dashboard`: a page for people, drawn in the browser from the admin
//! API (`/api/v1/`), with the admin token the user signs in with.
//!
//! Its files are compiled into the binary (`include_str!`), Chart.js included (vendored
//! from the npm package `chart.js` with its licence, see `assets/vendor/`), so it works
//! offline and loads nothing from elsewhere: the Content-Security-Policy below allows
//! only this origin. The files hold no data, so they are served without the token; the
//! data comes from API calls that carry it.

use actix_web::{HttpResponse, http::header, web};

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/dashboard",
        content_type: "text/html; charset=utf-8",
        body: include_str!("assets/index.html"),
    },
    Asset {
        path: "/dashboard/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/app.js"),
    },
    Asset {
        path: "/dashboard/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/app.css"),
    },
    Asset {
        path: "/dashboard/vendor/chart.umd.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/vendor/chart.umd.min.js"),
    },
    Asset {
        path: "/dashboard/vendor/chart.js-LICENSE.md",
        content_type: "text/plain; charset=utf-8",
        body: include_str!("assets/vendor/chart.js-LICENSE.md"),
    },
];

/// Only this origin's scripts, styles, images and API calls; no framing (clickjacking of
/// the block buttons).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'none'";

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    for asset in ASSETS {
        cfg.route(
            asset.path,
            web::get().to(move || async move {
                HttpResponse::Ok()
                    .content_type(asset.content_type)
                    .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
                    .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    // Small files; always fresh after an upgrade.
                    .insert_header((header::CACHE_CONTROL, "no-cache"))
                    .body(asset.body)
            }),
        );
    }
}
