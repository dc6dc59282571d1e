//! scim-operator: a SCIM 2.0 service provider and the Kubernetes operator that provisions into it.
//!
//! - [`scim`]: the protocol (schemas, filters, PATCH, projection), free of I/O.
//! - [`store`]: the database behind a trait (SQLite embedded, PostgreSQL shared).
//! - [`provisioning`]: the product's rules applied to users and teams.
//! - [`server`]: the HTTP layer.
//! - [`console`]: the web console under `/console` (its rules are in `provisioning::console`).
//! - [`cli`]: the `scim-operator` command (nothing else in the crate imports it).

pub mod cli;
pub mod client;
pub mod clock;
pub mod console;
pub mod delivery;
pub mod operator;
pub mod provisioning;
pub mod redact;
pub mod scim;
pub mod server;
pub mod store;
