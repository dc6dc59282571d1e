//! Common attributes of every resource (RFC 7643 §3.1).
//!
//! They are resolvable like any attribute (filters such as `externalId eq "..."` or
//! `meta.lastModified gt "..."` need them) but belong to no schema, so `/Schemas` omits them.

use super::{AttrType, AttributeDef, Mutability, Returned, Uniqueness};

/// `id`, `externalId` and `meta` with the characteristics RFC 7643 §3.1 gives them.
pub fn common_attributes() -> Vec<AttributeDef> {
    let read_only = |a: AttributeDef| a.mutability(Mutability::ReadOnly);
    vec![
        AttributeDef::string("id", "A unique identifier for a SCIM resource as defined by the service provider.")
            .case_exact()
            .mutability(Mutability::ReadOnly)
            .returned(Returned::Always)
            .uniqueness(Uniqueness::Server),
        AttributeDef::string(
            "externalId",
            "A String that is an identifier for the resource as defined by the provisioning client.",
        )
        .case_exact(),
        read_only(AttributeDef::complex(
            "meta",
            "A complex attribute containing resource metadata.",
            vec![
                read_only(
                    AttributeDef::string("resourceType", "The name of the resource type of the resource.").case_exact(),
                ),
                read_only(AttributeDef::of_type(
                    "created",
                    AttrType::DateTime,
                    "The \"DateTime\" that the resource was added to the service provider.",
                )),
                read_only(AttributeDef::of_type(
                    "lastModified",
                    AttrType::DateTime,
                    "The most recent DateTime that the details of this resource were updated at the service provider.",
                )),
                read_only(
                    AttributeDef::reference("location", &["uri"], "The URI of the resource being returned.")
                        .case_exact(),
                ),
                read_only(AttributeDef::string("version", "The version of the resource being returned.").case_exact()),
            ],
        )),
    ]
}
