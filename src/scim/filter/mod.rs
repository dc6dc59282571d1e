//! The SCIM filter language (RFC 7644 §3.4.2.2) and PATCH paths (RFC 7644 §3.5.2).

pub mod ast;
pub mod eval;
pub mod parser;

pub use ast::{AttrPath, CompareOp, Filter, PatchPath};
pub use eval::{element_matches, matches};
pub use parser::{parse_attr_path, parse_filter, parse_patch_path};
