//! scim-operator: a SCIM 2.0 service provider and the Kubernetes operator that provisions into it.

pub mod scim;
