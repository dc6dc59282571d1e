//! In-memory evaluation of filters, with the semantics the SQL translation of the store also
//! follows (the store's tests compare the two):
//!
//! - strings compare without regard to case unless the attribute is `caseExact`, folded by
//!   [`crate::scim::fold::fold`] (Unicode caseless matching) and then by code point;
//! - `gt`/`ge`/`lt`/`le` compare strings lexicographically, numbers numerically and
//!   dateTimes as instants; booleans take only `eq` and `ne`;
//! - a multi-valued attribute matches when any of its values does, and a complex multi-valued
//!   attribute compared directly (`emails co "x"`, `members eq "id"`) compares its `value`;
//! - `ne x` is `not (eq x)`: it matches resources without the attribute;
//! - `pr` is false for null, "", [] and {};
//! - an attribute the schema does not know matches nothing.

use chrono::{DateTime, Utc};
use serde_json::Value;
use std::cmp::Ordering;

use super::ast::{AttrPath, CompareOp, Filter};
use crate::scim::fold::fold;
use crate::scim::schema::{AttrType, AttributeDef, ResourceType};

/// Whether `resource` (a full JSON representation of type `rt`) matches `filter`.
pub fn matches(filter: &Filter, rt: &ResourceType, resource: &Value) -> bool {
    eval(filter, rt, resource)
}

/// Whether one element of the multi-valued attribute `parent` matches a value filter (whose
/// paths name sub-attributes), as in PATCH paths like `emails[type eq "work"]`.
pub fn element_matches(filter: &Filter, parent: &AttributeDef, element: &Value) -> bool {
    eval_elem(filter, parent, element)
}

fn eval(f: &Filter, rt: &ResourceType, res: &Value) -> bool {
    match f {
        Filter::And(a, b) => eval(a, rt, res) && eval(b, rt, res),
        Filter::Or(a, b) => eval(a, rt, res) || eval(b, rt, res),
        Filter::Not(inner) => !eval(inner, rt, res),
        Filter::Compare { path, op: CompareOp::Ne, value } => {
            !eval(&Filter::Compare { path: path.clone(), op: CompareOp::Eq, value: value.clone() }, rt, res)
        }
        // `attr eq null`: the attribute has no value.
        Filter::Compare { path, op: CompareOp::Eq, value: Value::Null } => {
            rt.resolve(path).is_some() && leaf_values(rt, path, res).is_empty()
        }
        Filter::Compare { path, op, value } => {
            leaf_values(rt, path, res).iter().any(|(def, v)| compare(def, v, *op, value))
        }
        Filter::Present(path) => leaf_values(rt, path, res).iter().any(|(_, v)| present(v)),
        Filter::ValuePath { path, filter } => {
            let Some(r) = rt.resolve(path) else { return false };
            if r.sub.is_some() {
                return false;
            }
            match attribute(res, &r) {
                Some(Value::Array(items)) => items.iter().any(|e| eval_elem(filter, r.attr, e)),
                Some(single @ Value::Object(_)) => eval_elem(filter, r.attr, single),
                _ => false,
            }
        }
    }
}

fn eval_elem(f: &Filter, parent: &AttributeDef, elem: &Value) -> bool {
    match f {
        Filter::And(a, b) => eval_elem(a, parent, elem) && eval_elem(b, parent, elem),
        Filter::Or(a, b) => eval_elem(a, parent, elem) || eval_elem(b, parent, elem),
        Filter::Not(inner) => !eval_elem(inner, parent, elem),
        Filter::Compare { path, op: CompareOp::Ne, value } => {
            !eval_elem(&Filter::Compare { path: path.clone(), op: CompareOp::Eq, value: value.clone() }, parent, elem)
        }
        Filter::Compare { path, op, value } => match elem_value(parent, path, elem) {
            Some((def, Some(v))) => compare(def, v, *op, value),
            Some((_, None)) => value.is_null() && *op == CompareOp::Eq,
            None => false,
        },
        Filter::Present(path) => matches!(elem_value(parent, path, elem), Some((_, Some(v))) if present(v)),
        Filter::ValuePath { .. } => false,
    }
}

/// The sub-attribute of an element named by a path inside a value filter.
fn elem_value<'a, 'd>(
    parent: &'d AttributeDef,
    path: &AttrPath,
    elem: &'a Value,
) -> Option<(&'d AttributeDef, Option<&'a Value>)> {
    if path.uri.is_some() || path.sub_attr.is_some() {
        return None;
    }
    let def = parent.sub(&path.attr)?;
    let v = elem.as_object().and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(def.name)).map(|(_, v)| v));
    Some((def, v.filter(|v| !v.is_null())))
}

/// The JSON value of the top-level attribute a resolved path starts at.
fn attribute<'a>(res: &'a Value, r: &crate::scim::schema::Resolved<'_>) -> Option<&'a Value> {
    let obj = res.as_object()?;
    let container = if r.extension {
        obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(r.schema.id)).map(|(_, v)| v)?.as_object()?
    } else {
        obj
    };
    container.iter().find(|(k, _)| k.eq_ignore_ascii_case(r.attr.name)).map(|(_, v)| v).filter(|v| !v.is_null())
}

fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v).filter(|v| !v.is_null())
}

/// Every scalar value a path designates, with the definition that governs its comparison.
fn leaf_values<'a, 'd>(rt: &'d ResourceType, path: &AttrPath, res: &'a Value) -> Vec<(&'d AttributeDef, &'a Value)> {
    let Some(r) = rt.resolve(path) else { return Vec::new() };
    let Some(v) = attribute(res, &r) else { return Vec::new() };
    let mut out = Vec::new();
    let mut push = |def: &'d AttributeDef, v: &'a Value| match v {
        Value::Array(items) => out.extend(items.iter().filter(|x| !x.is_null()).map(|x| (def, x))),
        Value::Null => {}
        other => out.push((def, other)),
    };
    match (r.sub, r.attr.multi_valued, r.attr.attr_type) {
        (Some(sub), true, _) => {
            if let Value::Array(items) = v {
                for e in items {
                    if let Some(x) = get_ci(e, sub.name) {
                        push(sub, x);
                    }
                }
            }
        }
        (Some(sub), false, _) => {
            if let Some(x) = get_ci(v, sub.name) {
                push(sub, x);
            }
        }
        (None, true, AttrType::Complex) => {
            if let (Value::Array(items), Some(value_def)) = (v, r.attr.sub("value")) {
                for e in items {
                    if let Some(x) = get_ci(e, "value") {
                        push(value_def, x);
                    }
                }
            } else if let Value::Array(items) = v {
                // Presence of a complex multi-valued attribute without a `value` sub-attribute.
                out.extend(items.iter().map(|x| (r.attr, x)));
            }
        }
        (None, _, _) => push(r.attr, v),
    }
    out
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str().and_then(crate::clock::parse_time)
}

fn ordered(ord: Ordering, op: CompareOp) -> bool {
    match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Ne => ord != Ordering::Equal,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

/// Compares an actual value with a filter literal under the attribute's rules.
fn compare(def: &AttributeDef, actual: &Value, op: CompareOp, expected: &Value) -> bool {
    if expected.is_null() || actual.is_null() {
        return false;
    }
    match def.attr_type {
        AttrType::Boolean => match (as_bool(actual), as_bool(expected)) {
            (Some(a), Some(e)) => match op {
                CompareOp::Eq => a == e,
                CompareOp::Ne => a != e,
                _ => false,
            },
            _ => false,
        },
        AttrType::Integer | AttrType::Decimal => match (actual.as_f64(), expected.as_f64()) {
            (Some(a), Some(e)) => a.partial_cmp(&e).is_some_and(|o| ordered(o, op)),
            _ => false,
        },
        AttrType::DateTime => match (time(actual), time(expected)) {
            (Some(a), Some(e)) => ordered(a.cmp(&e), op),
            _ => false,
        },
        AttrType::Complex => false,
        AttrType::String | AttrType::Reference | AttrType::Binary => {
            let (Some(a), Some(e)) = (scalar_text(actual), scalar_text(expected)) else { return false };
            let (a, e) = if crate::scim::fold::folds(def) { (fold(&a), fold(&e)) } else { (a, e) };
            match op {
                CompareOp::Co => a.contains(&e),
                CompareOp::Sw => a.starts_with(&e),
                CompareOp::Ew => a.ends_with(&e),
                other => ordered(a.as_str().cmp(e.as_str()), other),
            }
        }
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
