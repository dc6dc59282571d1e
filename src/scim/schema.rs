//! Resource schemas (RFC 7643 §2, §4, §7): the attribute model every other part consults.

/// Attribute data types of RFC 7643 §2.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

/// RFC 7643 §7 `mutability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

/// RFC 7643 §7 `returned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

/// RFC 7643 §7 `uniqueness`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
    Global,
}

/// One attribute definition.
#[derive(Debug, Clone)]
pub struct AttributeDef {
    pub name: &'static str,
    pub attr_type: AttrType,
    pub multi_valued: bool,
    pub description: &'static str,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub canonical_values: Vec<String>,
    pub reference_types: Vec<&'static str>,
    pub sub_attributes: Vec<AttributeDef>,
}

use super::filter::AttrPath;

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
#[derive(Debug, Clone)]
pub struct SchemaDef {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
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
    pub description: &'static str,
    /// Core schema.
    pub schema: SchemaDef,
    /// Extension schemas and whether each is required.
    pub extensions: Vec<(SchemaDef, bool)>,
}

/// The result of resolving an attribute path against a resource type.
#[derive(Debug, Clone, Copy)]
pub struct Resolved<'a> {
    /// The schema that defines the attribute.
    pub schema: &'a SchemaDef,
    /// True when that schema is an extension (its attributes live under the URN key in JSON).
    pub extension: bool,
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

    /// Resolves `[uri:]attr[.sub]` case-insensitively. Without a URI, the core schema is tried
    /// first, then the extensions (so `employeeNumber` finds the Enterprise User attribute).
    pub fn resolve(&self, path: &AttrPath) -> Option<Resolved<'_>> {
        let candidates: Vec<(&SchemaDef, bool)> = match &path.uri {
            Some(uri) => vec![self.schema_by_urn(uri)?],
            None => self.schemas().collect(),
        };
        for (schema, extension) in candidates {
            if let Some(attr) = schema.attr(&path.attr) {
                let sub = match &path.sub_attr {
                    Some(name) => Some(attr.sub(name)?),
                    None => None,
                };
                return Some(Resolved { schema, extension, attr, sub });
            }
        }
        None
    }
}
