//! Validation and normalisation of resources sent in POST and PUT bodies.
//!
//! The result is the stored document: attribute names in the schema's spelling, extension
//! attributes under their schema URN, values coerced to their types, and nothing that clients
//! may not set (read-only attributes are dropped, the write-only `password` is discarded: sign-in
//! is by single sign-on, so a password is never stored or returned). JSON `null` and empty
//! arrays mean "no value" (Microsoft Entra ID sends `null` for unmapped attributes).

use serde_json::{Map, Value};

use super::ScimError;
use super::schema::{AttrType, AttributeDef, Mutability, ResourceType, Returned, SchemaDef};

/// Normalises a POST or PUT body of resource type `rt`.
pub fn normalize(rt: &ResourceType, body: &Value) -> Result<Map<String, Value>, ScimError> {
    let obj = body.as_object().ok_or_else(|| ScimError::invalid_syntax("the request body must be a JSON object"))?;
    let schemas =
        obj.iter().find(|(k, _)| k.eq_ignore_ascii_case("schemas")).map(|(_, v)| v).ok_or_else(|| {
            ScimError::invalid_syntax(format!("'schemas' is required and must include {}", rt.schema.id))
        })?;
    let listed: Vec<&str> = match schemas {
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => return Err(ScimError::invalid_syntax("'schemas' must be an array of schema URIs")),
    };
    if !listed.iter().any(|s| s.eq_ignore_ascii_case(rt.schema.id)) {
        return Err(ScimError::invalid_syntax(format!("'schemas' must include {}", rt.schema.id)));
    }
    let mut out = Map::new();
    for (key, value) in obj {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some((ext, _)) = rt.extensions.iter().find(|(s, _)| s.id.eq_ignore_ascii_case(key)) {
            if value.is_null() {
                continue;
            }
            let block = value.as_object().ok_or_else(|| {
                ScimError::invalid_value(format!("'{}' must be an object of extension attributes", ext.id))
            })?;
            let mut ext_out = Map::new();
            for (k, v) in block {
                if let Some(def) = ext.attr(k)
                    && let Some(v) = coerce_for_write(def, v)?
                {
                    ext_out.insert(def.name.to_string(), v);
                }
            }
            if !ext_out.is_empty() {
                out.insert(ext.id.to_string(), Value::Object(ext_out));
            }
            continue;
        }
        if key.contains(':') {
            // `urn:...:Attr` names an attribute of a schema by its full path; unknown URNs
            // (identity providers' custom extensions) are ignored.
            let Some(i) = key.rfind(':') else { continue };
            let (urn, attr) = (&key[..i], &key[i + 1..]);
            if let Some((schema, extension)) = rt.schema_by_urn(urn)
                && let Some(def) = schema.attr(attr)
                && let Some(v) = coerce_for_write(def, value)?
            {
                insert_attr(&mut out, schema, extension, def, v);
            }
            continue;
        }
        if let Some(def) = rt.common.iter().find(|a| a.name.eq_ignore_ascii_case(key)) {
            if def.mutability != Mutability::ReadOnly
                && let Some(v) = coerce_for_write(def, value)?
            {
                out.insert(def.name.to_string(), v);
            }
            continue;
        }
        if let Some(def) = rt.schema.attr(key)
            && let Some(v) = coerce_for_write(def, value)?
        {
            out.insert(def.name.to_string(), v);
        }
    }
    for def in rt.schema.attributes.iter().filter(|a| a.required && a.mutability != Mutability::ReadOnly) {
        if !out.contains_key(def.name) {
            return Err(ScimError::invalid_value(format!("'{}' is required", def.name)));
        }
    }
    Ok(out)
}

fn insert_attr(out: &mut Map<String, Value>, schema: &SchemaDef, extension: bool, def: &AttributeDef, v: Value) {
    if extension {
        let block = out.entry(schema.id.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(b) = block {
            b.insert(def.name.to_string(), v);
        }
    } else {
        out.insert(def.name.to_string(), v);
    }
}

/// Coerces a client value for storage: read-only and never-returned write-only attributes are
/// dropped (`Ok(None)`), like "no value".
fn coerce_for_write(def: &AttributeDef, value: &Value) -> Result<Option<Value>, ScimError> {
    if def.mutability == Mutability::ReadOnly
        || (def.mutability == Mutability::WriteOnly && def.returned == Returned::Never)
    {
        return Ok(None);
    }
    coerce_value(def, value)
}

/// Coerces `value` to the type of `def`. `Ok(None)` means "no value" (null, empty array, empty
/// complex value). Read-only sub-attributes are dropped. Wrong types are 400 `invalidValue`.
pub fn coerce_value(def: &AttributeDef, value: &Value) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    if def.multi_valued {
        let items: Vec<&Value> = match value {
            Value::Array(a) => a.iter().collect(),
            single => vec![single],
        };
        let mut out = Vec::with_capacity(items.len());
        let mut seen = ValueSet::default();
        for item in items {
            if let Some(v) = coerce_single(def, item)?
                && seen.insert(&v)
            {
                out.push(v);
            }
        }
        let primaries = out.iter().filter(|v| v.get("primary").and_then(Value::as_bool) == Some(true)).count();
        if primaries > 1 {
            return Err(ScimError::invalid_value(format!("at most one value of '{}' may be primary", def.name)));
        }
        return Ok((!out.is_empty()).then_some(Value::Array(out)));
    }
    if value.is_array() {
        return Err(ScimError::invalid_value(format!("'{}' takes a single value, not an array", def.name)));
    }
    coerce_single(def, value)
}

/// Coerces one value (an element, for multi-valued attributes).
fn coerce_single(def: &AttributeDef, value: &Value) -> Result<Option<Value>, ScimError> {
    let wrong = |what: &str| ScimError::invalid_value(format!("'{}' must be {what}, got {value}", def.name));
    Ok(match def.attr_type {
        _ if value.is_null() => None,
        AttrType::Complex => {
            // Microsoft Entra ID sends a bare value for complex attributes such as `manager`:
            // read `"x"` as `{"value": "x"}` where the attribute has a `value`.
            let wrapped;
            let value = match (value, def.sub("value")) {
                (Value::String(_) | Value::Number(_) | Value::Bool(_), Some(_)) => {
                    let mut m = Map::new();
                    m.insert("value".into(), value.clone());
                    wrapped = Value::Object(m);
                    &wrapped
                }
                _ => value,
            };
            let obj = value.as_object().ok_or_else(|| wrong("an object"))?;
            let mut out = Map::new();
            for (k, v) in obj {
                let Some(sub) = def.sub(k) else { continue };
                if sub.mutability == Mutability::ReadOnly {
                    continue;
                }
                if let Some(v) = coerce_value(sub, v)? {
                    out.insert(sub.name.to_string(), v);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        AttrType::Boolean => Some(Value::Bool(match value {
            Value::Bool(b) => *b,
            Value::String(s) if s.eq_ignore_ascii_case("true") => true,
            Value::String(s) if s.eq_ignore_ascii_case("false") => false,
            _ => return Err(wrong("true or false")),
        })),
        AttrType::Integer => {
            if value.as_i64().is_some() {
                Some(value.clone())
            } else {
                return Err(wrong("an integer"));
            }
        }
        AttrType::Decimal => {
            if value.is_number() {
                Some(value.clone())
            } else {
                return Err(wrong("a number"));
            }
        }
        AttrType::DateTime => {
            let s = value.as_str().ok_or_else(|| wrong("an RFC 3339 date-time string"))?;
            if crate::clock::parse_time(s).is_none() {
                return Err(wrong("an RFC 3339 date-time string"));
            }
            Some(value.clone())
        }
        AttrType::String | AttrType::Reference | AttrType::Binary => {
            let text = value.as_str().ok_or_else(|| wrong("a string"))?;
            check_text(def, text)?;
            Some(value.clone())
        }
    })
}

/// Attributes whose text may span lines (RFC 7643 §4.1.2: a formatted address or name, a
/// street address of several lines).
const MULTI_LINE: &[&str] = &["formatted", "streetAddress"];

/// Refuses control characters in a string value: NUL cannot be stored by PostgreSQL at all, and
/// the others have no place in names, identifiers or addresses. Tab, line feed and carriage
/// return are allowed in the multi-line attributes only.
fn check_text(def: &AttributeDef, text: &str) -> Result<(), ScimError> {
    let multi_line = MULTI_LINE.contains(&def.name);
    match text.chars().find(|c| c.is_control() && !(multi_line && matches!(c, '\t' | '\n' | '\r'))) {
        None => Ok(()),
        Some(c) => Err(ScimError::invalid_value(format!(
            "'{}' contains the control character U+{:04X}, which is not allowed{}",
            def.name,
            c as u32,
            if multi_line { " (only tab and line breaks are)" } else { "" }
        ))),
    }
}

/// A set of JSON values with the equality of `Value` (object keys in any order), in linear
/// time: multi-valued attributes are deduplicated without comparing every pair.
#[derive(Default)]
pub(crate) struct ValueSet(std::collections::HashSet<String>);

impl ValueSet {
    /// Adds `v`; false when an equal value was there already.
    pub(crate) fn insert(&mut self, v: &Value) -> bool {
        self.0.insert(canonical_text(v))
    }
}

/// Serialisation with object keys sorted, so that equal values serialise alike: two values are
/// equal (as `Value`s) exactly when their canonical texts are.
pub(crate) fn canonical_text(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write(&m[k.as_str()], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}
