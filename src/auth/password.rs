//! Password hashing with argon2id (OWASP parameters: 19 MiB, 2 passes, 1 lane). Hashing is
//! CPU-heavy on purpose; async callers run it on the blocking pool. Verification can work in
//! caller-owned memory ([`CheckMemory`]), so a service that bounds its checks at once also
//! bounds their memory: nothing is allocated per check, and no freed 19 MiB block lingers in
//! an allocator arena of whichever thread ran it.

use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, PasswordHasher, Version};

/// Shortest password accepted for an admin user.
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longest password accepted (bounds hashing work per request).
pub const MAX_PASSWORD_LEN: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error("password must be at most {MAX_PASSWORD_LEN} characters")]
    TooLong,
    #[error("password hashing failed: {0}")]
    Hash(String),
}

fn hasher() -> Argon2<'static> {
    // OWASP: m=19456 KiB, t=2, p=1. These constants are valid by construction.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Validates `password`'s length and returns its PHC-format argon2id hash.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(PasswordError::TooShort);
    }
    if n > MAX_PASSWORD_LEN {
        return Err(PasswordError::TooLong);
    }
    let hash: PasswordHash = hasher()
        .hash_password(password.as_bytes())
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(hash.to_string())
}

/// Working memory of one password check, reused from check to check.
#[derive(Default)]
pub struct CheckMemory(Vec<Block>);

impl CheckMemory {
    /// Memory for hashes with the parameters this module writes (19 MiB).
    pub fn for_default_params() -> Self {
        let blocks = Params::new(19 * 1024, 2, 1, None)
            .map(|p| p.block_count())
            .unwrap_or_default();
        Self(vec![Block::default(); blocks])
    }
}

/// True when `password` matches `hash`. A malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    verify_password_in(password, hash, &mut CheckMemory::default())
}

/// [`verify_password`] in `memory`, grown only when `hash` asks for more than it holds.
pub fn verify_password_in(password: &str, hash: &str, memory: &mut CheckMemory) -> bool {
    if password.len() > MAX_PASSWORD_LEN * 4 {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.0.len() < blocks {
        memory.0.resize(blocks, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let computed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password.as_bytes(),
        salt.as_ref(),
        &mut out,
        &mut memory.0[..blocks],
    );
    // `Output` compares in constant time.
    computed.is_ok() && argon2::password_hash::phc::Output::new(&out).is_ok_and(|o| &o == expected)
}

/// A valid hash of a random password, verified against when the e-mail is unknown so that
/// unknown and known e-mails cost the same time.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&uuid::Uuid::new_v4().to_string()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterz", &h));
        assert!(!verify_password("x", "not a hash"));
        let mut memory = CheckMemory::for_default_params();
        let before = memory.0.as_ptr();
        assert!(verify_password_in("correct horse battery", &h, &mut memory));
        assert!(!verify_password_in(
            "correct horse batterz",
            &h,
            &mut memory
        ));
        assert_eq!(
            memory.0.as_ptr(),
            before,
            "the memory was reused, not reallocated"
        );
        assert!(matches!(
            hash_password("short"),
            Err(PasswordError::TooShort)
        ));
    }
}
