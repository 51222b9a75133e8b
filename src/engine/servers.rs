//! The engine's side of several database servers: which server a tenant lives on, where a new
//! tenant goes (placement), what each server holds and whether it answers (`status`,
//! `GET /servers`), and the start-up rule that a server still holding tenants cannot vanish
//! from the configuration.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use serde::Serialize;
use tracing::{debug, instrument};

use super::{Engine, EngineError};
use crate::catalog::TenantRow;
use crate::config::ConfigError;
use crate::db::TenantServer;
use crate::domain::ValidationError;

/// How many tenants of a server the catalog records at one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VersionCount {
    /// `null`: not migrated yet (being provisioned, or failed before its first migration).
    pub version: Option<i64>,
    pub tenants: i64,
}

/// One tenant server as `status` and `GET /servers` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ServerStatus {
    pub name: String,
    /// Keeps its tenants, gets no new ones (`DRAINING_SERVERS`).
    pub draining: bool,
    /// Answered a round trip just now.
    pub reachable: bool,
    /// Why it did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Where it is, without credentials.
    pub location: String,
    /// Tenants the catalog places on it (every status).
    pub tenants: i64,
    /// Its tenants by recorded schema version, oldest first.
    pub versions: Vec<VersionCount>,
    /// Tenant connections a fleet run opens on it at most.
    pub pool_size: u32,
}

impl Engine {
    /// The server a tenant row names.
    pub(crate) fn server_of(&self, row: &TenantRow) -> Result<&TenantServer, EngineError> {
        Ok(self.servers().require(&row.server)?)
    }

    /// The configured server a user named (`--server`, `"server"`), or a validation error
    /// listing the servers there are.
    pub(crate) fn named_server(&self, name: &str) -> Result<&TenantServer, EngineError> {
        self.servers().get(name).ok_or_else(|| {
            ValidationError::new(
                "server",
                format!(
                    "no server is named {:?} (servers: {})",
                    name.chars().take(64).collect::<String>(),
                    self.servers().names().join(", ")
                ),
            )
            .into()
        })
    }

    /// The server a user named for new tenants: configured and not draining.
    pub(crate) fn server_for_new_tenants(&self, name: &str) -> Result<&TenantServer, EngineError> {
        let server = self.named_server(name)?;
        if server.draining {
            return Err(ValidationError::new(
                "server",
                format!("server {name} is draining (DRAINING_SERVERS): it gets no new tenants"),
            )
            .into());
        }
        Ok(server)
    }

    /// Refuses to start when the catalog places tenants on a server the configuration does not
    /// name: renaming or removing such a server would orphan them. Without a catalog (nothing
    /// created yet) there is nothing to check.
    pub(crate) async fn check_servers_hold_their_tenants(&self) -> Result<(), EngineError> {
        let counts = match self.catalog().count_by_server_version().await {
            Ok(c) => c,
            Err(e) => {
                debug!(error = %e, "no tenants to check the servers against");
                return Ok(());
            }
        };
        let mut orphaned: BTreeMap<&str, i64> = BTreeMap::new();
        for (server, _, n) in &counts {
            if self.servers().get(server).is_none() {
                *orphaned.entry(server.as_str()).or_default() += n;
            }
        }
        if orphaned.is_empty() {
            return Ok(());
        }
        let listed: Vec<String> = orphaned
            .iter()
            .map(|(s, n)| format!("{n} on {s}"))
            .collect();
        let variable = if self.config().servers.len() > 1
            || self.config().servers[0].name != crate::config::DEFAULT_SERVER
        {
            "TENANT_SERVERS"
        } else {
            "TENANT_URL_TEMPLATE"
        };
        Err(ConfigError::new(
            variable,
            format!(
                "the catalog has tenants on servers this configuration does not name ({}; \
                 configured: {}). A server that holds tenants cannot be renamed or removed: \
                 name it in TENANT_SERVERS again; its URL template may change, after a \
                 failover for example (TENANT_URL_TEMPLATE alone is the server called \
                 default). Nothing was changed",
                listed.join(", "),
                self.servers().names().join(", ")
            ),
        )
        .into())
    }

    /// With several servers, the ones that do not answer now (checked side by side, a fresh
    /// connection each), with why: new tenants are placed elsewhere, and those asked for on
    /// such a server fail at once. With one server, none (its pool reports the problem).
    pub(crate) async fn servers_down(&self) -> BTreeMap<String, String> {
        if self.servers().len() < 2 {
            return BTreeMap::new();
        }
        let pings = join_all(self.servers().iter().map(|s| s.ping())).await;
        self.servers()
            .iter()
            .zip(pings)
            .filter_map(|(s, ping)| ping.err().map(|why| (s.name.clone(), why)))
            .collect()
    }

    /// Where `count` new tenants go: the server named by `asked` (which must be configured
    /// and not draining), else, one by one, the active server holding the fewest tenants
    /// (ties: the first configured).
    /// `catalog_ready` false: there is no catalog yet (a dry run), so no server holds any.
    /// Servers in `down` get none while another active server answers.
    pub(crate) async fn place(
        &self,
        count: usize,
        asked: Option<&str>,
        catalog_ready: bool,
        down: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, EngineError> {
        if let Some(name) = asked {
            let server = self.server_for_new_tenants(name)?;
            return Ok(vec![server.name.clone(); count]);
        }
        let mut active: Vec<&str> = self
            .servers()
            .iter()
            .filter(|s| !s.draining)
            .map(|s| s.name.as_str())
            .collect();
        if active.iter().any(|s| !down.contains_key(*s)) {
            active.retain(|s| !down.contains_key(*s));
        }
        if active.is_empty() {
            return Err(EngineError::Config(ConfigError::new(
                "DRAINING_SERVERS",
                "every server is draining: no server takes new tenants",
            )));
        }
        if active.len() == 1 {
            return Ok(vec![active[0].to_owned(); count]);
        }
        let mut load: Vec<i64> = vec![0; active.len()];
        let counts = match catalog_ready {
            true => {
                crate::db::retry_read("tenants per server", || {
                    self.catalog().count_by_server_version()
                })
                .await?
            }
            false => Vec::new(),
        };
        for (server, _, n) in counts {
            if let Some(i) = active.iter().position(|a| *a == server) {
                load[i] += n;
            }
        }
        Ok((0..count)
            .map(|_| {
                let i = (0..active.len())
                    .min_by_key(|i| (load[*i], *i))
                    .unwrap_or_default();
                load[i] += 1;
                active[i].to_owned()
            })
            .collect())
    }

    /// Every configured server: its tenants by version (from the catalog, when there is one)
    /// and whether it answers now (all servers checked side by side).
    #[instrument(skip_all, fields(servers = self.servers().len()))]
    pub async fn server_statuses(&self) -> Result<Vec<ServerStatus>, EngineError> {
        let counts = match self.catalog_state().await? {
            crate::db::SchemaState::History(rows) if !rows.is_empty() => {
                self.catalog().count_by_server_version().await?
            }
            _ => Vec::new(),
        };
        let pings = join_all(self.servers().iter().map(|s| s.ping())).await;
        Ok(self
            .servers()
            .iter()
            .zip(&self.config().servers)
            .zip(pings)
            .map(|((s, spec), ping)| {
                let versions: Vec<VersionCount> = counts
                    .iter()
                    .filter(|(server, _, _)| *server == s.name)
                    .map(|(_, version, n)| VersionCount {
                        version: *version,
                        tenants: *n,
                    })
                    .collect();
                ServerStatus {
                    name: s.name.clone(),
                    draining: s.draining,
                    reachable: ping.is_ok(),
                    error: ping.err(),
                    location: spec.tenants.redacted(),
                    tenants: versions.iter().map(|v| v.tenants).sum(),
                    versions,
                    pool_size: s.dialect().tenant_pool_size(),
                }
            })
            .collect())
    }
}
