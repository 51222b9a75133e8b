//! The tenant servers of a configuration, connected: one [`Dialect`] per server, each with
//! its own bounded tenant pool (`TENANT_ENGINE_POOL_SIZE` connections), so a fleet run works
//! the servers side by side and never holds more than pool + 2 connections on any of them
//! (the 2 being the catalog's, on the catalog's server).
//!
//! The first server's dialect also serves the catalog. With several servers, a tenant server
//! that cannot be reached at start-up is only logged: its tenants fail (each reported as
//! such) until it is back, and the others are worked on as usual.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::join_all;

use tracing::warn;

use super::{ConnectMode, DbError, Dialect, SchemaState, Target, connect};
use crate::config::{Config, ConfigError};

/// One connected tenant server.
pub struct TenantServer {
    pub name: String,
    /// Keeps its tenants, gets no new ones (`DRAINING_SERVERS`).
    pub draining: bool,
    dialect: Arc<dyn Dialect>,
}

impl TenantServer {
    pub fn dialect(&self) -> &dyn Dialect {
        self.dialect.as_ref()
    }

    /// Whether the server answers now (see [`Dialect::ping`]): `Err` carries why not. A
    /// server that refuses the connection because a connection limit is reached answers: it
    /// is busy, not gone.
    pub async fn ping(&self) -> Result<(), String> {
        match self.dialect.ping().await {
            Err(e) if !e.is_connection_refused_by_limit() => Err(e.to_string()),
            _ => Ok(()),
        }
    }
}

/// Every configured tenant server, in the configured order.
pub struct Servers {
    list: Vec<TenantServer>,
}

impl Servers {
    /// Connects every server of `config`. The first one (which also holds the catalog's pool)
    /// is checked as [`ConnectMode::STRICT`] when it is the only one; with several, only the
    /// catalog's server must answer.
    pub async fn connect(config: &Config) -> Result<Servers, ConfigError> {
        let several = config.servers.len() > 1;
        let first = &config.servers[0];
        let first_dialect = connect(
            &config.for_server(first),
            ConnectMode {
                probe_catalog: true,
                strict_tenants: !several,
            },
        )
        .await?;
        let rest = join_all(config.servers[1..].iter().map(|s| async move {
            let dialect = connect(
                &config.for_server(s),
                ConnectMode {
                    probe_catalog: false,
                    strict_tenants: false,
                },
            )
            .await?;
            Ok::<_, ConfigError>(TenantServer {
                name: s.name.clone(),
                draining: config.draining.contains(&s.name),
                dialect,
            })
        }))
        .await;
        let mut list = vec![TenantServer {
            name: first.name.clone(),
            draining: config.draining.contains(&first.name),
            dialect: first_dialect,
        }];
        for s in rest {
            list.push(s?);
        }
        Ok(Servers { list })
    }

    /// The dialect that holds the catalog's pool (the first server's).
    pub fn catalog_dialect(&self) -> &dyn Dialect {
        self.list[0].dialect.as_ref()
    }

    /// The first server: where scratch schemas are built.
    pub fn first(&self) -> &TenantServer {
        &self.list[0]
    }

    pub fn get(&self, name: &str) -> Option<&TenantServer> {
        self.list.iter().find(|s| s.name == name)
    }

    /// The server named `name`, or why there is none.
    pub fn require(&self, name: &str) -> Result<&TenantServer, DbError> {
        self.get(name).ok_or_else(|| {
            DbError::Unexpected(format!(
                "the tenant is on server {name}, which this process does not know (servers: \
                 {}); set TENANT_SERVERS as on the process that created it",
                self.names().join(", ")
            ))
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &TenantServer> {
        self.list.iter()
    }

    pub fn names(&self) -> Vec<&str> {
        self.list.iter().map(|s| s.name.as_str()).collect()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The unlocked history of each `(server, schema)`, read in batches, one per server and
    /// the servers side by side (transient failures retried). A schema whose server is unknown
    /// or cannot be read gets why instead, naming the server; the others are unaffected.
    pub async fn read_states(
        &self,
        targets: &[(&str, Target)],
    ) -> Vec<Result<SchemaState, String>> {
        let mut by_server: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, (server, _)) in targets.iter().enumerate() {
            by_server.entry(server).or_default().push(i);
        }
        let reads = by_server.into_iter().map(|(server, idx)| async move {
            let states = match self.require(server) {
                Err(e) => Err(e.to_string()),
                Ok(s) => {
                    let batch: Vec<Target> = idx.iter().map(|i| targets[*i].1.clone()).collect();
                    super::retry_read("histories", || s.dialect().read_states(&batch))
                        .await
                        .map_err(|e| {
                            warn!(server = %server, error = %e, "a tenant server cannot be read; its tenants fail");
                            format!("database server {server} cannot be read: {e}")
                        })
                }
            };
            (idx, states)
        });
        let mut out: Vec<Result<SchemaState, String>> =
            vec![Ok(SchemaState::Missing); targets.len()];
        for (idx, states) in join_all(reads).await {
            match states {
                Ok(states) => {
                    for (i, st) in idx.into_iter().zip(states) {
                        out[i] = Ok(st);
                    }
                }
                Err(why) => {
                    for i in idx {
                        out[i] = Err(why.clone());
                    }
                }
            }
        }
        out
    }

    /// Closes every pool.
    pub async fn close(&self) {
        join_all(self.list.iter().map(|s| s.dialect.close())).await;
    }
}
