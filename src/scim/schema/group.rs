//! The core Group schema (RFC 7643 §4.2, §8.7.1).

use super::{AttributeDef, GROUP_SCHEMA, Mutability, ResourceType, SchemaDef, common_attributes};

/// The Group resource type: endpoint `/Groups`, no extensions.
pub fn group_resource_type() -> ResourceType {
    ResourceType {
        name: "Group",
        endpoint: "/Groups",
        description: "Group",
        schema: group_schema(),
        extensions: Vec::new(),
        common: common_attributes(),
    }
}

/// The core Group schema.
pub fn group_schema() -> SchemaDef {
    let immutable = |a: AttributeDef| a.mutability(Mutability::Immutable);
    SchemaDef {
        id: GROUP_SCHEMA,
        name: "Group",
        description: "Group",
        attributes: vec![
            // §8.7.1 publishes `required: false`, but §4.2 calls displayName REQUIRED and every
            // identity provider sends it; the stricter reading is the one we enforce.
            AttributeDef::string(
                "displayName",
                "A human-readable name for the Group. REQUIRED.",
            )
            .required(),
            AttributeDef::complex(
                "members",
                "A list of members of the Group.",
                vec![
                    immutable(AttributeDef::string(
                        "value",
                        "Identifier of the member of this Group.",
                    )),
                    immutable(AttributeDef::reference(
                        "$ref",
                        &["User", "Group"],
                        "The URI corresponding to a SCIM resource that is a member of this Group.",
                    )),
                    // Not in §8.7.1, but §4.2's example and every identity provider use it; the
                    // server fills it in, so clients cannot set it.
                    AttributeDef::string(
                        "display",
                        "A human-readable name, primarily used for display purposes. READ-ONLY.",
                    )
                    .mutability(Mutability::ReadOnly),
                    immutable(
                        AttributeDef::string(
                            "type",
                            "A label indicating the type of resource, e.g., 'User' or 'Group'.",
                        )
                        .canonical(&["User", "Group"]),
                    ),
                ],
            )
            .multi(),
        ],
    }
}
