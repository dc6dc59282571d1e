//! List and search requests (RFC 7644 §3.4.2, §3.4.3) and list responses.
//!
//! Query strings and `POST /.search` bodies reduce to the same [`ListQuery`], with RFC 7644
//! §3.4.2.4 paging rules applied: `startIndex` below 1 means 1, a negative `count` means 0 and a
//! `count` above the server maximum is clamped to it rather than refused.

use std::num::IntErrorKind;

use serde_json::{Map, Value, json};

use super::ScimError;
use super::schema::{LIST_RESPONSE_SCHEMA, SEARCH_REQUEST_SCHEMA};

/// `sortOrder` (RFC 7644 §3.4.2.3); ascending unless asked otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// `ascending`.
    #[default]
    Ascending,
    /// `descending`.
    Descending,
}

impl SortOrder {
    /// Parses `ascending`/`descending`, ignoring case.
    pub fn parse(text: &str) -> Result<SortOrder, ScimError> {
        match text.trim() {
            t if t.eq_ignore_ascii_case("ascending") => Ok(SortOrder::Ascending),
            t if t.eq_ignore_ascii_case("descending") => Ok(SortOrder::Descending),
            t => Err(ScimError::invalid_value(format!("sortOrder must be 'ascending' or 'descending', not '{t}'"))),
        }
    }
}

/// A validated list or search request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// The filter expression, unparsed.
    pub filter: Option<String>,
    /// The attribute path to sort by, unparsed.
    pub sort_by: Option<String>,
    /// Sort direction.
    pub sort_order: SortOrder,
    /// 1-based index of the first result (at least 1).
    pub start_index: u64,
    /// Maximum number of results (already clamped to the server maximum).
    pub count: u64,
    /// `attributes`, comma-separated.
    pub attributes: Option<String>,
    /// `excludedAttributes`, comma-separated.
    pub excluded_attributes: Option<String>,
}

/// The request fields before paging rules are applied.
#[derive(Default)]
struct Raw {
    filter: Option<String>,
    sort_by: Option<String>,
    sort_order: Option<String>,
    start_index: Option<i64>,
    count: Option<i64>,
    attributes: Option<String>,
    excluded_attributes: Option<String>,
}

impl Raw {
    fn finish(self, default_count: u64, max_count: u64) -> Result<ListQuery, ScimError> {
        let sort_order = match self.sort_order.as_deref().map(str::trim) {
            None | Some("") => SortOrder::Ascending,
            Some(text) => SortOrder::parse(text)?,
        };
        // Negative and zero values saturate to the bottom of the range (§3.4.2.4).
        let start_index = self.start_index.map_or(1, |i| u64::try_from(i).unwrap_or(0).max(1));
        let count = match self.count {
            None => default_count,
            Some(c) => u64::try_from(c).unwrap_or(0),
        }
        .min(max_count);
        Ok(ListQuery {
            filter: non_empty(self.filter),
            sort_by: non_empty(self.sort_by),
            sort_order,
            start_index,
            count,
            attributes: non_empty(self.attributes),
            excluded_attributes: non_empty(self.excluded_attributes),
        })
    }
}

/// Blank strings count as absent: `?filter=&count=` is a plain list request.
fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

/// Parses an integer parameter; digits too many for 64 bits saturate instead of failing.
fn parse_int(name: &str, text: &str) -> Result<Option<i64>, ScimError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<i64>() {
        Ok(i) => Ok(Some(i)),
        Err(e) if *e.kind() == IntErrorKind::PosOverflow => Ok(Some(i64::MAX)),
        Err(e) if *e.kind() == IntErrorKind::NegOverflow => Ok(Some(i64::MIN)),
        Err(_) => Err(ScimError::invalid_value(format!("{name} must be an integer, not '{text}'"))),
    }
}

impl ListQuery {
    /// Builds a query from URL query parameters (already percent-decoded). Parameter names are
    /// matched ignoring case; the first occurrence of a name wins; unknown names are ignored.
    ///
    /// `count` defaults to `default_count` and is clamped to `max_count`; a non-numeric
    /// `startIndex` or `count`, or an unknown `sortOrder`, is a 400 `invalidValue`.
    pub fn from_query(params: &[(String, String)], default_count: u64, max_count: u64) -> Result<ListQuery, ScimError> {
        let get = |name: &str| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        let raw = Raw {
            filter: get("filter").map(str::to_string),
            sort_by: get("sortBy").map(str::to_string),
            sort_order: get("sortOrder").map(str::to_string),
            start_index: get("startIndex").map(|v| parse_int("startIndex", v)).transpose()?.flatten(),
            count: get("count").map(|v| parse_int("count", v)).transpose()?.flatten(),
            attributes: get("attributes").map(str::to_string),
            excluded_attributes: get("excludedAttributes").map(str::to_string),
        };
        raw.finish(default_count, max_count)
    }

    /// Builds a query from a `POST /.search` body (RFC 7644 §3.4.3).
    ///
    /// `schemas` must list the SearchRequest URN (400 `invalidSyntax` otherwise). Member names
    /// are matched ignoring case and `null` counts as absent. `attributes` and
    /// `excludedAttributes` may be arrays of strings or comma-separated strings; `startIndex`
    /// and `count` integers (numeric strings are tolerated). Wrong types are 400 `invalidValue`.
    pub fn from_search_body(body: &Value, default_count: u64, max_count: u64) -> Result<ListQuery, ScimError> {
        let obj =
            body.as_object().ok_or_else(|| ScimError::invalid_syntax("a search request must be a JSON object"))?;
        let has_schema = member(obj, "schemas").and_then(Value::as_array).is_some_and(|a| {
            a.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(SEARCH_REQUEST_SCHEMA)))
        });
        if !has_schema {
            return Err(ScimError::invalid_syntax(format!(
                "a search request must list '{SEARCH_REQUEST_SCHEMA}' in schemas"
            )));
        }
        let raw = Raw {
            filter: string_member(obj, "filter")?,
            sort_by: string_member(obj, "sortBy")?,
            sort_order: string_member(obj, "sortOrder")?,
            start_index: int_member(obj, "startIndex")?,
            count: int_member(obj, "count")?,
            attributes: list_member(obj, "attributes")?,
            excluded_attributes: list_member(obj, "excludedAttributes")?,
        };
        raw.finish(default_count, max_count)
    }
}

/// A member of a JSON object by name, ignoring case; `null` is absent.
fn member<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v).filter(|v| !v.is_null())
}

fn string_member(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, ScimError> {
    match member(obj, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ScimError::invalid_value(format!("{name} must be a string"))),
    }
}

fn int_member(obj: &Map<String, Value>, name: &str) -> Result<Option<i64>, ScimError> {
    match member(obj, name) {
        None => Ok(None),
        Some(Value::String(s)) => parse_int(name, s),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if n.as_u64().is_some() {
                Ok(Some(i64::MAX))
            } else {
                // A float is accepted only when whole (`10.0`); `as` saturates out-of-range values.
                match n.as_f64().filter(|f| f.fract() == 0.0) {
                    Some(f) => Ok(Some(f as i64)),
                    None => Err(ScimError::invalid_value(format!("{name} must be an integer, not {n}"))),
                }
            }
        }
        Some(_) => Err(ScimError::invalid_value(format!("{name} must be an integer"))),
    }
}

fn list_member(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, ScimError> {
    match member(obj, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(items)) => {
            let names = items
                .iter()
                .map(|v| v.as_str().ok_or_else(|| ScimError::invalid_value(format!("{name} must list strings"))))
                .collect::<Result<Vec<&str>, _>>()?;
            Ok(Some(names.join(",")))
        }
        Some(_) => Err(ScimError::invalid_value(format!("{name} must be an array of strings"))),
    }
}

/// A ListResponse (RFC 7644 §3.4.2): `itemsPerPage` is the number of resources in this page.
pub fn list_response(total: u64, start_index: u64, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE_SCHEMA],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::ScimType;

    fn q(pairs: &[(&str, &str)]) -> Result<ListQuery, ScimError> {
        let params: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ListQuery::from_query(&params, 100, 1000)
    }

    fn search(body: Value) -> Result<ListQuery, ScimError> {
        ListQuery::from_search_body(&body, 100, 1000)
    }

    fn assert_400(r: Result<ListQuery, ScimError>, t: ScimType) {
        let e = r.unwrap_err();
        assert_eq!((e.status, e.scim_type), (400, Some(t)), "{e}");
    }

    #[test]
    fn defaults() {
        let query = q(&[]).unwrap();
        assert_eq!(
            query,
            ListQuery {
                filter: None,
                sort_by: None,
                sort_order: SortOrder::Ascending,
                start_index: 1,
                count: 100,
                attributes: None,
                excluded_attributes: None,
            }
        );
        // The default never exceeds the maximum either.
        let params = [("count".to_string(), String::new())];
        assert_eq!(ListQuery::from_query(&params, 500, 50).unwrap().count, 50);
    }

    #[test]
    fn names_are_case_insensitive() {
        let query = q(&[
            ("FILTER", "userName eq \"bjensen\""),
            ("sortby", "meta.created"),
            ("SortOrder", "DESCENDING"),
            ("startindex", "3"),
            ("COUNT", "7"),
            ("Attributes", "userName"),
            ("excludedattributes", "emails"),
        ])
        .unwrap();
        assert_eq!(query.filter.as_deref(), Some("userName eq \"bjensen\""));
        assert_eq!(query.sort_by.as_deref(), Some("meta.created"));
        assert_eq!(query.sort_order, SortOrder::Descending);
        assert_eq!((query.start_index, query.count), (3, 7));
        assert_eq!(query.attributes.as_deref(), Some("userName"));
        assert_eq!(query.excluded_attributes.as_deref(), Some("emails"));
    }

    #[test]
    fn paging_values_are_clamped() {
        assert_eq!(q(&[("startIndex", "0")]).unwrap().start_index, 1);
        assert_eq!(q(&[("startIndex", "-5")]).unwrap().start_index, 1);
        assert_eq!(q(&[("count", "-1")]).unwrap().count, 0);
        assert_eq!(q(&[("count", "0")]).unwrap().count, 0);
        assert_eq!(q(&[("count", "1001")]).unwrap().count, 1000);
        assert_eq!(q(&[("count", "99999999999999999999999")]).unwrap().count, 1000);
        assert_eq!(q(&[("startIndex", "99999999999999999999999")]).unwrap().start_index, i64::MAX as u64);
        assert_eq!(q(&[("count", " 25 ")]).unwrap().count, 25);
    }

    #[test]
    fn non_numeric_paging_is_invalid_value() {
        assert_400(q(&[("count", "ten")]), ScimType::InvalidValue);
        assert_400(q(&[("startIndex", "1.5")]), ScimType::InvalidValue);
        assert_400(q(&[("sortOrder", "sideways")]), ScimType::InvalidValue);
    }

    #[test]
    fn blank_values_are_absent_and_first_occurrence_wins() {
        let query =
            q(&[("filter", ""), ("attributes", " "), ("sortOrder", ""), ("count", "5"), ("count", "9")]).unwrap();
        assert_eq!((query.filter, query.attributes), (None, None));
        assert_eq!((query.sort_order, query.count), (SortOrder::Ascending, 5));
    }

    #[test]
    fn search_body_is_parsed() {
        let query = search(json!({
            "schemas": [SEARCH_REQUEST_SCHEMA],
            "attributes": ["displayName", "userName"],
            "excludedAttributes": "emails, groups",
            "filter": "displayName sw \"smith\"",
            "sortBy": "userName",
            "sortOrder": "descending",
            "startIndex": 1,
            "count": 10
        }))
        .unwrap();
        assert_eq!(query.attributes.as_deref(), Some("displayName,userName"));
        assert_eq!(query.excluded_attributes.as_deref(), Some("emails, groups"));
        assert_eq!(query.filter.as_deref(), Some("displayName sw \"smith\""));
        assert_eq!((query.sort_by.as_deref(), query.sort_order), (Some("userName"), SortOrder::Descending));
        assert_eq!((query.start_index, query.count), (1, 10));
    }

    #[test]
    fn search_body_applies_the_same_paging_rules() {
        let base = |extra: Value| {
            let mut body = json!({ "schemas": [SEARCH_REQUEST_SCHEMA] });
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            search(body)
        };
        let query = base(json!({ "startIndex": 0, "count": 5000 })).unwrap();
        assert_eq!((query.start_index, query.count), (1, 1000));
        assert_eq!(base(json!({ "count": -3 })).unwrap().count, 0);
        assert_eq!(base(json!({ "COUNT": "12", "filter": null })).unwrap().count, 12);
        assert_eq!(base(json!({ "count": 20.0 })).unwrap().count, 20);
        assert_eq!(base(json!({})).unwrap().count, 100);
        assert_400(base(json!({ "count": "many" })), ScimType::InvalidValue);
        assert_400(base(json!({ "count": 2.5 })), ScimType::InvalidValue);
        assert_400(base(json!({ "startIndex": true })), ScimType::InvalidValue);
        assert_400(base(json!({ "filter": 3 })), ScimType::InvalidValue);
        assert_400(base(json!({ "attributes": ["userName", 3] })), ScimType::InvalidValue);
        assert_400(base(json!({ "excludedAttributes": { "a": 1 } })), ScimType::InvalidValue);
        assert_400(base(json!({ "sortOrder": "up" })), ScimType::InvalidValue);
    }

    #[test]
    fn search_body_needs_the_search_request_schema() {
        assert_400(search(json!({ "filter": "userName pr" })), ScimType::InvalidSyntax);
        assert_400(
            search(json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"] })),
            ScimType::InvalidSyntax,
        );
        assert_400(search(json!({ "schemas": SEARCH_REQUEST_SCHEMA })), ScimType::InvalidSyntax);
        assert_400(search(json!([SEARCH_REQUEST_SCHEMA])), ScimType::InvalidSyntax);
        assert!(search(json!({ "schemas": [SEARCH_REQUEST_SCHEMA.to_lowercase()] })).is_ok());
    }

    #[test]
    fn list_response_shape() {
        let v = list_response(12, 3, vec![json!({ "id": "a" }), json!({ "id": "b" })]);
        assert_eq!(
            v,
            json!({
                "schemas": [LIST_RESPONSE_SCHEMA],
                "totalResults": 12,
                "startIndex": 3,
                "itemsPerPage": 2,
                "Resources": [{ "id": "a" }, { "id": "b" }],
            })
        );
        assert_eq!(list_response(0, 1, Vec::new())["itemsPerPage"], 0);
    }
}
