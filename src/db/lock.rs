//! Names of per-schema locks: short, stable and distinct per schema, so two schemas never
//! serialise on one lock and two processes migrating one schema always meet on the same one.

use sha2::{Digest, Sha256};

/// MySQL/MariaDB `GET_LOCK` name for `schema` (≤ 64 characters whatever the schema's length).
pub fn mysql_lock_name(schema: &str) -> String {
    let digest = Sha256::digest(schema.as_bytes());
    format!("tenant_migrator:{}", &hex::encode(digest)[..40])
}

/// PostgreSQL advisory-lock key for `schema`: the first 8 bytes of SHA-256 of a namespaced
/// name, so keys do not collide with other applications' small integer keys.
pub fn postgres_lock_key(schema: &str) -> i64 {
    let digest = Sha256::digest(format!("tenant_migrator:{schema}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_differ() {
        let a = mysql_lock_name(&"a".repeat(63));
        assert!(a.len() <= 64);
        assert_ne!(mysql_lock_name("salon_a"), mysql_lock_name("salon_b"));
        assert_ne!(postgres_lock_key("salon_a"), postgres_lock_key("salon_b"));
        assert_eq!(postgres_lock_key("x"), postgres_lock_key("x"));
    }
}
