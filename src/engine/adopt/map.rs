//! The team's `alembic-map.toml`: which migration version each Alembic revision is at.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::config::ConfigError;
use crate::migrate::MigrationSet;

/// The team's map from Alembic revision ids to migration versions (`alembic-map.toml`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlembicMap {
    /// Revisions of the tenants' `alembic_version`.
    pub tenant: BTreeMap<String, i64>,
    /// Revisions of the catalog's own `alembic_version`, when the catalog was Alembic-managed.
    pub public: BTreeMap<String, i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MapFile {
    #[serde(default)]
    tenant: BTreeMap<String, i64>,
    #[serde(default)]
    public: BTreeMap<String, i64>,
}

fn map_error(message: impl Into<String>) -> ConfigError {
    ConfigError::new("--map", message)
}

impl AlembicMap {
    /// Reads and parses the map file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| map_error(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| map_error(format!("{}: {}", path.display(), e.message)))
    }

    /// Parses a map: `[tenant]` (required, not empty) and `[public]` (optional) tables of
    /// `"revision" = version`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let file: MapFile = toml::from_str(text).map_err(|e| map_error(e.to_string()))?;
        if file.tenant.is_empty() {
            return Err(map_error(
                "the [tenant] section is missing or empty: map each Alembic revision id to a version, e.g. \"1f2e3d4c5b6a\" = 1",
            ));
        }
        for (section, revisions) in [("tenant", &file.tenant), ("public", &file.public)] {
            for (revision, version) in revisions {
                if revision.is_empty()
                    || revision.len() > 255
                    || revision
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(map_error(format!(
                        "[{section}]: {revision:?} is not an Alembic revision id"
                    )));
                }
                if *version < 1 {
                    return Err(map_error(format!(
                        "[{section}]: revision {revision} maps to {version}; versions start at 1"
                    )));
                }
            }
        }
        Ok(Self {
            tenant: file.tenant,
            public: file.public,
        })
    }

    /// Every version the map names must be a migration of its scope.
    pub(super) fn check(
        &self,
        tenant: &MigrationSet,
        public: &MigrationSet,
    ) -> Result<(), ConfigError> {
        for (section, revisions, set) in [
            ("tenant", &self.tenant, tenant),
            ("public", &self.public, public),
        ] {
            for (revision, version) in revisions {
                if set.get(*version).is_none() {
                    return Err(map_error(format!(
                        "[{section}]: revision {revision} maps to version {version}, but no {} \
                         migration has that version (newest is {})",
                        set.scope,
                        set.latest()
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "none".into())
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_needs_a_tenant_section_of_revisions_to_positive_versions() {
        let m =
            AlembicMap::parse("[tenant]\n\"1f2e3d4c5b6a\" = 1\n\"a9b8c7d6e5f4\" = 2\n[public]\n")
                .expect("valid map");
        assert_eq!(m.tenant.get("a9b8c7d6e5f4"), Some(&2));
        assert!(m.public.is_empty());
        for bad in [
            "",
            "[public]\n\"x\" = 1\n",
            "[tenant]\n",
            "[tenant]\n\"abc\" = 0\n",
            "[tenant]\n\"abc\" = \"one\"\n",
            "[tenant]\n\"a b\" = 1\n",
            "[tenants]\n\"abc\" = 1\n",
            "[tenant\n",
        ] {
            let e = AlembicMap::parse(bad).expect_err(bad);
            assert_eq!(e.variable, "--map", "{bad}");
        }
    }
}
