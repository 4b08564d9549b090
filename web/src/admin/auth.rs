//! Bearer-token check for the admin API.

use std::future::{Ready, ready};

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::ApiError;

/// The configured token, as app data.
#[derive(Debug, Clone)]
pub struct AdminToken(pub SecretString);

impl AdminToken {
    /// Compares in constant time: how long a wrong token takes to refuse does not depend
    /// on how many of its leading characters are right. (A wrong length is refused as fast
    /// as any other mismatch; the length of a 16+ character token is no help to a guesser.)
    fn accepts(&self, presented: &str) -> bool {
        self.0
            .expose_secret()
            .as_bytes()
            .ct_eq(presented.as_bytes())
            .into()
    }
}

/// Proof that the request carried the admin token; take it as a handler argument.
#[derive(Debug)]
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(token) = req.app_data::<web::Data<AdminToken>>() else {
            return ready(Err(ApiError::Unauthorized));
        };
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        ready(match presented {
            Some(presented) if token.accepts(presented.trim()) => Ok(Admin),
            _ => Err(ApiError::Unauthorized),
        })
    }
}
