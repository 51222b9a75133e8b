//! Admin authentication primitives: argon2id password hashes (`password`) and HS256 access
//! tokens with a pinned algorithm and required `iss`/`aud`/`exp`/`sub` (`token`). The HTTP
//! layer's extractor and the `create-admin` command build on these.

pub mod password;
pub mod token;

pub use password::{MIN_PASSWORD_LEN, PasswordError, hash_password, verify_password};
pub use token::{Claims, TokenError, TokenKeys, TokenSettings};
