//! The one place where domain and store failures become SCIM errors.

use crate::scim::ScimError;
use crate::store::StoreError;

/// Maps a store error to the SCIM error the client sees. Database details are logged, not sent.
pub fn scim_from_store(e: StoreError) -> ScimError {
    match e {
        StoreError::Conflict(msg) => ScimError::uniqueness(msg),
        StoreError::Concurrent(what) => {
            ScimError::new(409, None, format!("{what} was modified concurrently; retry the request"))
        }
        StoreError::InvalidFilter(msg) => ScimError::invalid_filter(msg),
        StoreError::Unsupported(msg) => ScimError::invalid_value(msg),
        other => {
            tracing::error!(error = %other, "store failure");
            ScimError::internal("the server could not complete the request (database failure)")
        }
    }
}

impl From<StoreError> for ScimError {
    fn from(e: StoreError) -> Self {
        scim_from_store(e)
    }
}
