//! `galley rebuild` empties every table the shop derives from the input
//! topics: a table a migration adds must be listed in [`DERIVED_TABLES`] or
//! kept on purpose, or a rebuild would leave its rows (and their
//! watermarks) behind.

use std::collections::BTreeSet;

use super::DERIVED_TABLES;
use crate::store::migrate::{statements, MIGRATIONS};
use crate::store::progress;

/// Tables of the migrations that a rebuild leaves as they are, and why.
const KEPT: &[(&str, &str)] = &[
    (
        "orders",
        "no longer written (migration 0002): nothing could fill it again",
    ),
    (
        "input_topics",
        "the partition counts the offset-space check compares",
    ),
    (
        "partition_marks",
        "the records the re-created-topic check compares",
    ),
    (
        "changelog_applied",
        "the sink's position in the changelog topics, which a rebuild does not touch",
    ),
    (
        "row_keys",
        "keys of rows written: after a rebuild they may name rows that no longer exist, \
         which costs a read each and is never wrong, while emptying them half-way could \
         leave rows whose keys are not recorded",
    ),
];

fn created_tables() -> BTreeSet<String> {
    const CREATE: &str = "CREATE TABLE IF NOT EXISTS ks.";
    MIGRATIONS
        .iter()
        .flat_map(|m| statements(m, "ks"))
        .filter_map(|s| {
            let rest = s.strip_prefix(CREATE)?;
            let name = rest.split(|c: char| c.is_whitespace() || c == '(').next()?;
            Some(name.to_string())
        })
        .collect()
}

#[test]
fn every_table_of_the_migrations_is_rebuilt_or_kept_on_purpose() {
    let created = created_tables();
    assert!(created.contains("order_documents"), "{created:?}");
    let listed: BTreeSet<String> = DERIVED_TABLES
        .iter()
        .chain([&progress::TABLE])
        .chain(KEPT.iter().map(|(table, _)| table))
        .map(|t| t.to_string())
        .collect();
    assert_eq!(created, listed);
}

#[test]
fn the_tables_the_projections_write_are_rebuilt() {
    let source = include_str!("projections.rs");
    let written: BTreeSet<&str> = source
        .split("INSERT INTO {ks}.")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert!(written.contains("order_documents"), "{written:?}");
    for table in written {
        assert!(
            DERIVED_TABLES.contains(&table),
            "{table} is written but not rebuilt"
        );
    }
}
