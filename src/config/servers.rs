//! The database servers that hold tenants: `TENANT_SERVERS` (comma-separated `name=URL
//! template` pairs, or `@FILE` with one pair per line), or `TENANT_URL_TEMPLATE` alone (or
//! nothing: the catalog's own server) as one server called [`DEFAULT_SERVER`]; and
//! `DRAINING_SERVERS`, the servers that keep their tenants but get no new ones.
//!
//! Servers are configuration, not catalog rows, so their credentials stay in the
//! environment; the catalog only records each tenant's server name (`tenants.server`).

use std::collections::BTreeSet;
use std::path::Path;

use super::{ConfigError, DbLocation, TenantLocation, tenant_location};

/// The name of the one server of a configuration without `TENANT_SERVERS`.
pub const DEFAULT_SERVER: &str = "default";
/// Longest server name (the width of `tenants.server`).
pub const MAX_SERVER_NAME: usize = 64;

const VAR: &str = "TENANT_SERVERS";
const DRAINING: &str = "DRAINING_SERVERS";

/// One database server that holds tenant schemas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// Its name, as recorded in `tenants.server`.
    pub name: String,
    /// Where its tenants live.
    pub tenants: TenantLocation,
}

/// Whether `name` can name a server: 1 to 64 of ASCII letters, digits, `_` and `-`.
pub fn is_server_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SERVER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The configured servers, in the order given (the first one is where the tool builds its
/// scratch schemas and where `adopt` looks unless told otherwise).
pub(super) fn servers(
    catalog: &DbLocation,
    tenant_servers: Option<&str>,
    template: Option<&str>,
    data_dir: &Path,
) -> Result<Vec<ServerSpec>, ConfigError> {
    let tenant_servers = tenant_servers.map(str::trim).filter(|s| !s.is_empty());
    let Some(raw) = tenant_servers else {
        return Ok(vec![ServerSpec {
            name: DEFAULT_SERVER.into(),
            tenants: tenant_location(catalog, template, data_dir)?,
        }]);
    };
    if template.is_some_and(|t| !t.trim().is_empty()) {
        return Err(ConfigError::new(
            VAR,
            "is set together with TENANT_URL_TEMPLATE: set one of them (TENANT_URL_TEMPLATE \
             alone is one server called default)",
        ));
    }
    let text = match raw.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file.trim())
            .map_err(|e| ConfigError::new(VAR, format!("cannot read {}: {e}", file.trim())))?,
        None => raw.replace(',', "\n"),
    };
    let mut out: Vec<ServerSpec> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let entry = i + 1;
        let Some((name, url)) = line.split_once('=') else {
            return Err(ConfigError::new(
                VAR,
                format!(
                    "entry {entry} is not name=URL-template, e.g. \
                     db1=mysql://user:pass@host1:3306/{{schema}}"
                ),
            ));
        };
        let name = name.trim();
        if !is_server_name(name) {
            let shown: String = name.chars().take(40).collect();
            return Err(ConfigError::new(
                VAR,
                format!(
                    "{shown:?} (entry {entry}) is not a server name: 1 to {MAX_SERVER_NAME} \
                     letters, digits, _ or -"
                ),
            ));
        }
        if out.iter().any(|s| s.name == name) {
            return Err(ConfigError::new(
                VAR,
                format!("server {name} is named twice"),
            ));
        }
        let tenants = tenant_location(catalog, Some(url.trim()), data_dir)
            .map_err(|e| ConfigError::new(VAR, format!("server {name}: {}", e.message)))?;
        if let Some(same) = out.iter().find(|s| s.tenants == tenants) {
            return Err(ConfigError::new(
                VAR,
                format!(
                    "servers {} and {name} are the same place: a tenant must have one home",
                    same.name
                ),
            ));
        }
        out.push(ServerSpec {
            name: name.to_owned(),
            tenants,
        });
    }
    if out.is_empty() {
        return Err(ConfigError::new(VAR, "names no server"));
    }
    Ok(out)
}

/// The servers named in `DRAINING_SERVERS` (comma-separated), each of them configured.
pub(super) fn draining(
    raw: Option<&str>,
    servers: &[ServerSpec],
) -> Result<BTreeSet<String>, ConfigError> {
    let mut out = BTreeSet::new();
    for name in raw.unwrap_or_default().split(',').map(str::trim) {
        if name.is_empty() {
            continue;
        }
        if !servers.iter().any(|s| s.name == name) {
            let shown: String = name.chars().take(40).collect();
            let known: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
            return Err(ConfigError::new(
                DRAINING,
                format!(
                    "{shown:?} is not a configured server (servers: {})",
                    known.join(", ")
                ),
            ));
        }
        out.insert(name.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn mysql_catalog() -> DbLocation {
        super::super::parse_location("mysql://root:secret@h0:3306/cat", "DATABASE_URL")
            .expect("valid")
    }

    #[test]
    fn pairs_are_parsed_in_order_and_one_template_is_the_default_server() {
        let c = mysql_catalog();
        let s = servers(
            &c,
            Some("db1=mysql://u:p@h1:3306/{schema}, db2=mysql://u:p@h2:3307/{schema}"),
            None,
            &PathBuf::from("data"),
        )
        .expect("valid");
        assert_eq!(
            s.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["db1", "db2"]
        );
        let one = servers(
            &c,
            None,
            Some("mysql://u:p@h1:3306/{schema}"),
            Path::new("d"),
        )
        .expect("valid");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].name, DEFAULT_SERVER);
    }

    #[test]
    fn bad_lists_are_refused_naming_the_variable_without_passwords() {
        let c = mysql_catalog();
        let d = Path::new("data");
        for (raw, needle) in [
            ("db1", "not name=URL-template"),
            ("bad name=mysql://u:p@h/{schema}", "not a server name"),
            (
                "a=mysql://u:p@h1/{schema},a=mysql://u:p@h2/{schema}",
                "named twice",
            ),
            (
                "a=mysql://u:p@h1/{schema},b=mysql://u:p@h1/{schema}",
                "same place",
            ),
            ("a=mysql://u:hunter2@h1/db", "{schema}"),
            (
                "a=postgres://u:hunter2@h1/db?search_path={schema}",
                "same kind",
            ),
        ] {
            let e = servers(&c, Some(raw), None, d).expect_err(raw);
            assert_eq!(e.variable, VAR, "{raw}");
            assert!(e.message.contains(needle), "{raw}: {}", e.message);
            assert!(!e.message.contains("hunter2"), "{}", e.message);
        }
        let e = servers(
            &c,
            Some("a=mysql://u:p@h1/{schema}"),
            Some("mysql://u:p@h1/{schema}"),
            d,
        )
        .expect_err("both set");
        assert!(e.message.contains("TENANT_URL_TEMPLATE"), "{}", e.message);
    }

    #[test]
    fn draining_names_must_be_servers() {
        let c = mysql_catalog();
        let s = servers(
            &c,
            Some("a=mysql://u:p@h1/{schema},b=mysql://u:p@h2/{schema}"),
            None,
            Path::new("d"),
        )
        .expect("valid");
        assert_eq!(
            draining(Some(" b ,"), &s).expect("valid"),
            BTreeSet::from(["b".to_owned()])
        );
        let e = draining(Some("c"), &s).expect_err("unknown");
        assert_eq!(e.variable, DRAINING);
        assert!(e.message.contains("servers: a, b"), "{}", e.message);
    }

    #[test]
    fn a_file_holds_one_pair_per_line() {
        let dir = std::env::temp_dir().join(format!("tm-servers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let file = dir.join("servers");
        std::fs::write(
            &file,
            "# fleet servers\ndb1=mysql://u:p@h1:3306/{schema}\n\ndb2=mysql://u:p@h2:3306/{schema}\n",
        )
        .expect("write");
        let s = servers(
            &mysql_catalog(),
            Some(&format!("@{}", file.display())),
            None,
            Path::new("d"),
        )
        .expect("valid");
        assert_eq!(s.len(), 2);
        let e = servers(
            &mysql_catalog(),
            Some("@/nonexistent/servers"),
            None,
            Path::new("d"),
        )
        .expect_err("missing file");
        assert!(e.message.contains("cannot read"), "{}", e.message);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
