//! SCIM 2.0 protocol: resource schemas, errors, the filter language, PATCH and projection.
//!
//! Nothing in this module performs I/O: it turns bytes and JSON into validated values and back,
//! so the HTTP layer, the store and the client all share one understanding of the protocol.

pub mod deadline;
pub mod declared_by;
pub mod error;
pub mod filter;
pub mod fold;
pub mod invitation;
pub mod limits;
pub mod list;
pub mod patch;
pub mod projection;
pub mod resource;
pub mod schema;

pub use error::{ScimError, ScimType};
