//! Where migrations come from: the set embedded in the binary or a `MIGRATIONS_DIR` with the
//! same layout (`<scope>/<dialect>/NNNN_snake_name.sql`). Loading validates everything up
//! front — file names, strictly increasing versions, statement splitting, and that every
//! dialect folder of a scope has the same versions and names — and computes each file's
//! SHA-256 checksum over its bytes (as written: placeholders are substituted later, see
//! [`super::placeholders`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::split::{Statement, split_statements};
use crate::db::Backend;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_migrations.rs"));
}

/// The two kinds of schema the engine migrates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The catalog (`tenants`, `admin_master_users`, jobs, audit log).
    Public,
    /// Every tenant schema.
    Tenant,
}

impl Scope {
    pub fn folder(self) -> &'static str {
        match self {
            Scope::Public => "public",
            Scope::Tenant => "tenant",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(Scope::Public),
            "tenant" => Some(Scope::Tenant),
            _ => None,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.folder())
    }
}

/// A migration file that did not pass validation. Names the file and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("{file}: {message}")]
    BadFile { file: String, message: String },
    #[error("{0}")]
    Inconsistent(String),
    #[error("migrations folder {0}: {1}")]
    Unreadable(String, String),
}

fn bad(file: &str, message: impl Into<String>) -> SourceError {
    SourceError::BadFile {
        file: file.to_owned(),
        message: message.into(),
    }
}

/// One migration file, validated and split.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: i64,
    pub name: String,
    /// Path relative to the migrations root (`tenant/mysql/0001_init.sql`).
    pub file: String,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub checksum: String,
    pub statements: Vec<Statement>,
}

impl Migration {
    pub fn as_ref(&self) -> crate::db::MigrationRef<'_> {
        crate::db::MigrationRef {
            version: self.version,
            name: &self.name,
            checksum: &self.checksum,
        }
    }
}

/// The ordered migrations of one scope for one backend.
#[derive(Debug, Clone)]
pub struct MigrationSet {
    pub scope: Scope,
    pub backend: Backend,
    pub migrations: Vec<Migration>,
}

impl MigrationSet {
    pub fn latest(&self) -> Option<i64> {
        self.migrations.last().map(|m| m.version)
    }

    pub fn get(&self, version: i64) -> Option<&Migration> {
        self.migrations
            .binary_search_by_key(&version, |m| m.version)
            .ok()
            .map(|i| &self.migrations[i])
    }
}

/// Where a source was loaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Embedded,
    Dir(PathBuf),
}

/// Every migration the program knows, per scope and backend.
#[derive(Debug, Clone)]
pub struct MigrationSource {
    pub origin: Origin,
    sets: BTreeMap<(Scope, &'static str), MigrationSet>,
}

/// Parses `NNNN_snake_name.sql` into (version, name).
pub fn parse_file_name(file_name: &str) -> Result<(i64, String), String> {
    let stem = file_name
        .strip_suffix(".sql")
        .ok_or_else(|| "migration files must end in .sql".to_owned())?;
    let (digits, name) = stem
        .split_once('_')
        .ok_or_else(|| "name must look like NNNN_snake_name.sql".to_owned())?;
    if digits.len() < 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("name must start with a version of at least 4 digits, e.g. 0001_".into());
    }
    let version: i64 = digits
        .parse()
        .map_err(|_| "version number is too large".to_owned())?;
    if version == 0 {
        return Err("version 0 is not allowed; start at 0001".into());
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err("the part after the version must be snake_case (a-z, 0-9, _)".into());
    }
    Ok((version, name.to_owned()))
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn checksum(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl MigrationSource {
    /// The migrations compiled into this binary.
    pub fn embedded() -> Result<Self, SourceError> {
        Self::from_files(
            Origin::Embedded,
            embedded::EMBEDDED
                .iter()
                .map(|(p, b)| ((*p).to_owned(), b.to_vec())),
        )
    }

    /// The migrations under `dir` (same layout as the repository's `migrations/`).
    pub fn from_dir(dir: &Path) -> Result<Self, SourceError> {
        let mut files = Vec::new();
        read_tree(dir, dir, &mut files)?;
        Self::from_files(Origin::Dir(dir.to_owned()), files.into_iter())
    }

    /// `MIGRATIONS_DIR` when given, the embedded set otherwise.
    pub fn load(dir: Option<&Path>) -> Result<Self, SourceError> {
        match dir {
            Some(d) => Self::from_dir(d),
            None => Self::embedded(),
        }
    }

    fn from_files(
        origin: Origin,
        files: impl Iterator<Item = (String, Vec<u8>)>,
    ) -> Result<Self, SourceError> {
        let mut sets: BTreeMap<(Scope, &'static str), MigrationSet> = BTreeMap::new();
        for (rel, bytes) in files {
            let parts: Vec<&str> = rel.split('/').collect();
            let [scope, dialect, file_name] = parts.as_slice() else {
                return Err(bad(
                    &rel,
                    "must sit at <scope>/<dialect>/NNNN_name.sql (scope public|tenant, dialect mysql|postgres|sqlite)",
                ));
            };
            let scope = Scope::parse(scope)
                .ok_or_else(|| bad(&rel, "unknown scope folder (expected public or tenant)"))?;
            let backend = Backend::ALL
                .into_iter()
                .find(|b| b.folder() == *dialect)
                .ok_or_else(|| {
                    bad(
                        &rel,
                        "unknown dialect folder (expected mysql, postgres or sqlite)",
                    )
                })?;
            let (version, name) = parse_file_name(file_name).map_err(|m| bad(&rel, m))?;
            let text = std::str::from_utf8(&bytes)
                .map_err(|e| bad(&rel, format!("is not UTF-8 ({e})")))?;
            let statements =
                split_statements(text, backend).map_err(|e| bad(&rel, e.to_string()))?;
            let set = sets
                .entry((scope, backend.folder()))
                .or_insert_with(|| MigrationSet {
                    scope,
                    backend,
                    migrations: Vec::new(),
                });
            set.migrations.push(Migration {
                version,
                name,
                file: rel.clone(),
                checksum: checksum(&bytes),
                statements,
            });
        }
        for set in sets.values_mut() {
            set.migrations.sort_by_key(|m| m.version);
            if let Some(w) = set
                .migrations
                .windows(2)
                .find(|w| w[0].version == w[1].version)
            {
                return Err(bad(
                    &w[1].file,
                    format!("version {} is also used by {}", w[1].version, w[0].file),
                ));
            }
        }
        let source = Self { origin, sets };
        source.check_dialects_agree()?;
        Ok(source)
    }

    /// Every dialect folder of a scope must list the same versions with the same names.
    fn check_dialects_agree(&self) -> Result<(), SourceError> {
        for scope in [Scope::Public, Scope::Tenant] {
            let sets: Vec<&MigrationSet> =
                self.sets.values().filter(|s| s.scope == scope).collect();
            let Some(first) = sets.first() else { continue };
            let key = |s: &MigrationSet| -> Vec<(i64, String)> {
                s.migrations
                    .iter()
                    .map(|m| (m.version, m.name.clone()))
                    .collect()
            };
            let reference = key(first);
            for other in &sets[1..] {
                let theirs = key(other);
                if theirs != reference {
                    let only = |a: &[(i64, String)], b: &[(i64, String)]| -> Vec<String> {
                        a.iter()
                            .filter(|x| !b.contains(x))
                            .map(|(v, n)| format!("{v:04}_{n}"))
                            .collect()
                    };
                    return Err(SourceError::Inconsistent(format!(
                        "{scope} migrations differ between dialects: only in {}: [{}]; only in {}: [{}]",
                        first.backend,
                        only(&reference, &theirs).join(", "),
                        other.backend,
                        only(&theirs, &reference).join(", "),
                    )));
                }
            }
        }
        Ok(())
    }

    /// The migrations of `scope` for `backend`; an empty set when the folder is absent.
    pub fn set(&self, scope: Scope, backend: Backend) -> MigrationSet {
        self.sets
            .get(&(scope, backend.folder()))
            .cloned()
            .unwrap_or(MigrationSet {
                scope,
                backend,
                migrations: Vec::new(),
            })
    }

    /// True when some dialect folder exists for `scope` but not the one for `backend`.
    pub fn missing_dialect(&self, scope: Scope, backend: Backend) -> bool {
        self.sets.keys().any(|(s, _)| *s == scope)
            && !self.sets.contains_key(&(scope, backend.folder()))
    }
}

/// Reads every `.sql` file under `dir` (sorted), as paths relative to `root`.
///
/// Only real folders and regular files are followed: a symbolic link (or a FIFO, a device …)
/// anywhere inside the migrations folder is refused, naming it, before anything is read
/// through it. A link there could make the migrator read any file it may read — its text then
/// runs as SQL and ends up in error messages and `last_error`, which every viewer can read.
/// `dir` itself (`MIGRATIONS_DIR`) may be a link: the operator chose it.
fn read_tree(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) -> Result<(), SourceError> {
    let unreadable =
        |e: std::io::Error| SourceError::Unreadable(dir.display().to_string(), e.to_string());
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .collect::<Result<_, _>>()
        .map_err(unreadable)?;
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        let rel = relative(root, &path)?;
        // The entry's own type: a link is reported as a link, never as what it points to.
        let kind = entry
            .file_type()
            .map_err(|e| SourceError::Unreadable(rel.clone(), e.to_string()))?;
        if kind.is_symlink() {
            return Err(bad(
                &rel,
                "is a symbolic link; migration files and folders must be real files inside \
                 the migrations folder (copy the file instead). Nothing was read through it",
            ));
        } else if kind.is_dir() {
            read_tree(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "sql") {
            if !kind.is_file() {
                return Err(bad(&rel, "is not a regular file"));
            }
            out.push((rel.clone(), read_regular(&path, &rel)?));
        }
    }
    Ok(())
}

/// `path` relative to `root`, with `/` separators (`tenant/mysql/0001_init.sql`).
fn relative(root: &Path, path: &Path) -> Result<String, SourceError> {
    Ok(path
        .strip_prefix(root)
        .map_err(|e| SourceError::Unreadable(path.display().to_string(), e.to_string()))?
        .to_string_lossy()
        .replace('\\', "/"))
}

/// The bytes of the regular file at `path`, refusing (before reading) a file that was
/// replaced by a link or anything else since the folder was listed.
fn read_regular(path: &Path, rel: &str) -> Result<Vec<u8>, SourceError> {
    use std::io::Read;
    let io = |e: std::io::Error| SourceError::Unreadable(path.display().to_string(), e.to_string());
    let listed = std::fs::symlink_metadata(path).map_err(io)?;
    if !listed.file_type().is_file() {
        return Err(bad(
            rel,
            "changed while being read; it is not a regular file",
        ));
    }
    let mut file = std::fs::File::open(path).map_err(io)?;
    let opened = file.metadata().map_err(io)?;
    if !opened.is_file() || !same_file(&listed, &opened) {
        return Err(bad(
            rel,
            "changed while being read; it is not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    Ok(bytes)
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Result<MigrationSource, SourceError> {
        MigrationSource::from_files(
            Origin::Embedded,
            list.iter()
                .map(|(p, s)| ((*p).to_owned(), s.as_bytes().to_vec()))
                .collect::<Vec<_>>()
                .into_iter(),
        )
    }

    #[test]
    fn embedded_set_loads_and_dialects_agree() {
        let s = MigrationSource::embedded().expect("shipped migrations are valid");
        for scope in [Scope::Public, Scope::Tenant] {
            let versions = |b| -> Vec<(i64, String)> {
                s.set(scope, b)
                    .migrations
                    .iter()
                    .map(|m| (m.version, m.name.clone()))
                    .collect()
            };
            let mysql = versions(Backend::MySql);
            assert!(!mysql.is_empty(), "{scope} has migrations");
            assert_eq!(mysql, versions(Backend::Sqlite), "{scope}: mysql vs sqlite");
            assert_eq!(
                mysql,
                versions(Backend::Postgres),
                "{scope}: mysql vs postgres"
            );
        }
    }

    #[test]
    fn file_names_are_validated() {
        assert_eq!(
            parse_file_name("0001_init.sql").unwrap(),
            (1, "init".into())
        );
        assert_eq!(parse_file_name("20240101_x2.sql").unwrap().0, 20240101);
        for bad in [
            "1_init.sql",
            "0001-init.sql",
            "0001_Init.sql",
            "0001_.sql",
            "0000_x.sql",
            "0001_init.txt",
            "abcd_x.sql",
        ] {
            assert!(parse_file_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn duplicate_versions_and_disagreeing_dialects_are_refused() {
        let e = files(&[
            ("tenant/mysql/0001_a.sql", ""),
            ("tenant/mysql/0001_b.sql", ""),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("also used by"), "{e}");
        let e = files(&[
            ("tenant/mysql/0001_a.sql", ""),
            ("tenant/sqlite/0001_b.sql", ""),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("differ between dialects"), "{e}");
        let e = files(&[("tenant/oracle/0001_a.sql", "")]).unwrap_err();
        assert!(e.to_string().contains("unknown dialect"), "{e}");
        let e = files(&[("tenant/mysql/0001_a.sql", "SELECT 'x")]).unwrap_err();
        assert!(e.to_string().contains("unterminated"), "{e}");
    }

    /// A migrations folder with one valid tenant migration per dialect, and a secret file
    /// outside it.
    #[cfg(unix)]
    fn tree_and_secret() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path().join("migrations");
        for b in Backend::ALL {
            let d = root.join("tenant").join(b.folder());
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("0001_init.sql"), "CREATE TABLE t (id INTEGER);\n")
                .expect("write");
        }
        let secret = tmp.path().join("secret.txt");
        std::fs::write(&secret, "root:x:0:0:TOP-SECRET-LINE:/root:/bin/bash\n").expect("write");
        (tmp, root, secret)
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_files_are_refused_unread() {
        use std::os::unix::fs::symlink;
        let (_tmp, root, secret) = tree_and_secret();
        assert!(MigrationSource::from_dir(&root).is_ok());
        for b in Backend::ALL {
            symlink(
                &secret,
                root.join("tenant").join(b.folder()).join("0002_passwd.sql"),
            )
            .expect("symlink");
        }
        let e = MigrationSource::from_dir(&root).expect_err("a symlinked file is refused");
        let msg = e.to_string();
        assert!(
            msg.contains("tenant/mysql/0002_passwd.sql") && msg.contains("symbolic link"),
            "{msg}"
        );
        assert!(!msg.contains("TOP-SECRET"), "{msg}");
        // A link to another migration is no better: links are refused, whatever they name.
        let mysql = root.join("tenant").join("mysql");
        std::fs::remove_file(mysql.join("0002_passwd.sql")).expect("rm");
        symlink(mysql.join("0001_init.sql"), mysql.join("0002_passwd.sql")).expect("symlink");
        let e = MigrationSource::from_dir(&root).expect_err("refused");
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_folders_are_refused_unread() {
        use std::os::unix::fs::symlink;
        let (tmp, root, _secret) = tree_and_secret();
        // A dialect folder that is a link to a folder outside.
        let outside = tmp.path().join("elsewhere");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(outside.join("0001_init.sql"), "SELECT 'TOP-SECRET';\n").expect("write");
        let sqlite = root.join("tenant").join("sqlite");
        std::fs::remove_dir_all(&sqlite).expect("rm");
        symlink(&outside, &sqlite).expect("symlink");
        let e = MigrationSource::from_dir(&root).expect_err("a symlinked folder is refused");
        let msg = e.to_string();
        assert!(
            msg.contains("tenant/sqlite:") && msg.contains("symbolic link"),
            "{msg}"
        );
        assert!(!msg.contains("TOP-SECRET"), "{msg}");
        // A scope folder too.
        std::fs::remove_file(&sqlite).expect("rm link");
        let public = root.join("public");
        symlink(root.join("tenant"), &public).expect("symlink");
        let e = MigrationSource::from_dir(&root).expect_err("refused");
        assert!(e.to_string().starts_with("public:"), "{e}");
        // The migrations folder itself may be a link: the operator chose it.
        std::fs::remove_file(&public).expect("rm link");
        let via = tmp.path().join("current");
        symlink(&root, &via).expect("symlink");
        let s = MigrationSource::from_dir(&via).expect("a linked MIGRATIONS_DIR loads");
        assert_eq!(s.set(Scope::Tenant, Backend::MySql).latest(), Some(1));
    }

    #[cfg(unix)]
    #[test]
    fn special_files_are_refused_unread() {
        let (_tmp, root, _secret) = tree_and_secret();
        let fifo = root.join("tenant").join("mysql").join("0002_pipe.sql");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !made {
            return; // no mkfifo here; the symlink tests cover the rule
        }
        // Reading a FIFO would block forever; it is refused without being opened.
        let e = MigrationSource::from_dir(&root).expect_err("a FIFO is refused");
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn checksum_is_sha256_of_bytes() {
        assert_eq!(
            checksum(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
