//! Abstract syntax of filters and PATCH paths.

use serde_json::Value;

/// An attribute reference: `[schemaURI:]attr[.subAttr]`.
///
/// Names are kept as written; consumers resolve them case-insensitively against the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrPath {
    /// Schema URI prefix (e.g. the Enterprise User extension), when given.
    pub uri: Option<String>,
    /// Top-level attribute name.
    pub attr: String,
    /// Sub-attribute name, when given.
    pub sub_attr: Option<String>,
}

/// Comparison operators of RFC 7644 §3.4.2.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `attrPath op compValue`; the value is a JSON string, number, boolean or null.
    Compare { path: AttrPath, op: CompareOp, value: Value },
    /// `attrPath pr`.
    Present(AttrPath),
    /// `a and b`.
    And(Box<Filter>, Box<Filter>),
    /// `a or b`.
    Or(Box<Filter>, Box<Filter>),
    /// `not (a)`.
    Not(Box<Filter>),
    /// `attrPath[valFilter]`: some value of the multi-valued attribute matches `filter`, whose
    /// paths are relative to that value (sub-attribute names in `AttrPath::attr`).
    ValuePath { path: AttrPath, filter: Box<Filter> },
}

/// A PATCH operation path: `attrPath` or `attrPath[valFilter][.subAttr]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    /// The attribute (with sub-attribute when written `a.b` without a filter).
    pub attr: AttrPath,
    /// Value filter selecting elements of a multi-valued attribute.
    pub filter: Option<Filter>,
    /// Sub-attribute after a value filter: `emails[type eq "work"].value`.
    pub sub_attr: Option<String>,
}
