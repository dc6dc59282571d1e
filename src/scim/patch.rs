//! PATCH (RFC 7644 §3.5.2) applied to a stored document, atomically: on any error the
//! document is left exactly as it was.
//!
//! Attributes kept outside the document (a Group's `members`, stored as rows so one member
//! change costs the same in any group) are not applied here: their operations are returned as
//! [`ExternalOp`]s for the store to run.

use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

use super::ScimError;
use super::filter::eval::element_matches;
use super::filter::{CompareOp, Filter, PatchPath, parse_patch_path};
use super::resource::{canonical_text, coerce_value};
use super::schema::{AttrType, AttributeDef, Mutability, PATCH_OP_SCHEMA, ResourceType, SchemaDef};

/// The operation of one PATCH step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Remove,
    Replace,
}

/// One PATCH step.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOperation {
    pub op: Op,
    pub path: Option<PatchPath>,
    /// The path as sent, for error messages.
    pub path_text: Option<String>,
    pub value: Option<Value>,
}

/// A parsed PATCH request.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchRequest {
    pub operations: Vec<PatchOperation>,
}

/// A change to a multi-valued attribute kept outside the document.
#[derive(Debug, Clone, PartialEq)]
pub enum MultiValueOp {
    /// Add these values (already present ones stay once).
    Add(Vec<Value>),
    /// Make these the only values.
    Replace(Vec<Value>),
    /// Remove the values matching the filter, or all of them.
    Remove(Option<Filter>),
    /// Remove these values (Microsoft Entra ID sends `remove` with a `value` list).
    RemoveValues(Vec<Value>),
}

/// An operation on an attribute stored outside the document.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalOp {
    /// Canonical attribute name.
    pub attr: String,
    pub op: MultiValueOp,
}

/// What a PATCH did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PatchOutcome {
    /// Whether the document changed.
    pub changed: bool,
    /// Operations on external attributes, in request order.
    pub external: Vec<ExternalOp>,
}

fn get_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
}

/// Parses a PATCH body (`PatchOp` message).
pub fn parse_patch_request(body: &Value) -> Result<PatchRequest, ScimError> {
    let obj = body.as_object().ok_or_else(|| ScimError::invalid_syntax("the PATCH body must be a JSON object"))?;
    let schemas_ok = matches!(get_ci(obj, "schemas"), Some(Value::Array(a))
        if a.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(PATCH_OP_SCHEMA))));
    if !schemas_ok {
        return Err(ScimError::invalid_syntax(format!("'schemas' must include {PATCH_OP_SCHEMA}")));
    }
    let ops = match get_ci(obj, "Operations") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => return Err(ScimError::invalid_syntax("'Operations' must not be empty")),
        _ => return Err(ScimError::invalid_syntax("'Operations' must be an array of operations")),
    };
    let mut operations = Vec::with_capacity(ops.len());
    for (i, raw) in ops.iter().enumerate() {
        let o = raw.as_object().ok_or_else(|| ScimError::invalid_syntax(format!("operation {i} must be an object")))?;
        let op = match get_ci(o, "op").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() {
            Some("add") => Op::Add,
            Some("remove") => Op::Remove,
            Some("replace") => Op::Replace,
            Some(other) => {
                return Err(ScimError::invalid_syntax(format!(
                    "operation {i}: unknown op '{other}' (add, remove, replace)"
                )));
            }
            None => return Err(ScimError::invalid_syntax(format!("operation {i}: 'op' is required"))),
        };
        let path_text = match get_ci(o, "path") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(ScimError::invalid_path(format!("operation {i}: 'path' must be a string"))),
        };
        let path = path_text.as_deref().map(parse_patch_path).transpose()?;
        let value = get_ci(o, "value").cloned();
        match op {
            Op::Remove if path.is_none() => {
                return Err(ScimError::no_target(format!("operation {i}: remove needs a 'path'")));
            }
            Op::Add | Op::Replace if value.is_none() => {
                return Err(ScimError::invalid_syntax(format!("operation {i}: {op:?} needs a 'value'")));
            }
            _ => {}
        }
        operations.push(PatchOperation { op, path, path_text, value });
    }
    Ok(PatchRequest { operations })
}

/// Applies `req` to `doc` (a normalised document of type `rt`). Operations on attributes listed
/// in `external` are returned instead of applied. Atomic: `doc` is untouched on error.
pub fn apply_patch(
    rt: &ResourceType,
    doc: &mut Map<String, Value>,
    req: &PatchRequest,
    external: &[&str],
) -> Result<PatchOutcome, ScimError> {
    let mut work = doc.clone();
    let mut outcome = PatchOutcome::default();
    let mut idx = ValueIndexes::default();
    for op in &req.operations {
        apply_one(rt, &mut work, op, external, &mut outcome.external, &mut idx)?;
    }
    outcome.changed = work != *doc;
    *doc = work;
    Ok(outcome)
}

/// Where in the document an attribute lives: its schema and whether that is an extension.
struct Target<'a> {
    schema: &'a SchemaDef,
    extension: bool,
    attr: &'a AttributeDef,
    sub: Option<&'a AttributeDef>,
}

/// Canonical texts of the values of multi-valued attributes, kept across the operations of one
/// PATCH, so that an `add` costs time in the values it adds rather than in all the values already
/// there (a PATCH of many `add`s on one attribute was quadratic), and a `remove` of listed values
/// hashes no stored value again. An entry describes its attribute's array exactly; any other
/// change to that attribute drops the entry, and the next use builds it again from the array.
#[derive(Default)]
struct ValueIndexes(HashMap<(&'static str, &'static str), ValueIndex>);

impl ValueIndexes {
    fn forget(&mut self, t: &Target<'_>) {
        self.0.remove(&(t.schema.id, t.attr.name));
    }
    fn forget_schema(&mut self, schema: &str) {
        self.0.retain(|(s, _), _| *s != schema);
    }
    /// The index of `items` (the array of `t`), built unless the one kept is still current.
    fn take(&mut self, t: &Target<'_>, items: &[Value]) -> ValueIndex {
        match self.0.remove(&(t.schema.id, t.attr.name)) {
            Some(i) if i.canon.len() == items.len() => i,
            _ => ValueIndex::build(items),
        }
    }
    fn keep(&mut self, t: &Target<'_>, index: ValueIndex) {
        self.0.insert((t.schema.id, t.attr.name), index);
    }
}

/// One multi-valued attribute's values by canonical text (see [`canonical_text`]).
struct ValueIndex {
    /// The canonical text of each element, in array order.
    canon: Vec<String>,
    /// How many elements have each canonical text (an array may hold equal elements).
    counts: HashMap<String, usize>,
    /// Elements that have a `primary` key, whatever its value: a new primary value removes the
    /// key from exactly these.
    with_primary: Vec<usize>,
    /// How many elements have `primary: true`.
    primaries: usize,
}

impl ValueIndex {
    fn build(items: &[Value]) -> Self {
        let mut index = ValueIndex {
            canon: Vec::with_capacity(items.len()),
            counts: HashMap::new(),
            with_primary: Vec::new(),
            primaries: 0,
        };
        for item in items {
            index.push(item);
        }
        index
    }
    /// The index of `items`, what is left of this index's array once the elements whose texts
    /// are in `removed` were taken out (no text is computed again).
    fn without(self, removed: &HashSet<String>, items: &[Value]) -> Self {
        let mut out = ValueIndex::build(&[]);
        out.canon.reserve(items.len());
        let kept = self.canon.into_iter().filter(|c| !removed.contains(c));
        for (item, canon) in items.iter().zip(kept) {
            out.push_canonical(item, canon);
        }
        out
    }
    fn contains(&self, canon: &str) -> bool {
        self.counts.get(canon).is_some_and(|n| *n > 0)
    }
    /// Records `item`, appended to the array.
    fn push(&mut self, item: &Value) {
        self.push_canonical(item, canonical_text(item));
    }
    fn push_canonical(&mut self, item: &Value, canon: String) {
        if item.as_object().is_some_and(|o| o.contains_key("primary")) {
            self.with_primary.push(self.canon.len());
        }
        if is_primary(item) {
            self.primaries += 1;
        }
        *self.counts.entry(canon.clone()).or_insert(0) += 1;
        self.canon.push(canon);
    }
    /// Element `i` changed: its canonical text is computed again.
    fn changed(&mut self, i: usize, item: &Value) {
        let old = std::mem::replace(&mut self.canon[i], canonical_text(item));
        if let Some(n) = self.counts.get_mut(&old) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&old);
            }
        }
        *self.counts.entry(self.canon[i].clone()).or_insert(0) += 1;
    }
}

fn is_primary(v: &Value) -> bool {
    v.get("primary").and_then(Value::as_bool) == Some(true)
}

fn container<'d>(doc: &'d mut Map<String, Value>, t: &Target<'_>) -> &'d mut Map<String, Value> {
    if !t.extension {
        return doc;
    }
    let entry = doc.entry(t.schema.id.to_string()).or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    match entry {
        Value::Object(m) => m,
        _ => unreachable!("the extension block was just made an object"),
    }
}

fn drop_empty_extensions(doc: &mut Map<String, Value>, rt: &ResourceType, idx: &mut ValueIndexes) {
    for (ext, _) in &rt.extensions {
        if matches!(doc.get(ext.id), Some(Value::Object(m)) if m.is_empty()) {
            doc.remove(ext.id);
            idx.forget_schema(ext.id);
        }
    }
}

fn apply_one(
    rt: &ResourceType,
    doc: &mut Map<String, Value>,
    op: &PatchOperation,
    external: &[&str],
    ext_ops: &mut Vec<ExternalOp>,
    idx: &mut ValueIndexes,
) -> Result<(), ScimError> {
    match &op.path {
        None => apply_pathless(rt, doc, op, external, ext_ops, idx),
        Some(path) => {
            let text = op.path_text.as_deref().unwrap_or("");
            // A path naming a whole extension schema: like a path-less value under its URN.
            if path.filter.is_none()
                && path.attr.sub_attr.is_none()
                && let Some(uri) = &path.attr.uri
            {
                let full = format!("{uri}:{}", path.attr.attr);
                if let Some((ext, true)) = rt.schema_by_urn(&full) {
                    return apply_extension_block(rt, doc, op, ext, text, idx);
                }
            }
            let r = rt
                .resolve(&path.attr)
                .ok_or_else(|| ScimError::invalid_path(format!("'{text}' names no attribute of {}", rt.name)))?;
            let target = Target { schema: r.schema, extension: r.extension, attr: r.attr, sub: r.sub };
            if r.attr.mutability == Mutability::ReadOnly || r.sub.is_some_and(|s| s.mutability == Mutability::ReadOnly)
            {
                return Err(ScimError::mutability(format!("'{text}' is read-only")));
            }
            if external.iter().any(|e| e.eq_ignore_ascii_case(r.attr.name)) && !r.extension {
                return external_op(r.attr, op, path, text, ext_ops);
            }
            apply_at_path(doc, &target, op, path, text, idx)?;
            drop_empty_extensions(doc, rt, idx);
            Ok(())
        }
    }
}

fn apply_extension_block(
    rt: &ResourceType,
    doc: &mut Map<String, Value>,
    op: &PatchOperation,
    ext: &SchemaDef,
    text: &str,
    idx: &mut ValueIndexes,
) -> Result<(), ScimError> {
    match op.op {
        Op::Remove => {
            doc.remove(ext.id);
            idx.forget_schema(ext.id);
            Ok(())
        }
        Op::Add | Op::Replace => {
            let value =
                op.value.as_ref().and_then(Value::as_object).ok_or_else(|| {
                    ScimError::invalid_value(format!("'{text}' takes an object of extension attributes"))
                })?;
            if op.op == Op::Replace {
                doc.remove(ext.id);
                idx.forget_schema(ext.id);
            }
            for (k, v) in value {
                let Some(def) = ext.attr(k) else { continue };
                if def.mutability == Mutability::ReadOnly {
                    continue;
                }
                let t = Target { schema: ext, extension: true, attr: def, sub: None };
                let path_text = format!("{}:{}", ext.id, def.name);
                set_whole(doc, &t, op.op, v, &path_text, idx)?;
            }
            drop_empty_extensions(doc, rt, idx);
            Ok(())
        }
    }
}

/// Path-less add/replace: the value is a partial resource.
fn apply_pathless(
    rt: &ResourceType,
    doc: &mut Map<String, Value>,
    op: &PatchOperation,
    external: &[&str],
    ext_ops: &mut Vec<ExternalOp>,
    idx: &mut ValueIndexes,
) -> Result<(), ScimError> {
    let value = op
        .value
        .as_ref()
        .and_then(Value::as_object)
        .ok_or_else(|| ScimError::invalid_value("an operation without 'path' takes an object value"))?;
    for (key, v) in value {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some((ext, true)) = rt.schema_by_urn(key) {
            // The attributes listed are added or replaced one by one; others stay.
            for (k, x) in v.as_object().into_iter().flatten() {
                let Some(def) = ext.attr(k) else { continue };
                if def.mutability == Mutability::ReadOnly {
                    continue;
                }
                let t = Target { schema: ext, extension: true, attr: def, sub: None };
                set_whole(doc, &t, op.op, x, &format!("{}:{}", ext.id, def.name), idx)?;
            }
            continue;
        }
        // `urn:...:attr`, `name.givenName` or `attr`.
        let path_text = key.as_str();
        let Ok(path) = parse_patch_path(path_text) else { continue };
        if path.filter.is_some() {
            continue;
        }
        let Some(r) = rt.resolve(&path.attr) else { continue };
        if r.attr.mutability == Mutability::ReadOnly || r.sub.is_some_and(|s| s.mutability == Mutability::ReadOnly) {
            // Read-only attributes in a value (e.g. `id`) are ignored, not refused.
            continue;
        }
        if external.iter().any(|e| e.eq_ignore_ascii_case(r.attr.name)) && !r.extension && r.sub.is_none() {
            let values = coerce_value(r.attr, v)?.map(as_vec).unwrap_or_default();
            let mv = match op.op {
                Op::Add => MultiValueOp::Add(values),
                _ => MultiValueOp::Replace(values),
            };
            ext_ops.push(ExternalOp { attr: r.attr.name.to_string(), op: mv });
            continue;
        }
        let t = Target { schema: r.schema, extension: r.extension, attr: r.attr, sub: r.sub };
        match r.sub {
            None => set_whole(doc, &t, op.op, v, path_text, idx)?,
            Some(_) => {
                let pp = PatchPath { attr: path.attr.clone(), filter: None, sub_attr: None };
                apply_at_path(
                    doc,
                    &t,
                    &PatchOperation { op: op.op, path: Some(pp.clone()), path_text: None, value: Some(v.clone()) },
                    &pp,
                    path_text,
                    idx,
                )?;
            }
        }
    }
    drop_empty_extensions(doc, rt, idx);
    Ok(())
}

fn as_vec(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        other => vec![other],
    }
}

fn external_op(
    attr: &AttributeDef,
    op: &PatchOperation,
    path: &PatchPath,
    text: &str,
    ext_ops: &mut Vec<ExternalOp>,
) -> Result<(), ScimError> {
    if path.attr.sub_attr.is_some() || path.sub_attr.is_some() {
        return Err(ScimError::invalid_path(format!("'{text}': sub-attributes of '{}' cannot be changed", attr.name)));
    }
    let values = || -> Result<Vec<Value>, ScimError> {
        Ok(match &op.value {
            Some(v) => coerce_value(attr, v)?.map(as_vec).unwrap_or_default(),
            None => Vec::new(),
        })
    };
    let mv = match (op.op, &path.filter) {
        (Op::Add, None) => MultiValueOp::Add(values()?),
        (Op::Replace, None) => MultiValueOp::Replace(values()?),
        (Op::Remove, None) => match &op.value {
            Some(v) if !v.is_null() => MultiValueOp::RemoveValues(values()?),
            _ => MultiValueOp::Remove(None),
        },
        (Op::Remove, Some(f)) => MultiValueOp::Remove(Some(f.clone())),
        (_, Some(_)) => {
            return Err(ScimError::invalid_path(format!(
                "'{text}': use add, remove or replace on '{}' itself, or remove with a value filter",
                attr.name
            )));
        }
    };
    ext_ops.push(ExternalOp { attr: attr.name.to_string(), op: mv });
    Ok(())
}

fn check_immutable(t: &Target<'_>, current: Option<&Value>, new: &Value, text: &str) -> Result<(), ScimError> {
    if t.attr.mutability == Mutability::Immutable && current.is_some_and(|c| c != new) {
        return Err(ScimError::mutability(format!("'{text}' is immutable once set")));
    }
    Ok(())
}

/// Sets, adds to or removes a whole top-level attribute.
fn set_whole(
    doc: &mut Map<String, Value>,
    t: &Target<'_>,
    op: Op,
    value: &Value,
    text: &str,
    idx: &mut ValueIndexes,
) -> Result<(), ScimError> {
    let coerced = coerce_value(t.attr, value)?;
    if !(op == Op::Add && t.attr.multi_valued) {
        idx.forget(t);
    }
    let map = container(doc, t);
    let name = t.attr.name;
    match (op, coerced) {
        (Op::Remove, _) | (Op::Replace, None) => {
            map.remove(name);
        }
        (Op::Add, None) => {}
        (Op::Replace, Some(v)) => {
            check_immutable(t, map.get(name), &v, text)?;
            map.insert(name.to_string(), v);
        }
        (Op::Add, Some(v)) => {
            if t.attr.multi_valued {
                let mut items = match map.remove(name) {
                    Some(Value::Array(a)) => a,
                    _ => Vec::new(),
                };
                let mut index = idx.take(t, &items);
                // Values already there, or added earlier in this operation, are not added again.
                // Compared as they were when the operation started: a new primary value takes
                // `primary` from the others, and their changed texts count from the next one.
                let mut cleared = Vec::new();
                for new in as_vec(v) {
                    let canon = canonical_text(&new);
                    if index.contains(&canon) {
                        continue;
                    }
                    if is_primary(&new) {
                        for i in std::mem::take(&mut index.with_primary) {
                            if let Value::Object(o) = &mut items[i] {
                                o.remove("primary");
                            }
                            cleared.push(i);
                        }
                        index.primaries = 0;
                    }
                    index.push_canonical(&new, canon);
                    items.push(new);
                }
                for i in cleared {
                    index.changed(i, &items[i]);
                }
                if index.primaries > 1 {
                    return Err(ScimError::invalid_value(format!("at most one value of '{name}' may be primary")));
                }
                map.insert(name.to_string(), Value::Array(items));
                idx.keep(t, index);
                return Ok(());
            } else if t.attr.attr_type == AttrType::Complex {
                let mut merged = match map.remove(name) {
                    Some(Value::Object(m)) => m,
                    _ => Map::new(),
                };
                if let Value::Object(new) = v {
                    merged.extend(new);
                }
                map.insert(name.to_string(), Value::Object(merged));
            } else {
                check_immutable(t, map.get(name), &v, text)?;
                map.insert(name.to_string(), v);
            }
        }
    }
    ensure_single_primary(map, t)?;
    Ok(())
}

fn ensure_single_primary(map: &Map<String, Value>, t: &Target<'_>) -> Result<(), ScimError> {
    if let Some(Value::Array(items)) = map.get(t.attr.name) {
        let n = items.iter().filter(|v| v.get("primary").and_then(Value::as_bool) == Some(true)).count();
        if n > 1 {
            return Err(ScimError::invalid_value(format!("at most one value of '{}' may be primary", t.attr.name)));
        }
    }
    Ok(())
}

/// Values of an `attr eq "literal"` filter (joined by `and`), to build the element Entra expects
/// an `add` on a value-filtered path to create when none matches.
fn filter_equalities(f: &Filter, out: &mut Map<String, Value>) -> bool {
    match f {
        Filter::Compare { path, op: CompareOp::Eq, value } if path.uri.is_none() && path.sub_attr.is_none() => {
            out.insert(path.attr.clone(), value.clone());
            true
        }
        Filter::And(a, b) => filter_equalities(a, out) && filter_equalities(b, out),
        _ => false,
    }
}

/// Applies an operation at an explicit path (attribute, sub-attribute, value filter).
fn apply_at_path(
    doc: &mut Map<String, Value>,
    t: &Target<'_>,
    op: &PatchOperation,
    path: &PatchPath,
    text: &str,
    idx: &mut ValueIndexes,
) -> Result<(), ScimError> {
    let value = op.value.clone().unwrap_or(Value::Null);
    let attr = t.attr;
    // Sub-attribute named with a dot and no filter: `name.givenName`.
    let sub_def =
        match (&path.sub_attr, t.sub) {
            (Some(s), _) => Some(attr.sub(s).ok_or_else(|| {
                ScimError::invalid_path(format!("'{text}': '{}' has no sub-attribute '{s}'", attr.name))
            })?),
            (None, Some(s)) => Some(s),
            (None, None) => None,
        };
    if sub_def.is_some_and(|s| s.mutability == Mutability::ReadOnly) {
        return Err(ScimError::mutability(format!("'{text}' is read-only")));
    }
    match &path.filter {
        None => match sub_def {
            None => {
                if op.op == Op::Remove
                    && attr.multi_valued
                    && let Some(v) = op.value.as_ref().filter(|v| !v.is_null())
                {
                    // Remove the listed values only.
                    let listed: HashSet<String> =
                        coerce_value(attr, v)?.map(as_vec).unwrap_or_default().iter().map(canonical_text).collect();
                    let map = container(doc, t);
                    match map.get_mut(attr.name) {
                        Some(Value::Array(items)) => {
                            let index = idx.take(t, items);
                            if listed.iter().any(|c| index.contains(c)) {
                                let mut keep = index.canon.iter().map(|c| !listed.contains(c));
                                items.retain(|_| keep.next().unwrap_or(true));
                                idx.keep(t, index.without(&listed, items));
                            } else {
                                idx.keep(t, index);
                            }
                            if items.is_empty() {
                                map.remove(attr.name);
                                idx.forget(t);
                            }
                        }
                        _ => idx.forget(t),
                    }
                    return Ok(());
                }
                set_whole(doc, t, op.op, &value, text, idx)
            }
            Some(sub) => {
                let coerced = if op.op == Op::Remove { None } else { coerce_value(sub, &value)? };
                idx.forget(t);
                let map = container(doc, t);
                match map.get_mut(attr.name) {
                    Some(Value::Array(items)) if attr.multi_valued => {
                        for item in items.iter_mut() {
                            set_sub(item, sub, coerced.clone());
                        }
                        items.retain(|i| i.as_object().is_some_and(|o| !o.is_empty()));
                        if items.is_empty() {
                            map.remove(attr.name);
                        }
                    }
                    Some(item @ Value::Object(_)) => {
                        set_sub(item, sub, coerced);
                        if item.as_object().is_some_and(|o| o.is_empty()) {
                            map.remove(attr.name);
                        }
                    }
                    _ if attr.multi_valued => {
                        if op.op == Op::Replace && coerced.is_some() {
                            return Err(ScimError::no_target(format!("'{text}': '{}' has no values", attr.name)));
                        }
                    }
                    _ => {
                        if let Some(v) = coerced {
                            let mut o = Map::new();
                            o.insert(sub.name.to_string(), v);
                            map.insert(attr.name.to_string(), Value::Object(o));
                        }
                    }
                }
                if sub.name == "primary" {
                    ensure_single_primary(container(doc, t), t)?;
                }
                Ok(())
            }
        },
        Some(filter) => {
            if !attr.multi_valued || attr.attr_type != AttrType::Complex {
                return Err(ScimError::invalid_path(format!(
                    "'{text}': value filters apply to multi-valued complex attributes"
                )));
            }
            idx.forget(t);
            let map = container(doc, t);
            let mut items = match map.remove(attr.name) {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            };
            let hits: Vec<usize> =
                items.iter().enumerate().filter(|(_, e)| element_matches(filter, attr, e)).map(|(i, _)| i).collect();
            // Membership of an index in `hits` in constant time (no scan per element).
            let hit: std::collections::HashSet<usize> = hits.iter().copied().collect();
            match (op.op, sub_def) {
                (Op::Remove, None) => {
                    let mut i = 0;
                    items.retain(|_| {
                        let keep = !hit.contains(&i);
                        i += 1;
                        keep
                    });
                }
                (Op::Remove, Some(sub)) => {
                    for &i in &hits {
                        set_sub(&mut items[i], sub, None);
                    }
                    items.retain(|i| i.as_object().is_some_and(|o| !o.is_empty()));
                }
                (_, sub) => {
                    // The new content for each matching element.
                    let patch: Map<String, Value> = match sub {
                        Some(s) => {
                            let mut m = Map::new();
                            if let Some(v) = coerce_value(s, &value)? {
                                m.insert(s.name.to_string(), v);
                            }
                            m
                        }
                        None => match coerce_value(&AttributeDef { multi_valued: false, ..attr.clone() }, &value)? {
                            Some(Value::Object(m)) => m,
                            _ => Map::new(),
                        },
                    };
                    if hits.is_empty() {
                        let mut seed = Map::new();
                        if op.op == Op::Add && filter_equalities(filter, &mut seed) {
                            // Entra: add emails[type eq "work"].value creates the work e-mail.
                            let mut elem = Map::new();
                            for (k, v) in seed {
                                if let Some(d) = attr.sub(&k) {
                                    elem.insert(d.name.to_string(), v);
                                }
                            }
                            elem.extend(patch.clone());
                            items.push(Value::Object(elem));
                        } else {
                            container(doc, t).insert(attr.name.to_string(), Value::Array(items));
                            return Err(ScimError::no_target(format!("'{text}' matches no value")));
                        }
                    }
                    let sets_primary = patch.get("primary").and_then(Value::as_bool) == Some(true);
                    if sets_primary {
                        for (i, item) in items.iter_mut().enumerate() {
                            if !hit.contains(&i)
                                && let Value::Object(o) = item
                            {
                                o.remove("primary");
                            }
                        }
                    }
                    for &i in &hits {
                        if let Value::Object(o) = &mut items[i] {
                            for (k, v) in &patch {
                                o.insert(k.clone(), v.clone());
                            }
                        }
                    }
                }
            }
            let map = container(doc, t);
            if !items.is_empty() {
                map.insert(attr.name.to_string(), Value::Array(items));
            }
            ensure_single_primary(map, t)
        }
    }
}

fn set_sub(item: &mut Value, sub: &AttributeDef, value: Option<Value>) {
    if let Value::Object(o) = item {
        match value {
            Some(v) => {
                o.insert(sub.name.to_string(), v);
            }
            None => {
                o.remove(sub.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::ScimType;
    use crate::scim::schema::{group_resource_type, user_resource_type};
    use proptest::prelude::*;
    use serde_json::json;

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn req(ops: Value) -> PatchRequest {
        parse_patch_request(&json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops})).expect("request")
    }

    fn doc(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    fn run(d: Value, ops: Value) -> Result<(Map<String, Value>, PatchOutcome), ScimError> {
        let mut d = doc(d);
        let out = apply_patch(&user_resource_type(), &mut d, &req(ops), &[])?;
        Ok((d, out))
    }

    #[test]
    fn request_validation() {
        let bad = |body: Value| parse_patch_request(&body).unwrap_err().scim_type;
        assert_eq!(bad(json!({"Operations": [{"op": "add", "value": {}}]})), Some(ScimType::InvalidSyntax));
        assert_eq!(bad(json!({"schemas": [PATCH_OP_SCHEMA], "Operations": []})), Some(ScimType::InvalidSyntax));
        assert_eq!(
            bad(json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{"op": "move"}]})),
            Some(ScimType::InvalidSyntax)
        );
        assert_eq!(
            bad(json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{"op": "remove"}]})),
            Some(ScimType::NoTarget)
        );
        assert_eq!(
            bad(json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{"op": "add", "path": "x[", "value": 1}]})),
            Some(ScimType::InvalidPath)
        );
        let ok = parse_patch_request(
            &json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}),
        );
        assert_eq!(ok.unwrap().operations[0].op, Op::Replace);
    }

    #[test]
    fn rfc_examples_and_identity_provider_habits() {
        // Path-less replace with Entra's string boolean and a dotted key.
        let (d, out) = run(
            json!({"userName": "u", "active": true}),
            json!([{"op": "Replace", "value": {"active": "False", "name.givenName": "G"}}]),
        )
        .unwrap();
        assert!(out.changed);
        assert_eq!(d["active"], false);
        assert_eq!(d["name"]["givenName"], "G");
        // Read-only attributes in a value are ignored; a read-only path is refused.
        let (d, _) = run(
            json!({"userName": "u"}),
            json!([{"op": "replace", "value": {"id": "x", "meta": {}, "displayName": "D"}}]),
        )
        .unwrap();
        assert!(!d.contains_key("id"));
        assert_eq!(d["displayName"], "D");
        assert_eq!(
            run(json!({"userName": "u"}), json!([{"op": "replace", "path": "groups", "value": []}]))
                .unwrap_err()
                .scim_type,
            Some(ScimType::Mutability)
        );
        // Unknown path.
        assert_eq!(
            run(json!({"userName": "u"}), json!([{"op": "add", "path": "nope", "value": 1}])).unwrap_err().scim_type,
            Some(ScimType::InvalidPath)
        );
    }

    #[test]
    fn multi_valued_semantics() {
        let base = json!({"userName": "u", "emails": [{"value": "a@x", "type": "work", "primary": true}]});
        // Adding an existing value changes nothing.
        let (_, out) = run(
            base.clone(),
            json!([{"op": "add", "path": "emails", "value": [{"value": "a@x", "type": "work", "primary": true}]}]),
        )
        .unwrap();
        assert!(!out.changed);
        // A new primary clears the others.
        let (d, _) = run(
            base.clone(),
            json!([{"op": "add", "path": "emails", "value": [{"value": "b@x", "type": "home", "primary": true}]}]),
        )
        .unwrap();
        let prim: Vec<&Value> = d["emails"].as_array().unwrap().iter().filter(|e| e["primary"] == true).collect();
        assert_eq!(prim.len(), 1);
        assert_eq!(prim[0]["value"], "b@x");
        // Filtered sub-attribute replace.
        let (d, _) =
            run(base.clone(), json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "c@x"}]))
                .unwrap();
        assert_eq!(d["emails"][0]["value"], "c@x");
        // Replace with no match: noTarget; the document is untouched.
        let mut d0 = doc(base.clone());
        let e = apply_patch(
            &user_resource_type(),
            &mut d0,
            &req(json!([{"op": "replace", "path": "emails[type eq \"home\"].value", "value": "h"}])),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::NoTarget));
        assert_eq!(Value::Object(d0), base);
        // Entra: add on a filtered path with no match creates the value.
        let (d, _) =
            run(base.clone(), json!([{"op": "Add", "path": "emails[type eq \"home\"].value", "value": "h@x"}]))
                .unwrap();
        assert_eq!(d["emails"][1], json!({"type": "home", "value": "h@x"}));
        // Remove with a filter matching nothing: no change, no error.
        let (_, out) = run(base.clone(), json!([{"op": "remove", "path": "emails[type eq \"other\"]"}])).unwrap();
        assert!(!out.changed);
        // Removing the last value removes the attribute.
        let (d, _) = run(base, json!([{"op": "remove", "path": "emails[type eq \"work\"]"}])).unwrap();
        assert!(!d.contains_key("emails"));
    }

    #[test]
    fn extension_paths_and_blocks() {
        let (d, _) = run(
            json!({"userName": "u"}),
            json!([
                {"op": "add", "path": format!("{ENT}:employeeNumber"), "value": "7"},
                {"op": "add", "value": {ENT: {"department": "Ops"}}},
                {"op": "replace", "path": format!("{ENT}:manager"), "value": {"value": "boss"}}
            ]),
        )
        .unwrap();
        assert_eq!(d[ENT], json!({"employeeNumber": "7", "department": "Ops", "manager": {"value": "boss"}}));
        let (d, _) = run(Value::Object(d), json!([{"op": "remove", "path": format!("{ENT}:employeeNumber")}, {"op": "remove", "path": format!("{ENT}:department")}, {"op": "remove", "path": format!("{ENT}:manager")}])).unwrap();
        assert!(!d.contains_key(ENT), "an emptied extension disappears: {d:?}");
    }

    #[test]
    fn group_members_are_returned_as_external_operations() {
        let rt = group_resource_type();
        let mut d = doc(json!({"displayName": "g"}));
        let out = apply_patch(
            &rt,
            &mut d,
            &req(json!([
                {"op": "add", "path": "members", "value": [{"value": "u1"}]},
                {"op": "Remove", "path": "members", "value": [{"value": "u2"}]},
                {"op": "remove", "path": "members[value eq \"u3\"]"},
                {"op": "replace", "value": {"displayName": "h", "members": [{"value": "u4"}]}}
            ])),
            &["members"],
        )
        .unwrap();
        assert_eq!(d["displayName"], "h");
        assert!(!d.contains_key("members"));
        let ops: Vec<&MultiValueOp> = out.external.iter().map(|e| &e.op).collect();
        assert!(matches!(ops[0], MultiValueOp::Add(v) if v[0]["value"] == "u1"));
        assert!(matches!(ops[1], MultiValueOp::RemoveValues(v) if v[0]["value"] == "u2"));
        assert!(matches!(ops[2], MultiValueOp::Remove(Some(_))));
        assert!(matches!(ops[3], MultiValueOp::Replace(v) if v[0]["value"] == "u4"));
    }

    fn op_strategy() -> impl Strategy<Value = Value> {
        let path = prop::sample::select(vec![
            "",
            "userName",
            "displayName",
            "emails",
            "emails[type eq \"work\"]",
            "emails[type eq \"work\"].value",
            "name.givenName",
            "active",
            "id",
            "groups",
            "emails[",
            "nope",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
        ]);
        let value = prop_oneof![
            Just(json!("x")),
            Just(json!(true)),
            Just(json!("False")),
            Just(json!(null)),
            Just(json!(3)),
            Just(json!([{"value": "v@x", "type": "work", "primary": true}])),
            Just(json!({"value": "m"})),
            Just(json!({"displayName": "d", "emails": [{"value": "e"}]})),
            Just(json!([1, 2])),
        ];
        (prop::sample::select(vec!["add", "remove", "replace", "Replace"]), path, value).prop_map(
            |(op, path, value)| {
                if path.is_empty() {
                    json!({"op": op, "value": value})
                } else {
                    json!({"op": op, "path": path, "value": value})
                }
            },
        )
    }

    /// The semantics of `add` and of `remove` with listed values on a multi-valued attribute as
    /// they were defined before the index: every value compared with every other (`Value`
    /// equality), one operation at a time.
    fn reference(start: &Map<String, Value>, ops: &[Value]) -> Result<Map<String, Value>, ()> {
        let rt = user_resource_type();
        let emails = rt.schema.attr("emails").expect("emails").clone();
        let mut d = start.clone();
        for op in ops {
            let name = op["op"].as_str().unwrap_or("");
            let path = op.get("path").and_then(Value::as_str);
            let listed = match (name, path) {
                ("add", Some("emails")) | ("remove", Some("emails")) => Some(op["value"].clone()),
                ("add", None) => Some(op["value"]["emails"].clone()),
                _ => None,
            };
            let Some(value) = listed else {
                // Other operations run on the engine itself, one per call.
                apply_patch(&rt, &mut d, &req(json!([op])), &[]).map_err(|_| ())?;
                continue;
            };
            let values = match coerce_value(&emails, &value).map_err(|_| ())? {
                Some(Value::Array(a)) => a,
                _ => continue,
            };
            let mut items = match d.remove("emails") {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            };
            if name == "add" {
                let mut seen: Vec<Value> = items.clone();
                for new in values {
                    if !seen.contains(&new) {
                        seen.push(new.clone());
                        if new.get("primary").and_then(Value::as_bool) == Some(true) {
                            for item in items.iter_mut() {
                                if let Value::Object(o) = item {
                                    o.remove("primary");
                                }
                            }
                        }
                        items.push(new);
                    }
                }
            } else {
                items.retain(|x| !values.contains(x));
            }
            if items.iter().filter(|v| v.get("primary").and_then(Value::as_bool) == Some(true)).count() > 1 {
                return Err(());
            }
            if !items.is_empty() || name == "add" {
                d.insert("emails".into(), Value::Array(items));
            }
        }
        Ok(d)
    }

    fn email_strategy() -> impl Strategy<Value = Value> {
        (
            prop::sample::select(vec!["a@x", "b@x", "c@x", "A@x"]),
            prop::sample::select(vec![None, Some("work"), Some("home")]),
            prop::sample::select(vec![None, Some(true), Some(false)]),
        )
            .prop_map(|(v, t, p)| {
                let mut m = Map::new();
                m.insert("value".into(), json!(v));
                if let Some(t) = t {
                    m.insert("type".into(), json!(t));
                }
                if let Some(p) = p {
                    m.insert("primary".into(), json!(p));
                }
                Value::Object(m)
            })
    }

    fn multi_valued_op_strategy() -> impl Strategy<Value = Value> {
        let values = || prop::collection::vec(email_strategy(), 0..4);
        prop_oneof![
            4 => values().prop_map(|v| json!({"op": "add", "path": "emails", "value": v})),
            2 => values().prop_map(|v| json!({"op": "add", "value": {"emails": v}})),
            3 => values().prop_map(|v| json!({"op": "remove", "path": "emails", "value": v})),
            1 => Just(json!({"op": "replace", "path": "emails[value eq \"a@x\"].primary", "value": true})),
            1 => Just(json!({"op": "remove", "path": "emails[type eq \"home\"]"})),
            1 => Just(json!({"op": "add", "path": "emails.type", "value": "other"})),
            1 => Just(json!({"op": "replace", "path": "displayName", "value": "d"})),
        ]
    }

    #[test]
    fn the_index_keeps_the_semantics_of_comparing_every_value() {
        // A new primary value takes `primary` from the others; their changed texts count for
        // duplicates from the next operation on, not within the one that changed them.
        let start = doc(json!({"userName": "u", "emails": [{"value": "a@x", "primary": true}]}));
        let ops = vec![
            json!({"op": "add", "path": "emails", "value": [{"value": "b@x", "primary": true}, {"value": "a@x"}]}),
            json!({"op": "add", "path": "emails", "value": [{"value": "a@x"}, {"value": "c@x", "primary": false}]}),
            json!({"op": "remove", "path": "emails", "value": [{"value": "b@x", "primary": true}]}),
        ];
        let mut d = start.clone();
        apply_patch(&user_resource_type(), &mut d, &req(Value::Array(ops.clone())), &[]).unwrap();
        assert_eq!(Ok(d.clone()), reference(&start, &ops));
        assert_eq!(
            Value::Object(d)["emails"],
            json!([{"value": "a@x"}, {"value": "a@x"}, {"value": "c@x", "primary": false}])
        );
    }

    proptest! {
        #[test]
        fn multi_valued_steps_match_the_pairwise_reference(
            start in prop::collection::vec(email_strategy(), 0..5),
            ops in prop::collection::vec(multi_valued_op_strategy(), 1..8),
        ) {
            // Stored documents hold at most one primary value.
            let mut seen_primary = false;
            let start: Vec<Value> = start.into_iter().filter(|e| {
                let p = e.get("primary").and_then(Value::as_bool) == Some(true);
                let keep = !(p && seen_primary);
                seen_primary |= p;
                keep
            }).collect();
            let mut original = doc(json!({"userName": "u"}));
            if !start.is_empty() {
                original.insert("emails".into(), Value::Array(start));
            }
            let mut d = original.clone();
            let got = apply_patch(&user_resource_type(), &mut d, &req(Value::Array(ops.clone())), &[]).map(|_| d).map_err(|_| ());
            prop_assert_eq!(got, reference(&original, &ops));
        }

        #[test]
        fn errors_leave_the_document_untouched(ops in prop::collection::vec(op_strategy(), 1..5)) {
            let body = json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops});
            let original = doc(json!({"userName": "u", "emails": [{"value": "a@x", "type": "work"}]}));
            if let Ok(r) = parse_patch_request(&body) {
                let mut d = original.clone();
                match apply_patch(&user_resource_type(), &mut d, &r, &[]) {
                    Ok(out) => prop_assert_eq!(out.changed, d != original),
                    Err(e) => {
                        prop_assert_eq!(&d, &original);
                        prop_assert_eq!(e.status, 400);
                    }
                }
            }
        }
    }
}
