//! The reference server's form login: one demo account (`IPTRACK_DEMO_USER`), a signed and
//! encrypted session cookie (`IPTRACK_SESSION_KEY`, shared by every instance), and the
//! [`Identity`] hook that tells the middleware who is logged in.

use std::sync::Arc;

use actix_session::{
    Session, SessionExt, SessionMiddleware, config::CookieContentSecurity,
    storage::CookieSessionStore,
};
use actix_web::{HttpRequest, HttpResponse, cookie::Key, http::header::ContentType, post, web};
use iptrack_core::settings::{DemoUser, LoginSettings};
use secrecy::ExposeSecret;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use iptrack_middleware::Identity;

/// Session entry holding the logged-in user's id.
pub const USER_ID_KEY: &str = "user_id";
/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "iptrack_session";

/// The account `POST /login` accepts; `None` rejects everyone.
#[derive(Debug, Clone)]
pub struct DemoAccount(pub Option<DemoUser>);

/// The key of the session cookie, which every instance derives from the same setting.
pub fn session_key(settings: &LoginSettings) -> Key {
    match &settings.session_key {
        // Settings guarantee at least 32 bytes, which `derive_from` needs.
        Some(secret) if secret.expose_secret().len() >= 32 => {
            Key::derive_from(secret.expose_secret().as_bytes())
        }
        _ => {
            tracing::warn!(
                "IPTRACK_SESSION_KEY is not set: sessions are valid on this instance only \
                 and end when it restarts"
            );
            Key::generate()
        }
    }
}

/// The session layer: the whole session lives in the cookie (no server-side store, so no
/// I/O), encrypted and authenticated with `key`. Built per server worker (it is not `Send`).
pub fn session_middleware(key: Key) -> SessionMiddleware<CookieSessionStore> {
    SessionMiddleware::builder(CookieSessionStore::default(), key)
        .cookie_name(SESSION_COOKIE.to_owned())
        .cookie_content_security(CookieContentSecurity::Private)
        // The reference server speaks plain HTTP (TLS ends at the proxy in front of it);
        // a Secure cookie would never come back over it.
        .cookie_secure(false)
        .build()
}

/// Reads the user id the session middleware already decoded: no I/O.
pub fn session_identity() -> Identity {
    Arc::new(|req: &HttpRequest| req.get_session().get::<String>(USER_ID_KEY).ok().flatten())
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

/// A sensitive route: rate-limited (the default rule), and flagged by the hourly job.
#[post("/login")]
pub(crate) async fn submit(
    form: web::Form<Credentials>,
    session: Session,
    account: web::Data<DemoAccount>,
) -> HttpResponse {
    let Some(user) = account.0.as_ref().filter(|user| is_valid(user, &form)) else {
        return HttpResponse::Unauthorized()
            .content_type(ContentType::plaintext())
            .body("invalid username or password\n");
    };
    // A new session id at login: a session fixed by someone else before it is useless.
    session.renew();
    if let Err(error) = session.insert(USER_ID_KEY, &user.name) {
        tracing::error!(%error, "cannot store the login in the session");
        return HttpResponse::InternalServerError().finish();
    }
    HttpResponse::Ok()
        .content_type(ContentType::plaintext())
        .body(format!("logged in as {}\n", user.name))
}

fn is_valid(user: &DemoUser, form: &Credentials) -> bool {
    // Both compared in constant time, and both always compared.
    let name = user.name.as_bytes().ct_eq(form.username.as_bytes());
    let password = user
        .password
        .expose_secret()
        .as_bytes()
        .ct_eq(form.password.as_bytes());
    bool::from(name & password)
}
