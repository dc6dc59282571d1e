//! Translation of SCIM filters into parameterised SQL over the users and teams tables.
//!
//! Indexed columns serve the attributes identity providers filter on (`userName`, `externalId`,
//! `id`, `displayName` of groups, `members`); everything else is read from the JSON document.
//! The semantics match the in-memory evaluator `crate::scim::filter::eval` (the store's tests
//! compare the two): strings compare case-insensitively unless the attribute is `caseExact`, a
//! multi-valued attribute matches when any value does, a complex multi-valued attribute compared
//! directly compares its `value`, `ne` and `not` match resources without the attribute, and an
//! attribute the schema does not know matches nothing.
//!
//! Text that compares without regard to case is never folded in SQL (SQLite's `lower()` is
//! ASCII-only, PostgreSQL's follows the locale): every such value is read from a copy folded by
//! [`crate::scim::fold`] when it was written (`data_folded`, `user_name_key`, `name_key`), the
//! literal is folded the same way, and text order is by code point on both stores.

use serde_json::Value;

use super::{Dialect, StoreError, StoreResult};
use crate::scim::filter::{AttrPath, CompareOp, Filter};
use crate::scim::fold::{fold, folds};
use crate::scim::schema::{AttrType, AttributeDef, ResourceType};

/// Which table a filter runs against (and the alias the generated SQL uses for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceTable {
    /// `users u`.
    Users,
    /// `teams t` (managed teams only: SCIM Groups).
    Groups,
}

impl ResourceTable {
    fn alias(self) -> &'static str {
        match self {
            ResourceTable::Users => "u",
            ResourceTable::Groups => "t",
        }
    }
}

/// A bind parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Text(String),
    Int(i64),
    Float(f64),
    Null,
}

impl SqlValue {
    /// Text, or NULL for `None`.
    pub fn opt(v: &Option<String>) -> Self {
        v.as_ref().map_or(SqlValue::Null, |s| SqlValue::Text(s.clone()))
    }
}

/// A translated condition with its parameters, numbered from the `first_param` given.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlCondition {
    pub sql: String,
    pub params: Vec<SqlValue>,
}

/// Translates `filter` into a SQL condition.
pub fn translate(
    filter: &Filter,
    rt: &ResourceType,
    table: ResourceTable,
    dialect: Dialect,
    first_param: usize,
) -> StoreResult<SqlCondition> {
    let mut t = Translator { rt, table, dialect, first_param, params: Vec::new(), aliases: 0 };
    let sql = t.cond(filter, &Ctx::Root)?;
    Ok(SqlCondition { sql, params: t.params })
}

/// The SQL expression to order by for `sortBy`.
pub fn sort_expression(
    path: &AttrPath,
    rt: &ResourceType,
    table: ResourceTable,
    dialect: Dialect,
) -> StoreResult<String> {
    let Some(resolved) = rt.resolve(path) else {
        return Err(StoreError::InvalidFilter(format!("sortBy names an unknown attribute '{}'", display_path(path))));
    };
    let leaf = resolved.target();
    let text = |expr: String| if is_text(leaf) { dialect.by_code_point(&expr) } else { expr };
    if let Some(expr) = column_for(table, resolved.attr.name, resolved.sub.map(|s| s.name), resolved.extension) {
        return Ok(text(expr));
    }
    let a = table.alias();
    let mut keys: Vec<&str> = Vec::new();
    if resolved.extension {
        keys.push(resolved.schema.id);
    }
    keys.push(resolved.attr.name);
    if let Some(sub) = resolved.sub {
        if resolved.attr.multi_valued {
            // Sorting by a multi-valued attribute uses its first value.
            let each = dialect.json_each(&format!("{a}.data_folded"), &keys, "s");
            let elem = dialect.json_elem_text("s", Some(sub.name));
            return Ok(text(format!("(SELECT {elem} FROM {each} LIMIT 1)")));
        }
        keys.push(sub.name);
    }
    Ok(text(dialect.json_text(&format!("{a}.data_folded"), &keys)))
}

/// Whether values of `def` order as text.
fn is_text(def: &AttributeDef) -> bool {
    matches!(def.attr_type, AttrType::String | AttrType::Reference | AttrType::Binary | AttrType::DateTime)
}

/// Columns that mirror attributes. Text that compares without regard to case is mirrored folded
/// (`user_name_key`, `name_key`); the others hold case-exact values or non-text.
fn column_for(table: ResourceTable, attr: &str, sub: Option<&str>, extension: bool) -> Option<String> {
    if extension {
        return None;
    }
    let a = table.alias();
    let col = match (table, attr, sub) {
        (ResourceTable::Users, "id", None) => "id",
        (ResourceTable::Users, "userName", None) => "user_name_key",
        (ResourceTable::Users, "externalId", None) => "external_id",
        (ResourceTable::Users, "active", None) => "active",
        (ResourceTable::Groups, "id", None) => "scim_id",
        (ResourceTable::Groups, "displayName", None) => "name_key",
        (ResourceTable::Groups, "externalId", None) => "external_id",
        (_, "meta", Some("created")) => "created",
        (_, "meta", Some("lastModified")) => "last_modified",
        _ => return None,
    };
    Some(format!("{a}.{col}"))
}

fn display_path(p: &AttrPath) -> String {
    let mut s = String::new();
    if let Some(u) = &p.uri {
        s.push_str(u);
        s.push(':');
    }
    s.push_str(&p.attr);
    if let Some(sub) = &p.sub_attr {
        s.push('.');
        s.push_str(sub);
    }
    s
}

/// Where the paths of a (sub-)filter are evaluated.
enum Ctx<'a> {
    /// Against the resource row.
    Root,
    /// Against one element of a multi-valued attribute (inside a value filter).
    Elem { alias: String, parent: &'a AttributeDef, kind: ElemKind },
}

#[derive(Clone, Copy)]
enum ElemKind {
    /// An element of a JSON array in the document.
    Json,
    /// A row of team_members: a member of a group (`members`).
    GroupMember,
    /// A team the user belongs to (`groups`).
    UserGroup,
}

/// How one scalar compares: its SQL expression (holding folded text where the attribute
/// [`folds`]) and the nature of that expression.
struct Scalar<'d> {
    expr: String,
    def: &'d AttributeDef,
    /// A JSON value read with the dialect's JSON functions (booleans and numbers differ by dialect).
    json: bool,
}

struct Translator<'r> {
    rt: &'r ResourceType,
    table: ResourceTable,
    dialect: Dialect,
    first_param: usize,
    params: Vec<SqlValue>,
    aliases: usize,
}

impl<'r> Translator<'r> {
    fn param(&mut self, v: SqlValue) -> String {
        self.params.push(v);
        format!("${}", self.first_param + self.params.len() - 1)
    }

    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("e{}", self.aliases)
    }

    fn cond(&mut self, f: &Filter, ctx: &Ctx<'_>) -> StoreResult<String> {
        match f {
            Filter::And(a, b) => Ok(format!("({} AND {})", self.cond(a, ctx)?, self.cond(b, ctx)?)),
            Filter::Or(a, b) => Ok(format!("({} OR {})", self.cond(a, ctx)?, self.cond(b, ctx)?)),
            Filter::Not(inner) => {
                let c = self.cond(inner, ctx)?;
                Ok(self.dialect.not(&c))
            }
            Filter::Compare { path, op: CompareOp::Ne, value } => {
                let eq = self.leaf(path, ctx, &Leaf::Compare(CompareOp::Eq, value))?;
                Ok(self.dialect.not(&eq))
            }
            Filter::Compare { path, op, value } => self.leaf(path, ctx, &Leaf::Compare(*op, value)),
            Filter::Present(path) => self.leaf(path, ctx, &Leaf::Present),
            Filter::ValuePath { path, filter } => self.value_path(path, filter, ctx),
        }
    }

    fn value_path(&mut self, path: &AttrPath, inner: &Filter, ctx: &Ctx<'_>) -> StoreResult<String> {
        if !matches!(ctx, Ctx::Root) {
            return Err(StoreError::InvalidFilter("value filters cannot be nested".into()));
        }
        let rt = self.rt;
        let Some(resolved) = rt.resolve(path) else { return Ok(self.dialect.false_cond().into()) };
        if !resolved.attr.multi_valued || resolved.attr.attr_type != AttrType::Complex || resolved.sub.is_some() {
            return Err(StoreError::InvalidFilter(format!(
                "'{}' is not a multi-valued complex attribute and cannot take a value filter",
                display_path(path)
            )));
        }
        let alias = self.alias();
        let (from, kind) =
            self.elements_source(resolved.attr.name, resolved.extension.then_some(resolved.schema.id), &alias);
        let c = self.cond(inner, &Ctx::Elem { alias: alias.clone(), parent: resolved.attr, kind })?;
        Ok(format!("EXISTS (SELECT 1 FROM {from} AND {c})"))
    }

    /// FROM clause enumerating the values of a multi-valued attribute of the row.
    fn elements_source(&self, attr: &str, urn: Option<&str>, alias: &str) -> (String, ElemKind) {
        let a = self.table.alias();
        match (self.table, attr, urn) {
            (ResourceTable::Groups, "members", None) => {
                (format!("team_members {alias} WHERE {alias}.team_id = {a}.id AND 1 = 1"), ElemKind::GroupMember)
            }
            (ResourceTable::Users, "groups", None) => (
                format!(
                    "team_members {alias}m JOIN teams {alias} ON {alias}.id = {alias}m.team_id WHERE {alias}m.user_id = {a}.id AND {alias}.scim_id IS NOT NULL"
                ),
                ElemKind::UserGroup,
            ),
            _ => {
                let mut keys = Vec::new();
                if let Some(u) = urn {
                    keys.push(u);
                }
                keys.push(attr);
                (
                    format!("{} WHERE 1 = 1", self.dialect.json_each(&format!("{a}.data_folded"), &keys, alias)),
                    ElemKind::Json,
                )
            }
        }
    }

    /// A comparison or presence test on one attribute path.
    fn leaf(&mut self, path: &AttrPath, ctx: &Ctx<'_>, test: &Leaf<'_>) -> StoreResult<String> {
        match ctx {
            Ctx::Elem { alias, parent, kind } => {
                if path.sub_attr.is_some() || path.uri.is_some() {
                    return Err(StoreError::InvalidFilter(format!(
                        "'{}' inside a value filter must name a sub-attribute of '{}'",
                        display_path(path),
                        parent.name
                    )));
                }
                let Some(sub) = parent.sub(&path.attr) else { return Ok(self.dialect.false_cond().into()) };
                let scalar = self.element_scalar(alias, *kind, sub);
                match scalar {
                    Some(s) => self.test(&s, test),
                    None => Ok(self.dialect.false_cond().into()),
                }
            }
            Ctx::Root => {
                let rt = self.rt;
                let Some(resolved) = rt.resolve(path) else { return Ok(self.dialect.false_cond().into()) };
                let attr = resolved.attr;
                // Mirrored columns first: they are indexed.
                if let Some(expr) = column_for(self.table, attr.name, resolved.sub.map(|s| s.name), resolved.extension)
                {
                    let s = Scalar { expr, def: resolved.target(), json: false };
                    return self.test(&s, test);
                }
                if attr.multi_valued {
                    // Any value matches; a complex attribute compared directly compares `value`.
                    let sub = match resolved.sub {
                        Some(s) => Some(s),
                        None if attr.attr_type == AttrType::Complex => attr.sub("value"),
                        None => None,
                    };
                    let alias = self.alias();
                    let (from, kind) =
                        self.elements_source(attr.name, resolved.extension.then_some(resolved.schema.id), &alias);
                    if matches!(test, Leaf::Compare(CompareOp::Eq, Value::Null)) {
                        // `attr eq null`: no value at all, which includes having no elements.
                        let present = match sub.and_then(|s| self.element_scalar(&alias, kind, s)) {
                            Some(s) => format!("{} IS NOT NULL", s.expr),
                            None => self.dialect.true_cond().to_string(),
                        };
                        return Ok(format!("NOT EXISTS (SELECT 1 FROM {from} AND {present})"));
                    }
                    let inner = match (sub, matches!(test, Leaf::Present)) {
                        (None, true) if attr.attr_type == AttrType::Complex => self.dialect.true_cond().to_string(),
                        (Some(sub), _) => match self.element_scalar(&alias, kind, sub) {
                            Some(s) => self.test(&s, test)?,
                            None => self.dialect.false_cond().to_string(),
                        },
                        (None, _) => {
                            let s = Scalar { expr: self.dialect.json_elem_text(&alias, None), def: attr, json: true };
                            self.test(&s, test)?
                        }
                    };
                    return Ok(format!("EXISTS (SELECT 1 FROM {from} AND {inner})"));
                }
                if attr.attr_type == AttrType::Complex && resolved.sub.is_none() && !matches!(test, Leaf::Present) {
                    return Err(StoreError::InvalidFilter(format!(
                        "'{}' is complex: compare one of its sub-attributes",
                        display_path(path)
                    )));
                }
                if resolved.common && attr.name == "meta" {
                    // meta.resourceType / meta.location / meta.version are not stored as such.
                    return Ok(self.dialect.false_cond().into());
                }
                let mut keys: Vec<&str> = Vec::new();
                if resolved.extension {
                    keys.push(resolved.schema.id);
                }
                keys.push(attr.name);
                if let Some(sub) = resolved.sub {
                    keys.push(sub.name);
                }
                let expr = self.dialect.json_text(&format!("{}.data_folded", self.table.alias()), &keys);
                let s = Scalar { expr, def: resolved.target(), json: true };
                self.test(&s, test)
            }
        }
    }

    /// The scalar for sub-attribute `sub` of an element, or None when it has no value there.
    /// Ids are server-made lower-case UUIDs: folding leaves them as they are.
    fn element_scalar<'d>(&self, alias: &str, kind: ElemKind, sub: &'d AttributeDef) -> Option<Scalar<'d>> {
        let constant = |text: &str| format!("'{}'", if folds(sub) { fold(text) } else { text.to_string() });
        let (expr, json) = match (kind, sub.name) {
            (ElemKind::Json, name) => (self.dialect.json_elem_text(alias, Some(name)), true),
            (ElemKind::GroupMember, "value") => (format!("{alias}.user_id"), false),
            (ElemKind::GroupMember, "type") => (constant("User"), false),
            (ElemKind::UserGroup, "value") => (format!("{alias}.scim_id"), false),
            (ElemKind::UserGroup, "display") => (format!("{alias}.name_key"), false),
            (ElemKind::UserGroup, "type") => (constant("direct"), false),
            _ => return None,
        };
        Some(Scalar { expr, def: sub, json })
    }

    fn test(&mut self, s: &Scalar<'_>, test: &Leaf<'_>) -> StoreResult<String> {
        match test {
            Leaf::Present => Ok(match s.def.attr_type {
                AttrType::String | AttrType::Reference | AttrType::Binary | AttrType::DateTime => {
                    format!("COALESCE({}, '') <> ''", s.expr)
                }
                _ => format!("{} IS NOT NULL", s.expr),
            }),
            Leaf::Compare(op, value) => self.compare(s, *op, value),
        }
    }

    fn compare(&mut self, s: &Scalar<'_>, op: CompareOp, value: &Value) -> StoreResult<String> {
        let d = self.dialect;
        if value.is_null() {
            return match op {
                CompareOp::Eq => Ok(format!("{} IS NULL", s.expr)),
                _ => Err(StoreError::InvalidFilter(format!("'{}' cannot compare with null", s.def.name))),
            };
        }
        match s.def.attr_type {
            AttrType::Boolean => {
                let b = match value {
                    Value::Bool(b) => *b,
                    Value::String(t) if t.eq_ignore_ascii_case("true") => true,
                    Value::String(t) if t.eq_ignore_ascii_case("false") => false,
                    _ => {
                        return Err(StoreError::InvalidFilter(format!(
                            "'{}' is boolean: compare with true or false",
                            s.def.name
                        )));
                    }
                };
                if op != CompareOp::Eq {
                    return Err(StoreError::InvalidFilter(format!(
                        "'{}' is boolean: only eq and ne apply",
                        s.def.name
                    )));
                }
                let lit = if s.json {
                    d.json_bool(b)
                } else if b {
                    "1"
                } else {
                    "0"
                };
                Ok(format!("{} = {lit}", s.expr))
            }
            AttrType::Integer | AttrType::Decimal => {
                let Some(n) = value.as_f64() else {
                    return Err(StoreError::InvalidFilter(format!(
                        "'{}' is numeric: compare with a number",
                        s.def.name
                    )));
                };
                let sym = match op {
                    CompareOp::Eq => "=",
                    CompareOp::Gt => ">",
                    CompareOp::Ge => ">=",
                    CompareOp::Lt => "<",
                    CompareOp::Le => "<=",
                    _ => {
                        return Err(StoreError::InvalidFilter(format!(
                            "'{}' is numeric: co, sw and ew do not apply",
                            s.def.name
                        )));
                    }
                };
                let p = self.param(SqlValue::Float(n));
                Ok(format!("{} {sym} {p}", d.as_number(&s.expr)))
            }
            AttrType::Complex => Err(StoreError::InvalidFilter(format!(
                "'{}' is complex: compare one of its sub-attributes",
                s.def.name
            ))),
            AttrType::String | AttrType::Reference | AttrType::Binary | AttrType::DateTime => {
                let text = match value {
                    Value::String(t) => t.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(StoreError::InvalidFilter(format!("'{}' compares with a string", s.def.name))),
                };
                let text = if s.def.attr_type == AttrType::DateTime {
                    match crate::clock::parse_time(&text) {
                        Some(t) => crate::clock::format_time(t),
                        None => {
                            return Err(StoreError::InvalidFilter(format!(
                                "'{}' is a dateTime: compare with an RFC 3339 timestamp, not '{text}'",
                                s.def.name
                            )));
                        }
                    }
                } else {
                    text
                };
                // The column side holds folded text already (see the module's documentation).
                let lhs = s.expr.clone();
                let rhs = if folds(s.def) { fold(&text) } else { text };
                if rhs.is_empty() && matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew) {
                    // Every string contains, starts and ends with the empty string.
                    return Ok(format!("{lhs} IS NOT NULL"));
                }
                let p = self.param(SqlValue::Text(rhs));
                Ok(match op {
                    CompareOp::Eq => format!("{lhs} = {p}"),
                    CompareOp::Co => d.contains(&lhs, &p),
                    CompareOp::Sw => d.starts_with(&lhs, &p),
                    CompareOp::Ew => d.ends_with(&lhs, &p),
                    CompareOp::Gt => format!("{} > {p}", d.by_code_point(&lhs)),
                    CompareOp::Ge => format!("{} >= {p}", d.by_code_point(&lhs)),
                    CompareOp::Lt => format!("{} < {p}", d.by_code_point(&lhs)),
                    CompareOp::Le => format!("{} <= {p}", d.by_code_point(&lhs)),
                    CompareOp::Ne => unreachable_ne(),
                })
            }
        }
    }
}

/// `ne` is rewritten to `not eq` before comparison.
fn unreachable_ne() -> String {
    "1 = 0".to_string()
}

enum Leaf<'v> {
    Compare(CompareOp, &'v Value),
    Present,
}
