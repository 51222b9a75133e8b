//! [`Backend`]: which of the three database kinds a URL, a pool or a migration folder is
//! for. A leaf: configuration, the database layer and everything above name it.

use serde::Serialize;

/// The three supported database kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    MySql,
    Postgres,
    Sqlite,
}

impl Backend {
    /// Folder name of this backend's migrations (`migrations/<scope>/<folder>/`).
    pub fn folder(self) -> &'static str {
        match self {
            Backend::MySql => "mysql",
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }

    pub const ALL: [Backend; 3] = [Backend::MySql, Backend::Postgres, Backend::Sqlite];

    /// Quotes an identifier for this backend (doubling any embedded quote character).
    pub fn quote(self, ident: &str) -> String {
        match self {
            Backend::MySql => format!("`{}`", ident.replace('`', "``")),
            Backend::Postgres | Backend::Sqlite => format!("\"{}\"", ident.replace('"', "\"\"")),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.folder())
    }
}
