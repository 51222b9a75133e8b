//! Access tokens: HS256 JWTs signed with `SECRET_KEY`. Validation pins the algorithm (no
//! `none`, no RS/HS confusion), requires `exp`, `iss`, `aud`, `sub`, `iat` and the account's
//! token version `tv`, refuses `nbf` and `iat` in the future, and refuses any `crit` header
//! (this service understands no JWS extension).

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::config::TokenSettings;
pub use crate::config::http::MIN_SECRET_LEN;
use crate::domain::Role;

/// Clock skew tolerated between replicas, in seconds.
pub const LEEWAY_SECS: u64 = 5;

/// Claims of an admin access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The admin user's id.
    pub sub: String,
    pub email: String,
    pub role: Role,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    /// Not valid before (optional; never in the future when checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// The account's token version when the token was issued: disabling the account or
    /// changing its role raises it, which retires every token issued before.
    pub tv: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("SECRET_KEY must be at least {MIN_SECRET_LEN} bytes")]
    WeakSecret,
    #[error("invalid token")]
    Invalid,
    #[error("JWT_TTL is too large")]
    Lifetime,
    #[error("could not sign token: {0}")]
    Sign(String),
}

/// Signing and verification keys with their settings.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub settings: TokenSettings,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// Keys from a secret of at least 32 bytes.
    pub fn new(secret: &[u8], settings: TokenSettings) -> Result<Self, TokenError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(TokenError::WeakSecret);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[settings.issuer.as_str()]);
        validation.set_audience(&[settings.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            settings,
        })
    }

    /// Keys from a random per-process secret (embedded default without `SECRET_KEY`).
    pub fn random(settings: TokenSettings) -> Self {
        let mut secret = [0u8; 48];
        rand::fill(&mut secret);
        // 48 random bytes always satisfy the length check.
        Self::new(&secret, settings).unwrap_or_else(|_| unreachable!("48-byte secret"))
    }

    /// Issues a token for an admin whose token version is `tv`. Returns the token and its
    /// lifetime in seconds.
    pub fn issue(
        &self,
        id: Uuid,
        email: &str,
        role: Role,
        tv: i64,
    ) -> Result<(String, u64), TokenError> {
        let now = jsonwebtoken::get_current_timestamp();
        let exp = now
            .checked_add(self.settings.ttl_secs)
            .ok_or(TokenError::Lifetime)?;
        let claims = Claims {
            sub: id.to_string(),
            email: email.to_owned(),
            role,
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            iat: now,
            exp,
            nbf: None,
            tv,
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok((token, self.settings.ttl_secs))
    }

    /// Verifies a token: header (no `crit`), signature, algorithm, expiry, not-before,
    /// issued-at, issuer, audience, subject.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if has_crit_header(token) {
            return Err(TokenError::Invalid);
        }
        let claims = decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|_| TokenError::Invalid)?;
        let latest = jsonwebtoken::get_current_timestamp().saturating_add(LEEWAY_SECS);
        if claims.iat > latest {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }
}

/// True when the token's protected header names critical extensions (RFC 7515 §4.1.11), or
/// cannot be read: none is understood here, so such a token must be refused.
fn has_crit_header(token: &str) -> bool {
    let Some(header) = token.split('.').next() else {
        return true;
    };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header) else {
        return true;
    };
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(fields)) => fields.contains_key("crit"),
        _ => true,
    }
}
