//! The SCIM filter language (RFC 7644 §3.4.2.2) and PATCH paths (RFC 7644 §3.5.2).

pub mod ast;

pub use ast::{AttrPath, CompareOp, Filter, PatchPath};
