//! Integration tests against the real local stack (`scripts/stack up`):
//! a real Kafka broker and a real CQL database on loopback. Nothing here is
//! mocked. Every test makes its own topics, groups and keyspaces and removes
//! them when it ends, so tests run in parallel.

mod api;
mod codecs;
mod consumer_errors;
mod dead_letters;
mod error_classes;
mod handover;
mod hostile;
mod known_keys;
mod lag;
mod lifecycle;
mod memory;
mod observability;
mod offset_spaces;
mod openapi_fuzz;
mod partitioning;
mod pipeline;
mod rebuild;
mod server;
mod stack;
mod support;
