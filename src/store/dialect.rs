//! The few places where SQLite and PostgreSQL SQL differ.

/// SQL dialect of the connected database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// A subquery, for a row of `users u`, giving its managed teams as JSON text
    /// `[[group id, name], ...]` ordered by name: a user and its groups in one statement.
    pub fn user_groups_json(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "(SELECT json_group_array(json_array(g.scim_id, g.name)) FROM (SELECT t.scim_id, t.name \
                 FROM team_members m JOIN teams t ON t.id = m.team_id \
                 WHERE m.user_id = u.id AND t.scim_id IS NOT NULL ORDER BY t.name, t.scim_id) g)"
            }
            Dialect::Postgres => {
                "(SELECT COALESCE(json_agg(json_build_array(t.scim_id, t.name) ORDER BY t.name, t.scim_id), '[]'::json)::text \
                 FROM team_members m JOIN teams t ON t.id = m.team_id \
                 WHERE m.user_id = u.id AND t.scim_id IS NOT NULL)"
            }
        }
    }
    /// Reads a JSON document column as text (PostgreSQL stores `jsonb`).
    pub fn json_out(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => column.to_string(),
            Dialect::Postgres => format!("{column}::text"),
        }
    }
    /// A bind parameter holding JSON text, for a JSON column.
    pub fn json_in(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("${n}"),
            Dialect::Postgres => format!("${n}::jsonb"),
        }
    }
    /// Text of the JSON value at `keys` inside `column` (NULL when absent).
    pub fn json_text(self, column: &str, keys: &[&str]) -> String {
        match self {
            Dialect::Sqlite => format!("json_extract({column}, '{}')", sqlite_path(keys)),
            Dialect::Postgres => format!("({column} #>> '{}')", pg_path(keys)),
        }
    }
    /// Table-valued expansion of the JSON array at `keys`; the element is reachable through
    /// [`Dialect::json_elem_text`] with alias `alias`.
    pub fn json_each(self, column: &str, keys: &[&str], alias: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_each({column}, '{}') AS {alias}", sqlite_path(keys)),
            Dialect::Postgres => format!(
                "jsonb_array_elements(CASE WHEN jsonb_typeof({column} #> '{p}') = 'array' THEN {column} #> '{p}' ELSE '[]'::jsonb END) AS {alias}(v)",
                p = pg_path(keys)
            ),
        }
    }
    /// Text of a key of a JSON array element produced by [`Dialect::json_each`], or of the
    /// element itself when `key` is `None`.
    pub fn json_elem_text(self, alias: &str, key: Option<&str>) -> String {
        match (self, key) {
            (Dialect::Sqlite, Some(k)) => format!("json_extract({alias}.value, '{}')", sqlite_path(&[k])),
            (Dialect::Sqlite, None) => format!("{alias}.value"),
            (Dialect::Postgres, Some(k)) => format!("({alias}.v ->> '{}')", escape_literal(k)),
            (Dialect::Postgres, None) => format!("({alias}.v #>> '{{}}')"),
        }
    }
    /// A JSON boolean as it compares after [`Dialect::json_text`].
    pub fn json_bool(self, b: bool) -> &'static str {
        match (self, b) {
            (Dialect::Sqlite, true) => "1",
            (Dialect::Sqlite, false) => "0",
            (Dialect::Postgres, true) => "'true'",
            (Dialect::Postgres, false) => "'false'",
        }
    }
    /// Numeric view of a JSON text expression.
    pub fn as_number(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => expr.to_string(),
            Dialect::Postgres => format!("CAST({expr} AS DOUBLE PRECISION)"),
        }
    }
    /// `expr` contains `needle` (both already case-folded as needed).
    pub fn contains(self, expr: &str, needle: &str) -> String {
        match self {
            Dialect::Sqlite => format!("instr({expr}, {needle}) > 0"),
            Dialect::Postgres => format!("strpos({expr}, {needle}) > 0"),
        }
    }
    /// `expr` starts with `needle`.
    pub fn starts_with(self, expr: &str, needle: &str) -> String {
        match self {
            Dialect::Sqlite => format!("substr({expr}, 1, length({needle})) = {needle}"),
            Dialect::Postgres => format!("left({expr}, length({needle})) = {needle}"),
        }
    }
    /// `expr` ends with `needle`.
    pub fn ends_with(self, expr: &str, needle: &str) -> String {
        match self {
            Dialect::Sqlite => {
                format!("(length({expr}) >= length({needle}) AND substr({expr}, -length({needle})) = {needle})")
            }
            Dialect::Postgres => format!("right({expr}, length({needle})) = {needle}"),
        }
    }
    /// `NOT` that treats an unknown (NULL) condition as false first, so `not (x eq 1)` matches
    /// resources without `x`.
    pub fn not(self, cond: &str) -> String {
        match self {
            Dialect::Sqlite => format!("NOT COALESCE(({cond}), 0)"),
            Dialect::Postgres => format!("NOT COALESCE(({cond}), FALSE)"),
        }
    }
    /// `expr` compared and ordered by code point (the evaluator's order of folded text), whatever
    /// the database's collation.
    pub fn by_code_point(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => expr.to_string(),
            Dialect::Postgres => format!("({expr}) COLLATE \"C\""),
        }
    }
    /// Always-false condition.
    pub fn false_cond(self) -> &'static str {
        "1 = 0"
    }
    /// Always-true condition.
    pub fn true_cond(self) -> &'static str {
        "1 = 1"
    }
}

fn escape_literal(s: &str) -> String {
    s.replace('\'', "''")
}

/// `$."a"."b"` with JSON-path quoting; attribute names come from the schema, never from input.
fn sqlite_path(keys: &[&str]) -> String {
    let mut p = String::from("$");
    for k in keys {
        p.push_str(".\"");
        p.push_str(&escape_literal(&k.replace('"', "\\\"")));
        p.push('"');
    }
    p
}

/// `{a,b}` text-array path for `#>`/`#>>`.
fn pg_path(keys: &[&str]) -> String {
    let quoted: Vec<String> = keys.iter().map(|k| format!("\"{}\"", escape_literal(&k.replace('"', "\\\"")))).collect();
    format!("{{{}}}", quoted.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_per_dialect() {
        assert_eq!(
            Dialect::Sqlite.json_text("u.data", &["urn:x:2.0:User", "manager", "value"]),
            "json_extract(u.data, '$.\"urn:x:2.0:User\".\"manager\".\"value\"')"
        );
        assert_eq!(
            Dialect::Postgres.json_text("u.data", &["name", "givenName"]),
            "(u.data #>> '{\"name\",\"givenName\"}')"
        );
    }
}
