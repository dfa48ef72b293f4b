//! galley: upstream domain events arrive on Kafka, pure handlers decide what
//! they mean, projections land in ScyllaDB exactly once in effect, result
//! events go back to Kafka, and dashboards read the projections over HTTP.
//!
//! Modules, one job each:
//! - [`config`]: typed configuration from a TOML file and `GALLEY_*` overrides.
//! - [`codec`]: Avro schemas, the Confluent wire format, decode/encode of the event
//!   sets a domain declares with [`event_set!`]; knows nothing of the shop.
//! - [`domain`]: the shop's events, state and handlers; pure, no I/O.
//! - [`pipeline`]: consume, batch, apply, publish, write, commit; knows nothing of the shop.
//! - [`store`]: the CQL session, migrations, statement and paged-read helpers, the row
//!   cache and the partition progress table; knows nothing of the shop.
//! - [`api`]: the query listener (auth, limits, paging cursors, freshness, errors,
//!   OpenAPI) around the routes a domain hands it, and the operators' admin listener;
//!   knows nothing of the shop.
//! - [`shop`]: the reference domain wired into the engine: its processor, projection
//!   rows and statements, query reads, routes and views, and its event generator.
//! - [`telemetry`]: logging setup and every metric name.
//! - [`cli`]: what each subcommand does, for the thin `main.rs`.
//! - [`startup`]: `galley run`'s composition root: builds, binds, runs until stopped.
//! - [`kafka`]: client configuration shared by every producer, consumer and admin client.

pub mod api;
pub mod cli;
pub mod codec;
pub mod config;
pub mod domain;
pub mod kafka;
pub mod pipeline;
pub mod shop;
pub mod startup;
pub mod store;
pub mod telemetry;
