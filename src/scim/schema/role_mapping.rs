//! The `RoleMapping` resource type of this server: grants roles to the members of named teams.
//! It is the server side of the operator's cluster-scoped `RoleMapping` custom resource.

use super::{AttributeDef, Mutability, ResourceType, SchemaDef, Uniqueness, common_attributes};

/// Schema URN of role mappings.
pub const ROLE_MAPPING_SCHEMA: &str = "urn:scim-operator:params:scim:schemas:core:1.0:RoleMapping";

/// The RoleMapping resource type: endpoint `/RoleMappings`.
pub fn role_mapping_resource_type() -> ResourceType {
    ResourceType {
        name: "RoleMapping",
        endpoint: "/RoleMappings",
        description: "Grants roles to the members of teams",
        schema: role_mapping_schema(),
        extensions: Vec::new(),
        common: common_attributes(),
    }
}

/// The RoleMapping schema.
pub fn role_mapping_schema() -> SchemaDef {
    SchemaDef {
        id: ROLE_MAPPING_SCHEMA,
        name: "RoleMapping",
        description: "Members of the listed teams receive the listed roles, unless SCIM assigns roles to them explicitly",
        attributes: vec![
            AttributeDef::string("displayName", "Unique name of the mapping.")
                .required()
                .uniqueness(Uniqueness::Server),
            AttributeDef::complex(
                "roles",
                "Roles granted; each value names a role of the catalog by id or name.",
                vec![
                    AttributeDef::string("value", "Role id or name.").required(),
                    AttributeDef::string("display", "Role name, filled in by the server.")
                        .mutability(Mutability::ReadOnly),
                ],
            )
            .multi()
            .required(),
            AttributeDef::complex(
                "teams",
                "Teams whose members receive the roles; each value is a team name, matched exactly.",
                vec![AttributeDef::string("value", "Team name.").required().case_exact()],
            )
            .multi()
            .required(),
        ],
    }
}
