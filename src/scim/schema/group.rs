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
            AttributeDef::string("displayName", "A human-readable name for the Group. REQUIRED.").required(),
            AttributeDef::complex(
                "members",
                "A list of members of the Group.",
                vec![
                    immutable(AttributeDef::string("value", "Identifier of the member of this Group.")),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::{AttrType, Returned};

    #[test]
    fn display_name_is_required() {
        let schema = group_schema();
        let a = schema.attr("displayName").unwrap();
        assert!(a.required && !a.case_exact);
        assert_eq!(a.returned, Returned::Default);
    }

    #[test]
    fn members_follow_rfc() {
        let rt = group_resource_type();
        assert!(rt.extensions.is_empty());
        assert_eq!((rt.name, rt.endpoint), ("Group", "/Groups"));
        let members = rt.schema.attr("members").unwrap();
        assert!(members.multi_valued && members.attr_type == AttrType::Complex);
        assert_eq!(members.mutability, Mutability::ReadWrite);
        let subs: Vec<&str> = members.sub_attributes.iter().map(|s| s.name).collect();
        assert_eq!(subs, ["value", "$ref", "display", "type"]);
        assert_eq!(members.sub("value").unwrap().mutability, Mutability::Immutable);
        assert_eq!(members.sub("$ref").unwrap().reference_types, ["User", "Group"]);
        assert_eq!(members.sub("display").unwrap().mutability, Mutability::ReadOnly);
        assert_eq!(members.sub("type").unwrap().canonical_values, ["User", "Group"]);
    }
}
