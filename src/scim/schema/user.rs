//! The core User schema (RFC 7643 §4.1) and the Enterprise User extension (§4.3), with the
//! characteristics of the §8.7.1 representation.

use super::{
    AttrType, AttributeDef, ENTERPRISE_USER_SCHEMA, Mutability, ResourceType, Returned, SchemaDef, USER_SCHEMA,
    Uniqueness, common_attributes,
};

/// The User resource type: endpoint `/Users`, Enterprise User as an optional extension.
pub fn user_resource_type() -> ResourceType {
    ResourceType {
        name: "User",
        endpoint: "/Users",
        description: "User Account",
        schema: user_schema(),
        extensions: vec![(enterprise_user_schema(), false)],
        common: common_attributes(),
    }
}

const DISPLAY: &str = "A human-readable name, primarily used for display purposes. READ-ONLY.";

/// The `display` sub-attribute shared by the multi-valued attributes.
fn display() -> AttributeDef {
    AttributeDef::string("display", DISPLAY)
}

/// The `type` sub-attribute with its canonical values.
fn kind(description: &'static str, canonical: &[&str]) -> AttributeDef {
    AttributeDef::string("type", description).canonical(canonical)
}

/// The `primary` sub-attribute.
fn primary(description: &'static str) -> AttributeDef {
    AttributeDef::of_type("primary", AttrType::Boolean, description)
}

/// A multi-valued complex attribute with `value`, `display`, `type` and `primary`.
fn multi(
    name: &'static str,
    description: &'static str,
    value: AttributeDef,
    kind: AttributeDef,
    primary_description: &'static str,
) -> AttributeDef {
    AttributeDef::complex(name, description, vec![value, display(), kind, primary(primary_description)]).multi()
}

/// The core User schema (without the common attributes).
pub fn user_schema() -> SchemaDef {
    let s = AttributeDef::string;
    SchemaDef {
        id: USER_SCHEMA,
        name: "User",
        description: "User Account",
        attributes: vec![
            s(
                "userName",
                "Unique identifier for the User, typically used by the user to directly authenticate to the service provider. Each User MUST include a non-empty userName value. This identifier MUST be unique across the service provider's entire set of Users. REQUIRED.",
            )
            .required()
            .uniqueness(Uniqueness::Server),
            AttributeDef::complex(
                "name",
                "The components of the user's real name. Providers MAY return just the full name as a single string in the formatted sub-attribute, or they MAY return just the individual component attributes using the other sub-attributes, or they MAY return both. If both variants are returned, they SHOULD be describing the same name, with the formatted name indicating how the component attributes should be combined.",
                vec![
                    s("formatted", "The full name, including all middle names, titles, and suffixes as appropriate, formatted for display (e.g., 'Ms. Barbara J Jensen, III')."),
                    s("familyName", "The family name of the User, or last name in most Western languages (e.g., 'Jensen' given the full name 'Ms. Barbara J Jensen, III')."),
                    s("givenName", "The given name of the User, or first name in most Western languages (e.g., 'Barbara' given the full name 'Ms. Barbara J Jensen, III')."),
                    s("middleName", "The middle name(s) of the User (e.g., 'Jane' given the full name 'Ms. Barbara J Jensen, III')."),
                    s("honorificPrefix", "The honorific prefix(es) of the User, or title in most Western languages (e.g., 'Ms.' given the full name 'Ms. Barbara J Jensen, III')."),
                    s("honorificSuffix", "The honorific suffix(es) of the User, or suffix in most Western languages (e.g., 'III' given the full name 'Ms. Barbara J Jensen, III')."),
                ],
            ),
            s("displayName", "The name of the User, suitable for display to end-users. The name SHOULD be the full name of the User being described, if known."),
            s("nickName", "The casual way to address the user in real life, e.g., 'Bob' or 'Bobby' instead of 'Robert'. This attribute SHOULD NOT be used to represent a User's username (e.g., 'bjensen' or 'mpepperidge')."),
            AttributeDef::reference("profileUrl", &["external"], "A fully qualified URL pointing to a page representing the User's online profile."),
            s("title", "The user's title, such as \"Vice President.\""),
            s("userType", "Used to identify the relationship between the organization and the user. Typical values used might be 'Contractor', 'Employee', 'Intern', 'Temp', 'External', and 'Unknown', but any value may be used."),
            s("preferredLanguage", "Indicates the User's preferred written or spoken language. Generally used for selecting a localized user interface; e.g., 'en_US' specifies the language English and country US."),
            s("locale", "Used to indicate the User's default location for purposes of localizing items such as currency, date time format, or numerical representations."),
            s("timezone", "The User's time zone in the 'Olson' time zone database format, e.g., 'America/Los_Angeles'."),
            AttributeDef::of_type("active", AttrType::Boolean, "A Boolean value indicating the User's administrative status."),
            s("password", "The User's cleartext password. This attribute is intended to be used as a means to specify an initial password when creating a new User or to reset an existing User's password.")
                .mutability(Mutability::WriteOnly)
                .returned(Returned::Never),
            multi(
                "emails",
                "Email addresses for the user. The value SHOULD be canonicalized by the service provider, e.g., 'bjensen@example.com' instead of 'bjensen@EXAMPLE.COM'. Canonical type values of 'work', 'home', and 'other'.",
                s("value", "Email addresses for the user. The value SHOULD be canonicalized by the service provider, e.g., 'bjensen@example.com' instead of 'bjensen@EXAMPLE.COM'. Canonical type values of 'work', 'home', and 'other'."),
                kind("A label indicating the attribute's function, e.g., 'work' or 'home'.", &["work", "home", "other"]),
                "A Boolean value indicating the 'primary' or preferred attribute value for this attribute, e.g., the preferred mailing address or primary email address. The primary attribute value 'true' MUST appear no more than once.",
            ),
            multi(
                "phoneNumbers",
                "Phone numbers for the User. The value SHOULD be canonicalized by the service provider according to the format specified in RFC 3966, e.g., 'tel:+1-201-555-0123'. Canonical type values of 'work', 'home', 'mobile', 'fax', 'pager', and 'other'.",
                s("value", "Phone number of the User."),
                kind("A label indicating the attribute's function, e.g., 'work', 'home', 'mobile'.", &["work", "home", "mobile", "fax", "pager", "other"]),
                "A Boolean value indicating the 'primary' or preferred attribute value for this attribute, e.g., the preferred phone number or primary phone number. The primary attribute value 'true' MUST appear no more than once.",
            ),
            multi(
                "ims",
                "Instant messaging addresses for the User.",
                s("value", "Instant messaging address for the User."),
                kind("A label indicating the attribute's function, e.g., 'aim', 'gtalk', 'xmpp'.", &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"]),
                "A Boolean value indicating the 'primary' or preferred attribute value for this attribute, e.g., the preferred messenger or primary messenger. The primary attribute value 'true' MUST appear no more than once.",
            ),
            multi(
                "photos",
                "URLs of photos of the User.",
                AttributeDef::reference("value", &["external"], "URL of a photo of the User."),
                kind("A label indicating the attribute's function, i.e., 'photo' or 'thumbnail'.", &["photo", "thumbnail"]),
                "A Boolean value indicating the 'primary' or preferred attribute value for this attribute, e.g., the preferred photo or thumbnail. The primary attribute value 'true' MUST appear no more than once.",
            ),
            AttributeDef::complex(
                "addresses",
                "A physical mailing address for this User. Canonical type values of 'work', 'home', and 'other'. This attribute is a complex type with the following sub-attributes.",
                vec![
                    s("formatted", "The full mailing address, formatted for display or use with a mailing label. This attribute MAY contain newlines."),
                    s("streetAddress", "The full street address component, which may include house number, street name, P.O. box, and multi-line extended street address information. This attribute MAY contain newlines."),
                    s("locality", "The city or locality component."),
                    s("region", "The state or region component."),
                    s("postalCode", "The zip code or postal code component."),
                    s("country", "The country name component."),
                    kind("A label indicating the attribute's function, e.g., 'work' or 'home'.", &["work", "home", "other"]),
                    // §8.7.1 omits it, but §4.1.2 gives addresses a primary flag and clients send it.
                    primary("A Boolean value indicating the 'primary' or preferred attribute value for this attribute, e.g., the preferred mailing address. The primary attribute value 'true' MUST appear no more than once."),
                ],
            )
            .multi(),
            groups(),
            multi(
                "entitlements",
                "A list of entitlements for the User that represent a thing the User has.",
                s("value", "The value of an entitlement."),
                kind("A label indicating the attribute's function.", &[]),
                "A Boolean value indicating the 'primary' or preferred attribute value for this attribute. The primary attribute value 'true' MUST appear no more than once.",
            ),
            multi(
                "roles",
                "A list of roles for the User that collectively represent who the User is, e.g., 'Student', 'Faculty'.",
                s("value", "The value of a role."),
                kind("A label indicating the attribute's function.", &[]),
                "A Boolean value indicating the 'primary' or preferred attribute value for this attribute. The primary attribute value 'true' MUST appear no more than once.",
            ),
            multi(
                "x509Certificates",
                "A list of certificates issued to the User.",
                AttributeDef::of_type("value", AttrType::Binary, "The value of an X.509 certificate."),
                kind("A label indicating the attribute's function.", &[]),
                "A Boolean value indicating the 'primary' or preferred attribute value for this attribute. The primary attribute value 'true' MUST appear no more than once.",
            ),
        ],
    }
}

/// `groups`: read-only, computed from group memberships.
fn groups() -> AttributeDef {
    let read_only = |a: AttributeDef| a.mutability(Mutability::ReadOnly);
    read_only(
        AttributeDef::complex(
            "groups",
            "A list of groups to which the user belongs, either through direct membership, through nested groups, or dynamically calculated.",
            vec![
                read_only(AttributeDef::string("value", "The identifier of the User's group.")),
                read_only(AttributeDef::reference(
                    "$ref",
                    &["User", "Group"],
                    "The URI of the corresponding 'Group' resource to which the user belongs.",
                )),
                read_only(AttributeDef::string("display", DISPLAY)),
                read_only(kind("A label indicating the attribute's function, e.g., 'direct' or 'indirect'.", &["direct", "indirect"])),
            ],
        )
        .multi(),
    )
}

/// The Enterprise User extension schema.
pub fn enterprise_user_schema() -> SchemaDef {
    let s = AttributeDef::string;
    SchemaDef {
        id: ENTERPRISE_USER_SCHEMA,
        name: "EnterpriseUser",
        description: "Enterprise User",
        attributes: vec![
            s(
                "employeeNumber",
                "Numeric or alphanumeric identifier assigned to a person, typically based on order of hire or association with an organization.",
            ),
            s("costCenter", "Identifies the name of a cost center."),
            s("organization", "Identifies the name of an organization."),
            s("division", "Identifies the name of a division."),
            s("department", "Identifies the name of a department."),
            AttributeDef::complex(
                "manager",
                "The User's manager. A complex type that optionally allows service providers to represent organizational hierarchy by referencing the 'id' attribute of another User.",
                vec![
                    s("value", "The id of the SCIM resource representing the User's manager. REQUIRED."),
                    AttributeDef::reference(
                        "$ref",
                        &["User"],
                        "The URI of the SCIM resource representing the User's manager. REQUIRED.",
                    ),
                    s("displayName", "The displayName of the User's manager. OPTIONAL and READ-ONLY.")
                        .mutability(Mutability::ReadOnly),
                ],
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr<'a>(schema: &'a SchemaDef, name: &str) -> &'a AttributeDef {
        schema.attr(name).unwrap_or_else(|| panic!("{name} defined"))
    }

    #[test]
    fn user_name_is_required_unique_and_case_insensitive() {
        let schema = user_schema();
        let a = attr(&schema, "userName");
        assert!(a.required && !a.case_exact && !a.multi_valued);
        assert_eq!(
            (a.uniqueness, a.mutability, a.returned),
            (Uniqueness::Server, Mutability::ReadWrite, Returned::Default)
        );
    }

    #[test]
    fn password_is_write_only_and_never_returned() {
        let a = attr(&user_schema(), "password").clone();
        assert_eq!((a.mutability, a.returned), (Mutability::WriteOnly, Returned::Never));
    }

    #[test]
    fn user_attributes_follow_rfc_8_7_1() {
        let schema = user_schema();
        let names: Vec<&str> = schema.attributes.iter().map(|a| a.name).collect();
        assert_eq!(
            names,
            [
                "userName",
                "name",
                "displayName",
                "nickName",
                "profileUrl",
                "title",
                "userType",
                "preferredLanguage",
                "locale",
                "timezone",
                "active",
                "password",
                "emails",
                "phoneNumbers",
                "ims",
                "photos",
                "addresses",
                "groups",
                "entitlements",
                "roles",
                "x509Certificates",
            ]
        );
        assert_eq!(attr(&schema, "active").attr_type, AttrType::Boolean);
        assert_eq!(attr(&schema, "profileUrl").reference_types, ["external"]);
        for multi in ["emails", "phoneNumbers", "ims", "photos", "entitlements", "roles", "x509Certificates"] {
            let a = attr(&schema, multi);
            assert!(a.multi_valued && a.attr_type == AttrType::Complex, "{multi}");
            let subs: Vec<&str> = a.sub_attributes.iter().map(|s| s.name).collect();
            assert_eq!(subs, ["value", "display", "type", "primary"], "{multi}");
            assert_eq!(a.sub("primary").unwrap().attr_type, AttrType::Boolean);
        }
        assert_eq!(attr(&schema, "emails").sub("type").unwrap().canonical_values, ["work", "home", "other"]);
        assert_eq!(
            attr(&schema, "phoneNumbers").sub("type").unwrap().canonical_values,
            ["work", "home", "mobile", "fax", "pager", "other"]
        );
        assert_eq!(attr(&schema, "photos").sub("type").unwrap().canonical_values, ["photo", "thumbnail"]);
        assert_eq!(attr(&schema, "ims").sub("type").unwrap().canonical_values.len(), 8);
        assert_eq!(attr(&schema, "photos").sub("value").unwrap().attr_type, AttrType::Reference);
        assert_eq!(attr(&schema, "x509Certificates").sub("value").unwrap().attr_type, AttrType::Binary);
        assert!(attr(&schema, "roles").sub("value").unwrap().canonical_values.is_empty());
        let addresses = attr(&schema, "addresses");
        assert!(addresses.multi_valued);
        assert_eq!(addresses.sub("type").unwrap().canonical_values, ["work", "home", "other"]);
        assert!(addresses.sub("postalCode").is_some());
    }

    #[test]
    fn groups_is_read_only_throughout() {
        let schema = user_schema();
        let groups = attr(&schema, "groups");
        assert!(groups.multi_valued && groups.mutability == Mutability::ReadOnly);
        let subs: Vec<&str> = groups.sub_attributes.iter().map(|s| s.name).collect();
        assert_eq!(subs, ["value", "$ref", "display", "type"]);
        assert!(groups.sub_attributes.iter().all(|s| s.mutability == Mutability::ReadOnly));
        assert_eq!(groups.sub("$ref").unwrap().attr_type, AttrType::Reference);
        assert_eq!(groups.sub("type").unwrap().canonical_values, ["direct", "indirect"]);
    }

    #[test]
    fn enterprise_extension_is_optional() {
        let rt = user_resource_type();
        assert_eq!(rt.extensions.len(), 1);
        let (ext, required) = &rt.extensions[0];
        assert!(!required);
        assert_eq!((ext.id, ext.name), (ENTERPRISE_USER_SCHEMA, "EnterpriseUser"));
        for name in ["employeeNumber", "costCenter", "organization", "division", "department"] {
            assert_eq!(attr(ext, name).attr_type, AttrType::String, "{name}");
        }
        let manager = attr(ext, "manager");
        assert!(!manager.multi_valued);
        assert_eq!(manager.sub("$ref").unwrap().reference_types, ["User"]);
        assert_eq!(manager.sub("displayName").unwrap().mutability, Mutability::ReadOnly);
        assert_eq!(manager.sub("value").unwrap().mutability, Mutability::ReadWrite);
    }
}
