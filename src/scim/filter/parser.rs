//! Parser of SCIM filters (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2).

use serde_json::Value;

use super::ast::{AttrPath, CompareOp, Filter, PatchPath};
use crate::scim::ScimError;

/// Longest filter accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 8192;
/// Deepest filter accepted: nesting of parentheses, `not` and value filters, and the depth of
/// the expression tree, where a chain of `and`/`or` counts as a balanced tree (a chain of n terms
/// is log2(n) deep). Every filter within [`MAX_FILTER_LEN`] and this depth runs on both stores.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// An attribute path or keyword as written.
    Word(String),
    Str(String),
    Num(Value),
    LParen,
    RParen,
    LBracket,
    RBracket,
    /// `.` right after `]` (Entra's `emails[type eq "work"].value`).
    Dot,
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

fn err_at(kind: fn(String) -> ScimError, pos: usize, msg: &str) -> ScimError {
    kind(format!("{msg} at position {pos}"))
}

impl<'a> Lexer<'a> {
    fn tokens(src: &'a str, kind: fn(String) -> ScimError) -> Result<Vec<(Tok, usize)>, ScimError> {
        let mut lx = Lexer { src, pos: 0 };
        let mut out = Vec::new();
        let bytes = src.as_bytes();
        while lx.pos < bytes.len() {
            let c = bytes[lx.pos];
            let start = lx.pos;
            match c {
                b' ' | b'\t' | b'\n' | b'\r' => lx.pos += 1,
                b'(' => {
                    out.push((Tok::LParen, start));
                    lx.pos += 1;
                }
                b')' => {
                    out.push((Tok::RParen, start));
                    lx.pos += 1;
                }
                b'[' => {
                    out.push((Tok::LBracket, start));
                    lx.pos += 1;
                }
                b']' => {
                    out.push((Tok::RBracket, start));
                    lx.pos += 1;
                }
                b'.' if matches!(out.last(), Some((Tok::RBracket, _))) => {
                    out.push((Tok::Dot, start));
                    lx.pos += 1;
                }
                b'"' => out.push((Tok::Str(lx.string(kind)?), start)),
                b'-' | b'0'..=b'9' => out.push((lx.number(kind)?, start)),
                _ => {
                    let word = lx.word();
                    if word.is_empty() {
                        let ch = src[start..].chars().next().unwrap_or('?');
                        return Err(err_at(kind, start, &format!("unexpected character '{ch}'")));
                    }
                    out.push((Tok::Word(word), start));
                }
            }
        }
        Ok(out)
    }

    fn string(&mut self, kind: fn(String) -> ScimError) -> Result<String, ScimError> {
        let start = self.pos;
        let bytes = self.src.as_bytes();
        let mut i = self.pos + 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => {
                    let lit = &self.src[start..=i];
                    self.pos = i + 1;
                    let text = serde_json::from_str::<String>(lit)
                        .map_err(|e| err_at(kind, start, &format!("invalid string literal ({e})")))?;
                    // No stored value holds one (they are refused on input).
                    if text.chars().any(char::is_control) {
                        return Err(err_at(kind, start, "control characters are not allowed in a string"));
                    }
                    return Ok(text);
                }
                _ => i += 1,
            }
        }
        Err(err_at(kind, start, "unterminated string"))
    }

    fn number(&mut self, kind: fn(String) -> ScimError) -> Result<Tok, ScimError> {
        let start = self.pos;
        let bytes = self.src.as_bytes();
        let mut i = self.pos;
        while i < bytes.len() && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
            i += 1;
        }
        let lit = &self.src[start..i];
        self.pos = i;
        match serde_json::from_str::<Value>(lit) {
            Ok(v @ Value::Number(_)) => Ok(Tok::Num(v)),
            _ => Err(err_at(kind, start, &format!("invalid number '{lit}'"))),
        }
    }

    /// Attribute paths (with URN prefixes, dots, `$ref`) and keywords.
    fn word(&mut self) -> String {
        let rest = &self.src[self.pos..];
        let len = rest
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '-' | '$')))
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        self.pos += len;
        rest[..len].to_string()
    }
}

/// Splits `[urn:]attr[.sub]` (URNs contain dots and colons: the attribute follows the last colon).
fn split_attr_path(text: &str) -> Option<AttrPath> {
    let (uri, rest) = match text.rfind(':') {
        Some(i) => (Some(text[..i].to_string()), &text[i + 1..]),
        None => (None, text),
    };
    if uri.as_deref().is_some_and(|u| u.is_empty() || !u.to_ascii_lowercase().starts_with("urn:")) {
        return None;
    }
    let mut parts = rest.split('.');
    let attr = parts.next()?.to_string();
    let sub = parts.next().map(str::to_string);
    if parts.next().is_some() || !valid_name(&attr) || sub.as_deref().is_some_and(|s| !valid_name(s)) {
        return None;
    }
    Some(AttrPath { uri, attr, sub_attr: sub })
}

/// RFC 7643 §2.1 ATTRNAME, plus `$ref`.
fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some('$') => s == "$ref",
        Some(c) if c.is_ascii_alphabetic() => chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        _ => false,
    }
}

fn compare_op(word: &str) -> Option<CompareOp> {
    Some(match word.to_ascii_lowercase().as_str() {
        "eq" => CompareOp::Eq,
        "ne" => CompareOp::Ne,
        "co" => CompareOp::Co,
        "sw" => CompareOp::Sw,
        "ew" => CompareOp::Ew,
        "gt" => CompareOp::Gt,
        "ge" => CompareOp::Ge,
        "lt" => CompareOp::Lt,
        "le" => CompareOp::Le,
        _ => return None,
    })
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    i: usize,
    end: usize,
    depth: usize,
    kind: fn(String) -> ScimError,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|(t, _)| t)
    }
    fn pos(&self) -> usize {
        self.toks.get(self.i).map(|(_, p)| *p).unwrap_or(self.end)
    }
    fn err(&self, msg: &str) -> ScimError {
        err_at(self.kind, self.pos(), msg)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.i).map(|(t, _)| t.clone());
        self.i += 1;
        t
    }
    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }
    fn enter(&mut self) -> Result<(), ScimError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err("filter nested too deeply"));
        }
        Ok(())
    }

    /// filter := and ("or" and)*
    fn or(&mut self) -> Result<Filter, ScimError> {
        let mut terms = vec![self.and()?];
        while self.is_keyword("or") {
            self.i += 1;
            terms.push(self.and()?);
        }
        Ok(balanced(terms, Filter::Or))
    }

    /// and := unary ("and" unary)*
    fn and(&mut self) -> Result<Filter, ScimError> {
        let mut terms = vec![self.unary()?];
        while self.is_keyword("and") {
            self.i += 1;
            terms.push(self.unary()?);
        }
        Ok(balanced(terms, Filter::And))
    }

    fn unary(&mut self) -> Result<Filter, ScimError> {
        if self.is_keyword("not") && matches!(self.toks.get(self.i + 1), Some((Tok::LParen, _))) {
            self.i += 2;
            self.enter()?;
            let inner = self.or()?;
            self.expect(Tok::RParen, "')' closing 'not ('")?;
            self.depth -= 1;
            return Ok(Filter::Not(Box::new(inner)));
        }
        if matches!(self.peek(), Some(Tok::LParen)) {
            self.i += 1;
            self.enter()?;
            let inner = self.or()?;
            self.expect(Tok::RParen, "')'")?;
            self.depth -= 1;
            return Ok(inner);
        }
        self.attr_expr()
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<(), ScimError> {
        if self.peek() == Some(&tok) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected {what}")))
        }
    }

    fn path(&mut self) -> Result<AttrPath, ScimError> {
        match self.next() {
            Some(Tok::Word(w)) => split_attr_path(&w)
                .ok_or_else(|| err_at(self.kind, self.toks[self.i - 1].1, &format!("'{w}' is not an attribute path"))),
            _ => {
                self.i = self.i.saturating_sub(1);
                Err(self.err("expected an attribute path"))
            }
        }
    }

    /// attrPath op value | attrPath "pr" | attrPath "[" valFilter "]" ["." subAttr op value | pr]
    fn attr_expr(&mut self) -> Result<Filter, ScimError> {
        let path = self.path()?;
        if matches!(self.peek(), Some(Tok::LBracket)) {
            if path.sub_attr.is_some() {
                return Err(self.err("a value filter follows an attribute, not a sub-attribute"));
            }
            self.i += 1;
            self.enter()?;
            let inner = self.or()?;
            self.expect(Tok::RBracket, "']' closing the value filter")?;
            self.depth -= 1;
            if matches!(self.peek(), Some(Tok::Dot)) {
                // Entra: emails[type eq "work"].value eq "x" → emails[type eq "work" and value eq "x"]
                self.i += 1;
                let sub = match self.next() {
                    Some(Tok::Word(w)) if valid_name(&w) => w,
                    _ => return Err(self.err("expected a sub-attribute after ']. '")),
                };
                let sub_path = AttrPath { uri: None, attr: sub, sub_attr: None };
                let cond = self.comparison(sub_path)?;
                return Ok(Filter::ValuePath { path, filter: Box::new(Filter::And(Box::new(inner), Box::new(cond))) });
            }
            return Ok(Filter::ValuePath { path, filter: Box::new(inner) });
        }
        self.comparison(path)
    }

    fn comparison(&mut self, path: AttrPath) -> Result<Filter, ScimError> {
        let op = match self.next() {
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("pr") => return Ok(Filter::Present(path)),
            Some(Tok::Word(w)) => match compare_op(&w) {
                Some(op) => op,
                None => {
                    self.i -= 1;
                    return Err(self
                        .err(&format!("expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr), found '{w}'")));
                }
            },
            Some(_) => {
                self.i -= 1;
                return Err(self.err("expected an operator"));
            }
            None => return Err(self.err("expected an operator")),
        };
        let value = match self.next() {
            Some(Tok::Str(s)) => Value::String(s),
            Some(Tok::Num(n)) => n,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Value::Bool(true),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Value::Bool(false),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Value::Null,
            Some(_) => {
                self.i -= 1;
                return Err(self.err("expected a value (a quoted string, number, true, false or null)"));
            }
            None => return Err(self.err("expected a value")),
        };
        Ok(Filter::Compare { path, op, value })
    }
}

/// Joins the terms of an `and`/`or` chain as a balanced tree (both operators are associative):
/// a long chain stays shallow for the evaluator, the SQL translation and the databases.
fn balanced(mut terms: Vec<Filter>, join: fn(Box<Filter>, Box<Filter>) -> Filter) -> Filter {
    if terms.len() == 1 {
        return terms.remove(0);
    }
    let right = terms.split_off(terms.len() / 2);
    join(Box::new(balanced(terms, join)), Box::new(balanced(right, join)))
}

/// Depth of a filter's expression tree (a comparison is 1).
fn depth(f: &Filter) -> usize {
    match f {
        Filter::And(a, b) | Filter::Or(a, b) => 1 + depth(a).max(depth(b)),
        Filter::Not(inner) | Filter::ValuePath { filter: inner, .. } => 1 + depth(inner),
        Filter::Compare { .. } | Filter::Present(_) => 1,
    }
}

/// Parses a filter; errors are 400 `invalidFilter`.
pub fn parse_filter(input: &str) -> Result<Filter, ScimError> {
    let kind: fn(String) -> ScimError = ScimError::invalid_filter;
    if input.len() > MAX_FILTER_LEN {
        return Err(kind(format!("filter longer than {MAX_FILTER_LEN} bytes")));
    }
    let toks = Lexer::tokens(input, kind)?;
    if toks.is_empty() {
        return Err(kind("empty filter".into()));
    }
    let mut p = Parser { toks, i: 0, end: input.len(), depth: 0, kind };
    let f = p.or()?;
    if p.i < p.toks.len() {
        return Err(p.err("unexpected text after the filter"));
    }
    if depth(&f) > MAX_DEPTH {
        return Err(kind(format!("filter nested too deeply (at most {MAX_DEPTH} levels)")));
    }
    Ok(f)
}

/// Parses an attribute path such as a `sortBy` value; errors are 400 `invalidValue`.
pub fn parse_attr_path(input: &str) -> Result<AttrPath, ScimError> {
    split_attr_path(input.trim()).ok_or_else(|| ScimError::invalid_value(format!("'{input}' is not an attribute path")))
}

/// Parses a PATCH path; errors are 400 `invalidPath`.
pub fn parse_patch_path(input: &str) -> Result<PatchPath, ScimError> {
    let kind: fn(String) -> ScimError = ScimError::invalid_path;
    let text = input.trim();
    if text.is_empty() {
        return Err(kind("empty path".into()));
    }
    if text.len() > MAX_FILTER_LEN {
        return Err(kind(format!("path longer than {MAX_FILTER_LEN} bytes")));
    }
    let Some(open) = text.find('[') else {
        let attr = split_attr_path(text).ok_or_else(|| kind(format!("'{text}' is not an attribute path")))?;
        return Ok(PatchPath { attr, filter: None, sub_attr: None });
    };
    let close = text.rfind(']').ok_or_else(|| kind(format!("'{text}': '[' without ']'")))?;
    if close < open {
        return Err(kind(format!("'{text}': ']' before '['")));
    }
    let attr =
        split_attr_path(&text[..open]).ok_or_else(|| kind(format!("'{}' is not an attribute path", &text[..open])))?;
    if attr.sub_attr.is_some() {
        return Err(kind(format!("'{text}': a value filter follows an attribute, not a sub-attribute")));
    }
    let filter = parse_filter(&text[open + 1..close])
        .map_err(|e| kind(format!("in the value filter of '{text}': {}", e.detail)))?;
    let rest = &text[close + 1..];
    let sub_attr = if rest.is_empty() {
        None
    } else {
        let sub = rest.strip_prefix('.').ok_or_else(|| kind(format!("'{text}': unexpected '{rest}' after ']'")))?;
        if !valid_name(sub) {
            return Err(kind(format!("'{text}': '{sub}' is not a sub-attribute name")));
        }
        Some(sub.to_string())
    };
    Ok(PatchPath { attr, filter: Some(filter), sub_attr })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::ScimType;
    use proptest::prelude::*;

    fn p(path: &str) -> AttrPath {
        split_attr_path(path).expect("path")
    }

    fn cmp(path: &str, op: CompareOp, value: Value) -> Filter {
        Filter::Compare { path: p(path), op, value }
    }

    #[test]
    fn rfc_7644_examples_parse() {
        let examples = [
            r#"userName Eq "john""#,
            r#"name.familyName co "O'Malley""#,
            r#"userName sw "J""#,
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
            r#"title pr"#,
            r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
            r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
            r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
            r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
            r#"title pr and userType eq "Employee""#,
            r#"title pr or userType eq "Intern""#,
            r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType eq "Employee" and (emails.type eq "work")"#,
            r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
        ];
        for e in examples {
            parse_filter(e).unwrap_or_else(|err| panic!("{e}: {err}"));
        }
    }

    #[test]
    fn precedence_and_structure() {
        let f = parse_filter(r#"a eq 1 or b eq true and not (c pr)"#).unwrap();
        assert_eq!(
            f,
            Filter::Or(
                Box::new(cmp("a", CompareOp::Eq, Value::from(1))),
                Box::new(Filter::And(
                    Box::new(cmp("b", CompareOp::Eq, Value::Bool(true))),
                    Box::new(Filter::Not(Box::new(Filter::Present(p("c")))))
                ))
            )
        );
        let urn =
            parse_filter(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "x""#).unwrap();
        let Filter::Compare { path, .. } = urn else { panic!("not a comparison") };
        assert_eq!(path.uri.as_deref(), Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"));
        assert_eq!(path.attr, "manager");
        assert_eq!(path.sub_attr.as_deref(), Some("value"));
    }

    #[test]
    fn entra_value_path_with_trailing_sub_attribute() {
        let f = parse_filter(r#"emails[type eq "work"].value eq "a@b.c""#).unwrap();
        assert_eq!(
            f,
            Filter::ValuePath {
                path: p("emails"),
                filter: Box::new(Filter::And(
                    Box::new(cmp("type", CompareOp::Eq, Value::from("work"))),
                    Box::new(cmp("value", CompareOp::Eq, Value::from("a@b.c")))
                ))
            }
        );
    }

    #[test]
    fn literals_keywords_and_escapes() {
        assert_eq!(parse_filter(r#"x EQ NULL"#).unwrap(), cmp("x", CompareOp::Eq, Value::Null));
        assert_eq!(parse_filter(r#"x eq False"#).unwrap(), cmp("x", CompareOp::Eq, Value::Bool(false)));
        assert_eq!(parse_filter(r#"x eq -1.5e2"#).unwrap(), cmp("x", CompareOp::Eq, serde_json::json!(-150.0)));
        assert_eq!(parse_filter(r#"x eq "a\"b\\c""#).unwrap(), cmp("x", CompareOp::Eq, Value::from("a\"b\\c")));
        assert_eq!(parse_filter("$ref eq \"u\"").unwrap(), cmp("$ref", CompareOp::Eq, Value::from("u")));
    }

    #[test]
    fn errors_are_invalid_filter_with_position() {
        for bad in [
            "",
            "userName",
            "userName eq",
            "userName xx \"a\"",
            "(userName eq \"a\"",
            "userName eq \"a\")",
            "userName eq \"a",
            "emails[type eq \"work\"",
            "a.b.c eq 1",
            "not userName eq \"a\"",
            "userName eq 'single'",
            "a eq 1 and",
        ] {
            let e = parse_filter(bad).expect_err(bad);
            assert_eq!(e.scim_type, Some(ScimType::InvalidFilter), "{bad}");
            assert_eq!(e.status, 400);
        }
        let deep = format!("{}a pr{}", "(".repeat(200), ")".repeat(200));
        assert_eq!(parse_filter(&deep).unwrap_err().scim_type, Some(ScimType::InvalidFilter));
        assert!(parse_filter(&"a pr or ".repeat(5000)).is_err());
    }

    #[test]
    fn patch_paths() {
        let pp = parse_patch_path(r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#).unwrap();
        assert_eq!(pp.attr.attr, "members");
        assert!(pp.filter.is_some());
        let pp = parse_patch_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(pp.sub_attr.as_deref(), Some("value"));
        let pp = parse_patch_path("name.familyName").unwrap();
        assert_eq!(pp.attr.sub_attr.as_deref(), Some("familyName"));
        let pp = parse_patch_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber").unwrap();
        assert_eq!(pp.attr.attr, "employeeNumber");
        for bad in ["", "emails[type eq", "emails]", "name.givenName[x eq 1]", "emails[type eq \"w\"]x", "a.b.c"] {
            assert_eq!(parse_patch_path(bad).unwrap_err().scim_type, Some(ScimType::InvalidPath), "{bad}");
        }
    }

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "userName",
                "emails",
                "(",
                ")",
                "[",
                "]",
                "eq",
                "and",
                "or",
                "not",
                "pr",
                "\"x\"",
                "1",
                "true",
                "null",
                ".",
                "value",
                "urn:a:b:c",
                "\"",
                "\\",
                "co",
                "]."
            ])
            .prop_map(str::to_string),
            "[ -~]{0,4}",
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,80}") {
            if let Err(e) = parse_filter(&s) {
                prop_assert_eq!(e.scim_type, Some(ScimType::InvalidFilter));
            }
            if let Err(e) = parse_patch_path(&s) {
                prop_assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
            }
        }

        #[test]
        fn token_soup_never_panics(toks in prop::collection::vec(token(), 0..24)) {
            let s = toks.join(" ");
            if let Err(e) = parse_filter(&s) {
                prop_assert_eq!(e.scim_type, Some(ScimType::InvalidFilter));
            }
            let _ = parse_patch_path(&toks.concat());
        }
    }
}
