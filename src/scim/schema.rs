//! Resource schemas (RFC 7643 §2, §4, §7): the attribute model every other part consults.
//!
//! The model lives here; the RFC definitions of the User, Enterprise User and Group schemas and
//! of the common attributes are in submodules, and [`discovery`] renders the `/Schemas`,
//! `/ResourceTypes` and `/ServiceProviderConfig` documents.

use super::filter::AttrPath;

mod common;
pub mod discovery;
mod group;
mod role_mapping;
mod user;

pub use common::common_attributes;
pub use discovery::{
    AdvertisedLimits, AuthenticationScheme, ServiceProviderConfig, attribute_json, limits_json, resource_type_json,
    schema_json, service_provider_config_json,
};
pub use group::{group_resource_type, group_schema};
pub use role_mapping::{ROLE_MAPPING_SCHEMA, role_mapping_resource_type, role_mapping_schema};
pub use user::{enterprise_user_schema, user_resource_type, user_schema};

/// Core User schema URN (RFC 7643 §4.1).
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Enterprise User extension URN (RFC 7643 §4.3).
pub const ENTERPRISE_USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// Core Group schema URN (RFC 7643 §4.2).
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// List response message URN (RFC 7644 §3.4.2).
pub const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// PATCH request message URN (RFC 7644 §3.5.2).
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Search request message URN (RFC 7644 §3.4.3).
pub const SEARCH_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// Service provider configuration schema URN (RFC 7643 §5).
pub const SERVICE_PROVIDER_CONFIG_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
/// Resource type schema URN (RFC 7643 §6).
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
/// Schema definition schema URN (RFC 7643 §7).
pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// Attribute data types of RFC 7643 §2.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    /// `string`.
    String,
    /// `boolean`.
    Boolean,
    /// `decimal`.
    Decimal,
    /// `integer`.
    Integer,
    /// `dateTime` (xsd:dateTime).
    DateTime,
    /// `binary` (base64).
    Binary,
    /// `reference` (a URI).
    Reference,
    /// `complex`: has sub-attributes.
    Complex,
}

/// RFC 7643 §7 `mutability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    /// Set by the service provider only.
    ReadOnly,
    /// May be updated and read.
    ReadWrite,
    /// May be set on creation (or when empty), never changed afterwards.
    Immutable,
    /// May be set, never returned.
    WriteOnly,
}

/// RFC 7643 §7 `returned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    /// Returned whatever `attributes`/`excludedAttributes` say.
    Always,
    /// Never returned.
    Never,
    /// Returned unless excluded.
    Default,
    /// Returned only when named in `attributes`.
    Request,
}

/// RFC 7643 §7 `uniqueness`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    /// No uniqueness required.
    None,
    /// Unique within this service provider.
    Server,
    /// Globally unique.
    Global,
}

impl AttrType {
    /// The keyword used in schema representations (RFC 7643 §7 `type`).
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Binary => "binary",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
        }
    }
}

impl Mutability {
    /// The keyword used in schema representations.
    pub fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        }
    }
}

impl Returned {
    /// The keyword used in schema representations.
    pub fn as_str(self) -> &'static str {
        match self {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
            Returned::Request => "request",
        }
    }
}

impl Uniqueness {
    /// The keyword used in schema representations.
    pub fn as_str(self) -> &'static str {
        match self {
            Uniqueness::None => "none",
            Uniqueness::Server => "server",
            Uniqueness::Global => "global",
        }
    }
}

/// One attribute definition with the characteristics of RFC 7643 §2.2 and §7.
#[derive(Debug, Clone)]
pub struct AttributeDef {
    /// Attribute name as the RFC spells it (lookups ignore case).
    pub name: &'static str,
    /// Data type.
    pub attr_type: AttrType,
    /// Whether the value is a JSON array.
    pub multi_valued: bool,
    /// Human-readable description, published in `/Schemas`.
    pub description: &'static str,
    /// Whether a value must be supplied.
    pub required: bool,
    /// Whether string comparisons are case-sensitive.
    pub case_exact: bool,
    /// Who may change the value.
    pub mutability: Mutability,
    /// When the value is returned.
    pub returned: Returned,
    /// Uniqueness scope.
    pub uniqueness: Uniqueness,
    /// Canonical values; may be replaced at run time (see [`ResourceType::set_canonical_values`]).
    pub canonical_values: Vec<String>,
    /// Resource types a `reference` may point to (`User`, `Group`, `external`, `uri`).
    pub reference_types: Vec<&'static str>,
    /// Sub-attributes of a complex attribute.
    pub sub_attributes: Vec<AttributeDef>,
}

impl AttributeDef {
    /// A single-valued, optional, read-write string with default return; adjust with the builders.
    pub fn string(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            attr_type: AttrType::String,
            multi_valued: false,
            description,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            canonical_values: Vec::new(),
            reference_types: Vec::new(),
            sub_attributes: Vec::new(),
        }
    }
    /// Same as [`AttributeDef::string`] with another type.
    pub fn of_type(name: &'static str, attr_type: AttrType, description: &'static str) -> Self {
        Self { attr_type, ..Self::string(name, description) }
    }
    /// A `reference` attribute pointing at the given resource types.
    pub fn reference(name: &'static str, types: &[&'static str], description: &'static str) -> Self {
        Self::of_type(name, AttrType::Reference, description).reference_types(types)
    }
    /// A complex attribute with sub-attributes.
    pub fn complex(name: &'static str, description: &'static str, subs: Vec<AttributeDef>) -> Self {
        Self { attr_type: AttrType::Complex, sub_attributes: subs, ..Self::string(name, description) }
    }
    /// Marks the attribute multi-valued.
    pub fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }
    /// Marks the attribute required.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
    /// Marks the attribute case-exact.
    pub fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    /// Sets mutability.
    pub fn mutability(mut self, m: Mutability) -> Self {
        self.mutability = m;
        self
    }
    /// Sets `returned`.
    pub fn returned(mut self, r: Returned) -> Self {
        self.returned = r;
        self
    }
    /// Sets uniqueness.
    pub fn uniqueness(mut self, u: Uniqueness) -> Self {
        self.uniqueness = u;
        self
    }
    /// Sets canonical values.
    pub fn canonical(mut self, values: &[&str]) -> Self {
        self.canonical_values = values.iter().map(|v| v.to_string()).collect();
        self
    }
    /// Sets reference types.
    pub fn reference_types(mut self, types: &[&'static str]) -> Self {
        self.reference_types = types.to_vec();
        self
    }
    /// Finds a sub-attribute by name, ignoring case.
    pub fn sub(&self, name: &str) -> Option<&AttributeDef> {
        self.sub_attributes.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

/// A schema (core or extension): its URN and top-level attributes.
///
/// The common attributes `id`, `externalId` and `meta` are not listed here (RFC 7643 §3.1);
/// they belong to [`ResourceType::common`].
#[derive(Debug, Clone)]
pub struct SchemaDef {
    /// Schema URN.
    pub id: &'static str,
    /// Short name, e.g. `User`.
    pub name: &'static str,
    /// Human-readable description.
    pub description: &'static str,
    /// Top-level attributes.
    pub attributes: Vec<AttributeDef>,
}

impl SchemaDef {
    /// Finds a top-level attribute by name, ignoring case.
    pub fn attr(&self, name: &str) -> Option<&AttributeDef> {
        self.attributes.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

/// A resource type: endpoint, core schema and extensions (RFC 7643 §6).
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// Resource type name, e.g. `User`.
    pub name: &'static str,
    /// Endpoint relative to the base URL, e.g. `/Users`.
    pub endpoint: &'static str,
    /// Human-readable description.
    pub description: &'static str,
    /// Core schema.
    pub schema: SchemaDef,
    /// Extension schemas and whether each is required.
    pub extensions: Vec<(SchemaDef, bool)>,
    /// Common attributes (`id`, `externalId`, `meta`): resolvable, but published in no schema.
    pub common: Vec<AttributeDef>,
}

/// The result of resolving an attribute path against a resource type.
#[derive(Debug, Clone, Copy)]
pub struct Resolved<'a> {
    /// The schema that defines the attribute.
    pub schema: &'a SchemaDef,
    /// True when that schema is an extension (its attributes live under the URN key in JSON).
    pub extension: bool,
    /// True for a common attribute (`id`, `externalId`, `meta`); `schema` is then the core schema,
    /// since common attributes sit at the top level of the resource next to the core ones.
    pub common: bool,
    /// The top-level attribute.
    pub attr: &'a AttributeDef,
    /// The sub-attribute, when the path names one.
    pub sub: Option<&'a AttributeDef>,
}

impl<'a> Resolved<'a> {
    /// The definition the path finally designates (sub-attribute if any, else the attribute).
    pub fn target(&self) -> &'a AttributeDef {
        self.sub.unwrap_or(self.attr)
    }
}

impl ResourceType {
    /// Every schema of the type, core first.
    pub fn schemas(&self) -> impl Iterator<Item = (&SchemaDef, bool)> {
        std::iter::once((&self.schema, false)).chain(self.extensions.iter().map(|(s, _)| (s, true)))
    }

    /// Finds a schema (core or extension) by URN, ignoring case.
    pub fn schema_by_urn(&self, urn: &str) -> Option<(&SchemaDef, bool)> {
        self.schemas().find(|(s, _)| s.id.eq_ignore_ascii_case(urn))
    }

    /// Resolves `[uri:]attr[.sub]` case-insensitively. Without a URI, the common attributes are
    /// tried first, then the core schema, then the extensions (so `employeeNumber` finds the
    /// Enterprise User attribute). With the core schema's URI, common attributes resolve too,
    /// because clients sometimes qualify `externalId` that way.
    pub fn resolve(&self, path: &AttrPath) -> Option<Resolved<'_>> {
        let (schemas, with_common): (Vec<(&SchemaDef, bool)>, bool) = match &path.uri {
            Some(uri) => {
                let found = self.schema_by_urn(uri)?;
                (vec![found], !found.1)
            }
            None => (self.schemas().collect(), true),
        };
        let common = self.common.iter().find(|a| a.name.eq_ignore_ascii_case(&path.attr));
        if let Some(attr) = common.filter(|_| with_common) {
            let sub = sub_of(attr, path.sub_attr.as_deref())?;
            return Some(Resolved { schema: &self.schema, extension: false, common: true, attr, sub });
        }
        for (schema, extension) in schemas {
            if let Some(attr) = schema.attr(&path.attr) {
                let sub = sub_of(attr, path.sub_attr.as_deref())?;
                return Some(Resolved { schema, extension, common: false, attr, sub });
            }
        }
        None
    }

    /// Splits a textual reference `[uri:]attr[.sub]` into an [`AttrPath`] without resolving it.
    ///
    /// A URI prefix is recognised by the schemas of this type first (their URNs contain dots
    /// and colons), else as everything before the last colon. Returns `None` when the text is
    /// not a well-formed attribute reference (empty name, more than one dot, characters outside
    /// RFC 7643 §2.1 `ATTRNAME` other than a leading `$` for `$ref`).
    pub fn split_path(&self, text: &str) -> Option<AttrPath> {
        let text = text.trim();
        let (uri, rest) = match self.schemas().find(|(s, _)| has_urn_prefix(text, s.id)) {
            Some((s, _)) => (Some(text[..s.id.len()].to_string()), &text[s.id.len() + 1..]),
            None if text.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) => {
                // `urn:` alone is no URI: the namespace part must be non-empty.
                let colon = text.rfind(':').filter(|&c| c > 4)?;
                (Some(text[..colon].to_string()), &text[colon + 1..])
            }
            None => (None, text),
        };
        let mut parts = rest.split('.');
        let attr = parts.next().filter(|a| is_attr_name(a))?.to_string();
        let sub_attr = match parts.next() {
            Some(sub) if is_attr_name(sub) => Some(sub.to_string()),
            Some(_) => return None,
            None => None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(AttrPath { uri, attr, sub_attr })
    }

    /// Replaces the canonical values of the attribute at `path` (e.g. `roles.value`, where the
    /// server advertises its role catalogue). Returns false when the path names no attribute.
    pub fn set_canonical_values(&mut self, path: &str, values: Vec<String>) -> bool {
        let Some(p) = self.split_path(path) else {
            return false;
        };
        let Some(r) = self.resolve(&p) else {
            return false;
        };
        // Re-find mutably by the names `resolve` matched: it only hands out shared references.
        let (schema_id, common, attr, sub) = (r.schema.id, r.common, r.attr.name, r.sub.map(|s| s.name));
        let top = if common {
            self.common.iter_mut().find(|a| a.name == attr)
        } else {
            std::iter::once(&mut self.schema)
                .chain(self.extensions.iter_mut().map(|(s, _)| s))
                .find(|s| s.id == schema_id)
                .and_then(|s| s.attributes.iter_mut().find(|a| a.name == attr))
        };
        let target = match (top, sub) {
            (Some(a), Some(sub)) => a.sub_attributes.iter_mut().find(|s| s.name == sub),
            (top, None) => top,
            (None, Some(_)) => None,
        };
        match target {
            Some(def) => {
                def.canonical_values = values;
                true
            }
            None => false,
        }
    }
}

/// The sub-attribute `name` of `attr`: `Some(None)` without a name, `None` when unknown.
fn sub_of<'a>(attr: &'a AttributeDef, name: Option<&str>) -> Option<Option<&'a AttributeDef>> {
    match name {
        Some(name) => attr.sub(name).map(Some),
        None => Some(None),
    }
}

/// True when `text` starts with `urn` (ignoring case) followed by `:` and something more.
fn has_urn_prefix(text: &str, urn: &str) -> bool {
    text.len() > urn.len() + 1
        && text.is_char_boundary(urn.len())
        && text[..urn.len()].eq_ignore_ascii_case(urn)
        && text.as_bytes()[urn.len()] == b':'
}

/// RFC 7643 §2.1 `ATTRNAME = ALPHA *(nameChar)`, plus `$ref`.
fn is_attr_name(s: &str) -> bool {
    let body = s.strip_prefix('$').unwrap_or(s);
    let mut chars = body.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> AttrPath {
        user_resource_type().split_path(text).expect("well-formed path")
    }

    #[test]
    fn resolves_core_attributes_ignoring_case() {
        let rt = user_resource_type();
        let r = rt.resolve(&path("USERNAME")).unwrap();
        assert_eq!(r.attr.name, "userName");
        assert!(!r.extension && !r.common);
        let r = rt.resolve(&path("name.GIVENNAME")).unwrap();
        assert_eq!(r.target().name, "givenName");
        let r = rt.resolve(&path("urn:ietf:params:scim:schemas:core:2.0:user:emails.value")).unwrap();
        assert_eq!((r.attr.name, r.target().name), ("emails", "value"));
        assert!(rt.resolve(&path("name.nonsense")).is_none());
        assert!(rt.resolve(&path("nonsense")).is_none());
    }

    #[test]
    fn resolves_extension_attributes_with_and_without_urn() {
        let rt = user_resource_type();
        let r = rt.resolve(&path("employeeNumber")).unwrap();
        assert!(r.extension);
        assert_eq!(r.schema.id, ENTERPRISE_USER_SCHEMA);
        let r = rt.resolve(&path(&format!("{ENTERPRISE_USER_SCHEMA}:manager.value"))).unwrap();
        assert_eq!((r.attr.name, r.target().name), ("manager", "value"));
        // The core URN does not reach into the extension.
        assert!(rt.resolve(&path(&format!("{USER_SCHEMA}:employeeNumber"))).is_none());
    }

    #[test]
    fn common_attributes_resolve_but_belong_to_no_schema() {
        for rt in [user_resource_type(), group_resource_type()] {
            for (text, name) in [("id", "id"), ("EXTERNALID", "externalId"), ("meta.lastModified", "lastModified")] {
                let r = rt.resolve(&path(text)).unwrap_or_else(|| panic!("{text} resolves"));
                assert!(r.common && !r.extension, "{text}");
                assert_eq!(r.schema.id, rt.schema.id);
                assert_eq!(r.target().name, name);
            }
            for (schema, _) in rt.schemas() {
                for common in ["id", "externalId", "meta"] {
                    assert!(schema.attr(common).is_none(), "{common} listed in {}", schema.id);
                }
            }
        }
        let rt = user_resource_type();
        let id = rt.resolve(&path("id")).unwrap().attr;
        assert!(id.case_exact);
        assert_eq!((id.mutability, id.returned), (Mutability::ReadOnly, Returned::Always));
        assert!(rt.resolve(&path("externalId")).unwrap().attr.case_exact);
        let modified = rt.resolve(&path("meta.lastModified")).unwrap().target();
        assert_eq!(modified.attr_type, AttrType::DateTime);
        assert!(rt.resolve(&path(&format!("{USER_SCHEMA}:externalId"))).unwrap().common);
        assert!(rt.resolve(&path(&format!("{ENTERPRISE_USER_SCHEMA}:id"))).is_none());
    }

    #[test]
    fn split_path_recognises_urns_and_rejects_malformed_text() {
        let rt = user_resource_type();
        let p = rt.split_path(" urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.$ref ").unwrap();
        assert_eq!(p.uri.as_deref(), Some(ENTERPRISE_USER_SCHEMA));
        assert_eq!((p.attr.as_str(), p.sub_attr.as_deref()), ("manager", Some("$ref")));
        let p = rt.split_path("urn:example:unknown:2.0:Thing:attr").unwrap();
        assert_eq!((p.uri.as_deref(), p.attr.as_str()), (Some("urn:example:unknown:2.0:Thing"), "attr"));
        let p = rt.split_path("members.value").unwrap();
        assert_eq!((p.uri, p.attr.as_str(), p.sub_attr.as_deref()), (None, "members", Some("value")));
        for bad in [
            "",
            "a.b.c",
            "1abc",
            "name.",
            ".x",
            "emails[type eq \"work\"]",
            "a b",
            "urn:x",
            // Non-ASCII must be refused, not panic on a byte slice.
            "ab€",
            "€",
            "é.x",
            "nämé",
        ] {
            assert!(rt.split_path(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn canonical_values_can_be_set_at_run_time() {
        let mut rt = user_resource_type();
        assert!(rt.set_canonical_values("ROLES.value", vec!["admin".into(), "viewer".into()]));
        let r = rt.resolve(&path("roles.value")).unwrap();
        assert_eq!(r.target().canonical_values, ["admin", "viewer"]);
        assert!(rt.set_canonical_values(&format!("{ENTERPRISE_USER_SCHEMA}:department"), vec!["R&D".into()]));
        assert_eq!(rt.resolve(&path("department")).unwrap().attr.canonical_values, ["R&D"]);
        assert!(!rt.set_canonical_values("roles.nonsense", vec![]));
        assert!(!rt.set_canonical_values("not a path", vec![]));
    }
}
