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
            .and_then(bearer_credentials);
        ready(match presented {
            Some(presented) if token.accepts(presented.trim()) => Ok(Admin),
            _ => Err(ApiError::Unauthorized),
        })
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme name is matched
/// case-insensitively, as HTTP defines auth schemes (RFC 9110, section 11.1); the token
/// itself is compared exactly.
fn bearer_credentials(authorization: &str) -> Option<&str> {
    let (scheme, credentials) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(credentials)
}

#[cfg(test)]
mod tests {
    use super::bearer_credentials;

    #[test]
    fn the_scheme_matches_in_any_case_and_the_token_is_taken_as_sent() {
        assert_eq!(bearer_credentials("Bearer abc"), Some("abc"));
        assert_eq!(bearer_credentials("bearer abc"), Some("abc"));
        assert_eq!(bearer_credentials("BEARER AbC"), Some("AbC"));
        assert_eq!(bearer_credentials("Bearerabc"), None);
        assert_eq!(bearer_credentials("Token abc"), None);
        assert_eq!(bearer_credentials("Bearer"), None);
        assert_eq!(bearer_credentials("Beare abc"), None);
    }
}
