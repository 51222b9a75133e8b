//! Access tokens: HS256 JWTs signed with `SECRET_KEY`. Validation pins the algorithm (no
//! `none`, no RS/HS confusion) and requires `exp`, `iss`, `aud` and `sub`.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::Role;

/// Shortest accepted `SECRET_KEY`, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

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
}

/// Token issuing settings.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub ttl_secs: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            issuer: "tenant-migrator".into(),
            audience: "tenant-migrator-admin".into(),
            ttl_secs: 3600,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("SECRET_KEY must be at least {MIN_SECRET_LEN} bytes")]
    WeakSecret,
    #[error("invalid token")]
    Invalid,
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
        validation.leeway = 5;
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

    /// Issues a token for an admin. Returns the token and its lifetime in seconds.
    pub fn issue(&self, id: Uuid, email: &str, role: Role) -> Result<(String, u64), TokenError> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: id.to_string(),
            email: email.to_owned(),
            role,
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            iat: now,
            exp: now + self.settings.ttl_secs,
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok((token, self.settings.ttl_secs))
    }

    /// Verifies a token: signature, algorithm, expiry, issuer, audience, subject.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|_| TokenError::Invalid)
    }
}
