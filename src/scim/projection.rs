//! `attributes` and `excludedAttributes` (RFC 7644 §3.4.2.5, §3.9): which parts of a resource
//! a response carries.
//!
//! Rules applied on top of the client's lists (RFC 7643 §2.4):
//! - `returned: never` (e.g. `password`) is always removed;
//! - `returned: always` (e.g. `id`) and the `schemas` array are always kept;
//! - `returned: request` is kept only when named in `attributes`;
//! - when `attributes` is given, only what it names is returned (it wins over
//!   `excludedAttributes` when both are sent);
//! - an extension object left empty is removed, and its URN with it from `schemas`.
//!
//! Names the schema does not know are ignored: identity providers send odd lists, and a
//! projection of an attribute that does not exist is simply empty.

use serde_json::{Map, Value};

use super::ScimError;
use super::schema::{AttributeDef, ResourceType, Returned};

/// One resolved entry of `attributes` or `excludedAttributes`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Selection {
    /// URN of the schema the attribute belongs to (the core schema for common attributes).
    schema: &'static str,
    /// Top-level attribute; `None` when the entry is a bare schema URN (the whole schema).
    attr: Option<&'static str>,
    /// Sub-attribute, when the entry names one.
    sub: Option<&'static str>,
}

impl Selection {
    /// Whether this entry names all of `attr` (itself or its whole schema).
    fn covers(&self, schema: &str, attr: &str) -> bool {
        self.schema.eq_ignore_ascii_case(schema)
            && match self.attr {
                None => true,
                Some(a) => a.eq_ignore_ascii_case(attr) && self.sub.is_none(),
            }
    }

    /// Whether this entry names `attr` or one of its sub-attributes.
    fn touches(&self, schema: &str, attr: &str) -> bool {
        self.schema.eq_ignore_ascii_case(schema) && self.attr.is_none_or(|a| a.eq_ignore_ascii_case(attr))
    }

    /// The sub-attribute this entry names under `attr`, if any.
    fn sub_of(&self, schema: &str, attr: &str) -> Option<&'static str> {
        if self.schema.eq_ignore_ascii_case(schema) && self.attr.is_some_and(|a| a.eq_ignore_ascii_case(attr)) {
            self.sub
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Mode {
    /// Neither parameter: the default set.
    #[default]
    Default,
    /// `attributes`: only these, plus what is always returned.
    Include(Vec<Selection>),
    /// `excludedAttributes`: the default set minus these.
    Exclude(Vec<Selection>),
}

/// A parsed `attributes`/`excludedAttributes` pair, ready to trim resources of one type.
///
/// `Projection::default()` returns the default set (nothing requested, nothing excluded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    mode: Mode,
}

impl Projection {
    /// Parses the two comma-separated parameters against `rt`.
    ///
    /// Entries are attribute paths `[urn:]attr[.sub]` matched case-insensitively; a bare schema
    /// URN selects that whole schema. Unknown names are ignored; an entry that is not an
    /// attribute path at all (e.g. `a.b.c`, or a value filter) is a 400 `invalidValue`. Empty
    /// parameters count as absent.
    pub fn parse(attributes: Option<&str>, excluded: Option<&str>, rt: &ResourceType) -> Result<Projection, ScimError> {
        let mode = if let Some(list) = parse_list(attributes, rt, "attributes")? {
            Mode::Include(list)
        } else if let Some(list) = parse_list(excluded, rt, "excludedAttributes")? {
            Mode::Exclude(list)
        } else {
            Mode::Default
        };
        Ok(Projection { mode })
    }

    /// Removes from `resource` (a full representation of type `rt`) everything that must not be
    /// returned.
    pub fn apply(&self, rt: &ResourceType, resource: &mut Map<String, Value>) {
        let keys: Vec<String> = resource.keys().cloned().collect();
        for key in keys {
            if key.eq_ignore_ascii_case("schemas") {
                continue;
            }
            let keep = match rt.schema_by_urn(&key) {
                Some((ext, true)) => match resource.get_mut(&key) {
                    Some(Value::Object(inner)) => {
                        self.project_members(ext.id, &ext.attributes, &[], inner);
                        !inner.is_empty()
                    }
                    // Not an object: nothing to project inside; keep it only in the default set.
                    _ => !matches!(self.mode, Mode::Include(_)),
                },
                _ => {
                    let def = find(&rt.common, &key).or_else(|| rt.schema.attr(&key));
                    match (def, resource.get_mut(&key)) {
                        (Some(def), Some(value)) => self.project_attr(rt.schema.id, def, value),
                        // Not in the schema: only `attributes` (which cannot name it) drops it.
                        _ => !matches!(self.mode, Mode::Include(_)),
                    }
                }
            };
            if !keep {
                // Shift, not swap: the response keeps the attribute order.
                resource.shift_remove(&key);
            }
        }
        // An extension whose object is gone must not be announced in `schemas`.
        if let Some(Value::Array(schemas)) = resource.get("schemas") {
            let kept: Vec<Value> = schemas
                .iter()
                .filter(|s| {
                    let Some(urn) = s.as_str() else { return true };
                    match rt.schema_by_urn(urn) {
                        Some((ext, true)) => resource.keys().any(|k| k.eq_ignore_ascii_case(ext.id)),
                        _ => true,
                    }
                })
                .cloned()
                .collect();
            resource.insert("schemas".into(), Value::Array(kept));
        }
    }

    /// Whether any part of the top-level attribute `attr` (e.g. `members`, `groups`, or an
    /// extension URN) will be returned, so the store can skip loading it.
    ///
    /// An unknown attribute counts as returned unless `attributes` was given.
    pub fn includes_top_level(&self, rt: &ResourceType, attr: &str) -> bool {
        if let Some((schema, true)) = rt.schema_by_urn(attr.trim()) {
            return match &self.mode {
                Mode::Default => true,
                Mode::Include(sels) => sels.iter().any(|s| s.schema.eq_ignore_ascii_case(schema.id)),
                Mode::Exclude(sels) => !sels.iter().any(|s| s.attr.is_none() && s.schema == schema.id),
            };
        }
        let resolved = rt.split_path(attr).and_then(|p| rt.resolve(&p));
        let Some(r) = resolved else {
            return !matches!(self.mode, Mode::Include(_));
        };
        let (schema, def) = (r.schema.id, r.attr);
        match def.returned {
            Returned::Never => return false,
            Returned::Always => return true,
            Returned::Default | Returned::Request => {}
        }
        match &self.mode {
            Mode::Default => def.returned != Returned::Request,
            Mode::Exclude(sels) => {
                def.returned != Returned::Request && !sels.iter().any(|s| s.covers(schema, def.name))
            }
            Mode::Include(sels) => sels.iter().any(|s| s.touches(schema, def.name)),
        }
    }

    /// Projects the attributes of one JSON object (the resource top level or an extension
    /// object) whose attributes come from `attrs` (then `common`) in schema `schema`.
    fn project_members(
        &self,
        schema: &str,
        attrs: &[AttributeDef],
        common: &[AttributeDef],
        object: &mut Map<String, Value>,
    ) {
        let keys: Vec<String> = object.keys().cloned().collect();
        for key in keys {
            let def = find(attrs, &key).or_else(|| find(common, &key));
            let keep = match (def, object.get_mut(&key)) {
                (Some(def), Some(value)) => self.project_attr(schema, def, value),
                _ => !matches!(self.mode, Mode::Include(_)),
            };
            if !keep {
                object.shift_remove(&key);
            }
        }
    }

    /// Trims one attribute value in place; returns whether the attribute stays.
    fn project_attr(&self, schema: &str, def: &AttributeDef, value: &mut Value) -> bool {
        match def.returned {
            Returned::Never => return false,
            Returned::Always => return trim_subs(def, value, |sub| sub.is_none_or(default_sub)),
            Returned::Default | Returned::Request => {}
        }
        match &self.mode {
            Mode::Default => def.returned != Returned::Request && trim_subs(def, value, |s| s.is_none_or(default_sub)),
            Mode::Exclude(sels) => {
                if def.returned == Returned::Request || sels.iter().any(|s| s.covers(schema, def.name)) {
                    return false;
                }
                let excluded: Vec<&str> = sels.iter().filter_map(|s| s.sub_of(schema, def.name)).collect();
                trim_subs(def, value, |sub| {
                    sub.is_none_or(|s| default_sub(s) && (s.returned == Returned::Always || !named(&excluded, s.name)))
                })
            }
            Mode::Include(sels) => {
                if sels.iter().any(|s| s.covers(schema, def.name)) {
                    // The whole attribute was asked for, `request` sub-attributes included.
                    return trim_subs(def, value, |sub| sub.is_none_or(|s| s.returned != Returned::Never));
                }
                let wanted: Vec<&str> = sels.iter().filter_map(|s| s.sub_of(schema, def.name)).collect();
                !wanted.is_empty()
                    && trim_subs(def, value, |sub| {
                        sub.is_some_and(|s| {
                            s.returned == Returned::Always || (s.returned != Returned::Never && named(&wanted, s.name))
                        })
                    })
            }
        }
    }
}

/// Parses one comma-separated parameter; `None` when absent or empty.
fn parse_list(text: Option<&str>, rt: &ResourceType, param: &str) -> Result<Option<Vec<Selection>>, ScimError> {
    let Some(text) = text else { return Ok(None) };
    let mut items = text.split(',').map(str::trim).filter(|s| !s.is_empty()).peekable();
    if items.peek().is_none() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for item in items {
        if let Some((schema, _)) = rt.schema_by_urn(item) {
            out.push(Selection { schema: schema.id, attr: None, sub: None });
            continue;
        }
        let path = rt
            .split_path(item)
            .ok_or_else(|| ScimError::invalid_value(format!("{param}: '{item}' is not an attribute path")))?;
        // Unknown attributes are ignored on purpose (see the module documentation).
        if let Some(r) = rt.resolve(&path) {
            out.push(Selection { schema: r.schema.id, attr: Some(r.attr.name), sub: r.sub.map(|s| s.name) });
        }
    }
    Ok(Some(out))
}

/// Finds a definition by name, ignoring case.
fn find<'a>(attrs: &'a [AttributeDef], name: &str) -> Option<&'a AttributeDef> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// Whether `name` is in `names`, ignoring case.
fn named(names: &[&str], name: &str) -> bool {
    names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Whether a sub-attribute belongs to the default set.
fn default_sub(sub: &AttributeDef) -> bool {
    matches!(sub.returned, Returned::Always | Returned::Default)
}

/// Keeps, inside a complex value (or each element of a multi-valued one), the members whose
/// sub-attribute definition (`None` when unknown) passes `keep`. Returns whether the attribute
/// stays: false only when trimming removed something and left nothing behind, so values that
/// were empty to begin with are not second-guessed.
fn trim_subs(def: &AttributeDef, value: &mut Value, keep: impl Fn(Option<&AttributeDef>) -> bool) -> bool {
    if def.sub_attributes.is_empty() {
        return true;
    }
    let trim = |object: &mut Map<String, Value>| -> bool {
        let before = object.len();
        object.retain(|k, _| keep(def.sub(k)));
        object.len() < before
    };
    match value {
        Value::Object(object) => !(trim(object) && object.is_empty()),
        Value::Array(items) => {
            let before = items.len();
            items.retain_mut(|item| match item {
                Value::Object(object) => !(trim(object) && object.is_empty()),
                _ => true,
            });
            !(items.len() < before && items.is_empty())
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::{ENTERPRISE_USER_SCHEMA, USER_SCHEMA, group_resource_type, user_resource_type};
    use serde_json::json;

    fn user() -> Map<String, Value> {
        let v = json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
            "id": "2819c223",
            "externalId": "ext-1",
            "userName": "bjensen",
            "password": "t1meMa$heen",
            "name": { "givenName": "Barbara", "familyName": "Jensen" },
            "active": true,
            "emails": [
                { "value": "bjensen@example.com", "type": "work", "primary": true },
                { "value": "babs@example.org", "type": "home" }
            ],
            "groups": [{ "value": "g1", "display": "Admins" }],
            ENTERPRISE_USER_SCHEMA: { "employeeNumber": "701984", "department": "Tour Operations" },
            "meta": { "resourceType": "User", "version": "W/\"3\"" }
        });
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn project(attributes: Option<&str>, excluded: Option<&str>) -> Map<String, Value> {
        let rt = user_resource_type();
        let p = Projection::parse(attributes, excluded, &rt).unwrap();
        let mut r = user();
        p.apply(&rt, &mut r);
        r
    }

    fn keys(m: &Map<String, Value>) -> Vec<&str> {
        m.keys().map(String::as_str).collect()
    }

    #[test]
    fn default_set_drops_password_only() {
        let r = project(None, None);
        assert!(!r.contains_key("password"));
        let mut expected = user();
        expected.shift_remove("password");
        assert_eq!(r, expected);
        // Empty parameters are the default set too.
        assert_eq!(project(Some(" "), Some(",")), r);
    }

    #[test]
    fn password_is_never_returned_even_when_asked() {
        assert!(!project(Some("password"), None).contains_key("password"));
        assert!(!project(None, Some("userName")).contains_key("password"));
    }

    #[test]
    fn attributes_keeps_only_named_plus_always_returned() {
        let r = project(Some("userName"), None);
        assert_eq!(keys(&r), ["schemas", "id", "userName"]);
        assert_eq!(r["schemas"], json!([USER_SCHEMA]));
        let r = project(Some("USERNAME, meta"), None);
        assert_eq!(keys(&r), ["schemas", "id", "userName", "meta"]);
    }

    #[test]
    fn attributes_with_sub_attributes() {
        let r = project(Some("name.givenName,emails.value"), None);
        assert_eq!(keys(&r), ["schemas", "id", "name", "emails"]);
        assert_eq!(r["name"], json!({ "givenName": "Barbara" }));
        assert_eq!(r["emails"], json!([{ "value": "bjensen@example.com" }, { "value": "babs@example.org" }]));
        // A sub-attribute no value has: the attribute disappears rather than becoming `{}`.
        let r = project(Some("name.middleName"), None);
        assert_eq!(keys(&r), ["schemas", "id"]);
    }

    #[test]
    fn enterprise_attributes_with_and_without_urn() {
        let r = project(Some(&format!("{ENTERPRISE_USER_SCHEMA}:employeeNumber")), None);
        assert_eq!(r[ENTERPRISE_USER_SCHEMA], json!({ "employeeNumber": "701984" }));
        assert_eq!(r["schemas"], json!([USER_SCHEMA, ENTERPRISE_USER_SCHEMA]));
        let r = project(Some("department"), None);
        assert_eq!(r[ENTERPRISE_USER_SCHEMA], json!({ "department": "Tour Operations" }));
        // The whole extension by its URN, in any case.
        let r = project(Some(&ENTERPRISE_USER_SCHEMA.to_lowercase()), None);
        assert_eq!(r[ENTERPRISE_USER_SCHEMA], user()[ENTERPRISE_USER_SCHEMA]);
    }

    #[test]
    fn emptied_extension_is_removed_with_its_urn() {
        let r = project(None, Some("employeeNumber,department"));
        assert!(!r.contains_key(ENTERPRISE_USER_SCHEMA));
        assert_eq!(r["schemas"], json!([USER_SCHEMA]));
        let r = project(None, Some(ENTERPRISE_USER_SCHEMA));
        assert!(!r.contains_key(ENTERPRISE_USER_SCHEMA));
        assert_eq!(r["schemas"], json!([USER_SCHEMA]));
        let r = project(None, Some("employeeNumber"));
        assert_eq!(r[ENTERPRISE_USER_SCHEMA], json!({ "department": "Tour Operations" }));
        assert_eq!(r["schemas"], json!([USER_SCHEMA, ENTERPRISE_USER_SCHEMA]));
    }

    #[test]
    fn excluded_attributes_remove_from_default_set() {
        let r = project(None, Some("emails, name.familyName, urn:ietf:params:scim:schemas:core:2.0:User:active"));
        assert!(!r.contains_key("emails") && !r.contains_key("active"));
        assert_eq!(r["name"], json!({ "givenName": "Barbara" }));
        assert!(r.contains_key("userName") && r.contains_key("meta") && r.contains_key("externalId"));
        let r = project(None, Some("emails.type,meta"));
        assert_eq!(r["emails"][0], json!({ "value": "bjensen@example.com", "primary": true }));
        assert!(!r.contains_key("meta"));
    }

    #[test]
    fn always_returned_cannot_be_excluded() {
        let r = project(None, Some("id,schemas,userName"));
        assert_eq!(r["id"], "2819c223");
        assert!(r.contains_key("schemas"));
        assert!(!r.contains_key("userName"));
    }

    #[test]
    fn attributes_wins_over_excluded_attributes() {
        let r = project(Some("userName"), Some("userName"));
        assert_eq!(keys(&r), ["schemas", "id", "userName"]);
    }

    #[test]
    fn unknown_names_are_ignored_malformed_paths_rejected() {
        let r = project(Some("userName,nonsense,name.nonsense,urn:example:other:1.0:Thing:x"), None);
        assert_eq!(keys(&r), ["schemas", "id", "userName"]);
        assert_eq!(project(None, Some("nonsense")), project(None, None));
        let rt = user_resource_type();
        for bad in ["a.b.c", "emails[type eq \"work\"]", "1st"] {
            let e = Projection::parse(Some(bad), None, &rt).unwrap_err();
            assert_eq!((e.status, e.scim_type), (400, Some(crate::scim::ScimType::InvalidValue)), "{bad}");
            assert!(Projection::parse(None, Some(bad), &rt).is_err());
        }
    }

    #[test]
    fn common_attributes_are_projectable() {
        let r = project(Some("externalId,meta.version"), None);
        assert_eq!(keys(&r), ["schemas", "id", "externalId", "meta"]);
        assert_eq!(r["meta"], json!({ "version": "W/\"3\"" }));
    }

    #[test]
    fn includes_top_level_tells_the_store_what_to_load() {
        let g = group_resource_type();
        let parse = |a: Option<&str>, e: Option<&str>| Projection::parse(a, e, &g).unwrap();
        assert!(Projection::default().includes_top_level(&g, "members"));
        assert!(!parse(None, Some("members")).includes_top_level(&g, "members"));
        assert!(!parse(None, Some("MEMBERS")).includes_top_level(&g, "members"));
        assert!(parse(None, Some("members.display")).includes_top_level(&g, "members"));
        assert!(parse(None, Some("displayName")).includes_top_level(&g, "members"));
        assert!(!parse(Some("displayName"), None).includes_top_level(&g, "members"));
        assert!(parse(Some("members.value"), None).includes_top_level(&g, "members"));
        assert!(parse(Some("displayName"), None).includes_top_level(&g, "id"));
        let u = user_resource_type();
        let p = Projection::parse(None, Some("groups"), &u).unwrap();
        assert!(!p.includes_top_level(&u, "groups"));
        assert!(!Projection::default().includes_top_level(&u, "password"));
        let p = Projection::parse(Some("employeeNumber"), None, &u).unwrap();
        assert!(p.includes_top_level(&u, ENTERPRISE_USER_SCHEMA));
        assert!(!p.includes_top_level(&u, "groups"));
        let p = Projection::parse(None, Some(ENTERPRISE_USER_SCHEMA), &u).unwrap();
        assert!(!p.includes_top_level(&u, ENTERPRISE_USER_SCHEMA));
    }

    #[test]
    fn group_members_are_excluded() {
        let g = group_resource_type();
        let mut r = match json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "g1", "displayName": "Admins",
            "members": [{ "value": "u1", "display": "Babs", "$ref": "https://h/Users/u1" }]
        }) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        Projection::parse(None, Some("members"), &g).unwrap().apply(&g, &mut r);
        assert_eq!(keys(&r), ["schemas", "id", "displayName"]);
    }
}
