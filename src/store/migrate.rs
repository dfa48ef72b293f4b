//! Versioned CQL migrations, applied idempotently by `galley migrate` and
//! checked (never applied) by `galley run`.
//!
//! Each migration is a file in `src/store/migrations/`, embedded in the
//! binary, numbered, and recorded in `<keyspace>.galley_migrations` with a
//! checksum once applied. Statements use `IF NOT EXISTS` so that a migration
//! interrupted half-way can simply run again. Editing a migration that a
//! database has already applied is refused: add a new one instead.

use scylla::client::session::Session;

use super::StoreError;

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub cql: &'static str,
}

/// Every migration this build knows, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "projections",
        cql: include_str!("migrations/0001_projections.cql"),
    },
    Migration {
        version: 2,
        name: "order_documents",
        cql: include_str!("migrations/0002_order_documents.cql"),
    },
    Migration {
        version: 3,
        name: "input_topics",
        cql: include_str!("migrations/0003_input_topics.cql"),
    },
    Migration {
        version: 4,
        name: "partition_marks",
        cql: include_str!("migrations/0004_partition_marks.cql"),
    },
    Migration {
        version: 5,
        name: "changelog_applied",
        cql: include_str!("migrations/0005_changelog_applied.cql"),
    },
    Migration {
        version: 6,
        name: "row_keys",
        cql: include_str!("migrations/0006_row_keys.cql"),
    },
];

/// The schema version this build needs.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}

/// Splits a migration into statements with the keyspace filled in.
pub fn statements(migration: &Migration, keyspace: &str) -> Vec<String> {
    let without_comments: String = migration
        .cql
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.replace("{keyspace}", keyspace))
        .collect()
}

/// FNV-1a of the migration text: stable across builds and platforms.
pub fn checksum(migration: &Migration) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in migration.cql.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// What `apply` did, for the CLI to report.
#[derive(Debug, Default)]
pub struct MigrationReport {
    pub applied: Vec<i32>,
    pub already_applied: Vec<i32>,
}

/// Creates the keyspace if needed and applies every migration not yet recorded.
pub async fn apply(
    session: &Session,
    keyspace: &str,
    replication: &str,
) -> Result<MigrationReport, StoreError> {
    let create_keyspace =
        format!("CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}");
    run_ddl(session, &create_keyspace).await?;
    let create_table = format!(
        "CREATE TABLE IF NOT EXISTS {keyspace}.galley_migrations (\
         version int PRIMARY KEY, name text, checksum text, applied_at timestamp)"
    );
    run_ddl(session, &create_table).await?;

    let recorded = recorded_versions(session, keyspace).await?;
    let mut report = MigrationReport::default();
    for migration in MIGRATIONS {
        if let Some((_, sum)) = recorded.iter().find(|(v, _)| *v == migration.version) {
            if *sum != checksum(migration) {
                return Err(StoreError::Schema(format!(
                    "migration {} ({}) was applied with checksum {sum} but this build has {}; \
                     applied migrations must not change, add a new one",
                    migration.version,
                    migration.name,
                    checksum(migration)
                )));
            }
            report.already_applied.push(migration.version);
            continue;
        }
        for statement in statements(migration, keyspace) {
            run_ddl(session, &statement).await?;
        }
        let record = format!(
            "INSERT INTO {keyspace}.galley_migrations (version, name, checksum, applied_at) \
             VALUES (?, ?, ?, toTimestamp(now()))"
        );
        session
            .query_unpaged(
                record.as_str(),
                (migration.version, migration.name, checksum(migration)),
            )
            .await
            .map_err(|e| StoreError::query(&record, e))?;
        report.applied.push(migration.version);
    }
    Ok(report)
}

/// Fails unless every migration of this build has been applied, naming what is missing.
pub async fn check(session: &Session, keyspace: &str) -> Result<(), StoreError> {
    let recorded = recorded_versions(session, keyspace).await.map_err(|e| {
        StoreError::Schema(format!(
            "keyspace `{keyspace}` is not migrated ({e}); run `galley migrate`"
        ))
    })?;
    let missing: Vec<String> = MIGRATIONS
        .iter()
        .filter(|m| !recorded.iter().any(|(v, _)| *v == m.version))
        .map(|m| format!("{} ({})", m.version, m.name))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Schema(format!(
            "keyspace `{keyspace}` lacks migrations {}; run `galley migrate`",
            missing.join(", ")
        )))
    }
}

async fn recorded_versions(
    session: &Session,
    keyspace: &str,
) -> Result<Vec<(i32, String)>, StoreError> {
    let select = format!("SELECT version, checksum FROM {keyspace}.galley_migrations");
    let result = session
        .query_unpaged(select.as_str(), ())
        .await
        .map_err(|e| StoreError::query(&select, e))?;
    let rows = result
        .into_rows_result()
        .map_err(|e| StoreError::query(&select, e))?;
    let mut out = Vec::new();
    for row in rows
        .rows::<(i32, String)>()
        .map_err(|e| StoreError::query(&select, e))?
    {
        out.push(row.map_err(|e| StoreError::query(&select, e))?);
    }
    Ok(out)
}

async fn run_ddl(session: &Session, statement: &str) -> Result<(), StoreError> {
    session
        .query_unpaged(statement, ())
        .await
        .map_err(|e| StoreError::query(statement, e))?;
    session
        .await_schema_agreement()
        .await
        .map_err(|e| StoreError::query(statement, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_fill_in_the_keyspace_and_drop_comments() {
        let stmts = statements(&MIGRATIONS[0], "ks_test");
        assert!(stmts.len() >= 5, "{stmts:?}");
        for s in &stmts {
            assert!(s.starts_with("CREATE TABLE IF NOT EXISTS ks_test."), "{s}");
            assert!(!s.contains("--"), "{s}");
        }
    }

    #[test]
    fn the_order_documents_migration_is_one_statement() {
        let stmts = statements(&MIGRATIONS[1], "ks_test");
        assert_eq!(stmts.len(), 1, "{stmts:?}");
        assert!(stmts[0].starts_with("CREATE TABLE IF NOT EXISTS ks_test.order_documents ("));
    }

    #[test]
    fn versions_are_strictly_increasing() {
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version);
        }
        assert_eq!(latest_version(), MIGRATIONS.len() as i32);
    }
}
