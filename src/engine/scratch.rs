//! Scratch schemas: throwaway schemas under the reserved [`REFERENCE_PREFIX`] that drift
//! checks, `diff` and `dump` migrate and describe. Every one made is remembered and dropped
//! by [`Scratch::drop_all`], whatever happened in between (errors, Ctrl-C).

use std::sync::Mutex;

use tracing::{info, warn};

use super::EngineError;
use super::status::REFERENCE_PREFIX;
use crate::db::{Dialect, Target};
use crate::domain::SchemaName;
use crate::migrate::{MigrationSet, RunOptions, migrate_target};
use crate::schema::Schema;

/// Resolves when the process is asked to stop (Ctrl-C, or SIGTERM on Unix), so scratch work
/// can be abandoned and its schemas dropped before the process exits.
pub async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The scratch schemas made on one server.
pub struct Scratch<'a> {
    dialect: &'a dyn Dialect,
    made: Mutex<Vec<SchemaName>>,
}

impl<'a> Scratch<'a> {
    pub fn new(dialect: &'a dyn Dialect) -> Self {
        Self {
            dialect,
            made: Mutex::new(Vec::new()),
        }
    }

    pub fn dialect(&self) -> &'a dyn Dialect {
        self.dialect
    }

    /// Makes an empty scratch schema.
    pub async fn create(&self) -> Result<Target, EngineError> {
        let name = format!(
            "{REFERENCE_PREFIX}{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let schema = SchemaName::reference(&name);
        self.made
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(schema.clone());
        let target = Target::Tenant(schema);
        self.dialect.create_schema(&target).await?;
        info!(schema = %name, server = %self.dialect.server_label(), "scratch schema created");
        Ok(target)
    }

    /// Migrates `target` with `set` up to `stop` (the newest when `None`).
    pub async fn migrate(
        &self,
        target: &Target,
        set: &MigrationSet,
        stop: Option<i64>,
        what: &str,
    ) -> Result<(), EngineError> {
        let Target::Tenant(name) = target else {
            return Err(EngineError::Catalog(
                "a scratch schema is a tenant target".into(),
            ));
        };
        let opts = RunOptions {
            target: stop,
            ..RunOptions::default()
        };
        migrate_target(self.dialect, target, name.as_str(), set, &opts)
            .await
            .map(|_| ())
            .map_err(|e| EngineError::Migrate {
                target: what.to_owned(),
                source: e,
            })
    }

    /// A new scratch schema migrated with `set`, described.
    pub async fn build(&self, set: &MigrationSet, what: &str) -> Result<Schema, EngineError> {
        let target = self.create().await?;
        self.migrate(&target, set, None, what).await?;
        Ok(self.dialect.structure(&target).await?)
    }

    /// Drops every scratch schema made (a failure is logged: the name says what to drop).
    pub async fn drop_all(&self) {
        let made = std::mem::take(
            &mut *self
                .made
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for schema in made {
            match self
                .dialect
                .drop_schema(&Target::Tenant(schema.clone()))
                .await
            {
                Ok(()) => info!(schema = %schema, "scratch schema dropped"),
                Err(e) => warn!(
                    schema = %schema,
                    error = %e,
                    "could not drop a scratch schema; drop it by hand"
                ),
            }
        }
    }
}
