//! Limits on the size of one request's content, checked before any of it is interpreted: a
//! request over a limit is refused whole with 400 `invalidValue` naming the limit and the server
//! flag that sets it.
//!
//! The body size itself is bounded by the HTTP layer (413); filters by
//! [`crate::scim::filter::parser::MAX_FILTER_LEN`] and [`crate::scim::filter::parser::MAX_DEPTH`].

use serde_json::Value;

use super::ScimError;

/// The configurable limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Most values of one multi-valued attribute (and elements of any array) in one body.
    pub max_values: usize,
    /// Most operations of one PATCH request.
    pub max_patch_operations: usize,
}

/// Checks a parsed request body against `limits`; linear in the size of the body.
pub fn check_body(body: &Value, limits: &RequestLimits) -> Result<(), ScimError> {
    if let Some(ops) = body
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("Operations")).and_then(|(_, v)| v.as_array()))
        && ops.len() > limits.max_patch_operations
    {
        return Err(ScimError::invalid_value(format!(
            "the PATCH request has {} operations; at most {} are accepted in one request (--max-patch-operations)",
            ops.len(),
            limits.max_patch_operations
        )));
    }
    check_arrays(body, None, limits.max_values)
}

/// Refuses any array longer than `max`, naming the attribute it is the value of.
fn check_arrays(v: &Value, name: Option<&str>, max: usize) -> Result<(), ScimError> {
    match v {
        Value::Array(items) => {
            if items.len() > max {
                return Err(ScimError::invalid_value(format!(
                    "'{}' has {} values; at most {max} values of one attribute are accepted in one request (--max-values)",
                    name.unwrap_or("value"),
                    items.len()
                )));
            }
            items.iter().try_for_each(|item| check_arrays(item, name, max))
        }
        Value::Object(map) => {
            // A PATCH operation's `value` is named by the operation's path.
            let path = map.iter().find(|(k, _)| k.eq_ignore_ascii_case("path")).and_then(|(_, p)| p.as_str());
            map.iter().try_for_each(|(k, item)| {
                let name = match path {
                    Some(p) if k.eq_ignore_ascii_case("value") => p,
                    _ => k,
                };
                check_arrays(item, Some(name), max)
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: RequestLimits = RequestLimits { max_values: 3, max_patch_operations: 2 };

    #[test]
    fn arrays_over_the_limit_are_named() {
        assert!(check_body(&json!({"emails": [1, 2, 3]}), &LIMITS).is_ok());
        let e = check_body(&json!({"x": {"emails": [1, 2, 3, 4]}}), &LIMITS).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.detail.contains("'emails' has 4 values") && e.detail.contains("at most 3"), "{}", e.detail);
    }

    #[test]
    fn patch_operations_over_the_limit_are_refused() {
        let ops = json!({"Operations": [{"op": "add"}, {"op": "add"}, {"op": "add"}]});
        let e = check_body(&ops, &LIMITS).unwrap_err();
        assert!(e.detail.contains("3 operations") && e.detail.contains("at most 2"), "{}", e.detail);
        let nested = json!({"Operations": [{"op": "add", "value": {"emails": [1, 2, 3, 4]}}]});
        assert!(check_body(&nested, &LIMITS).unwrap_err().detail.contains("'emails'"));
        let with_path = json!({"Operations": [{"op": "add", "path": "emails", "value": [1, 2, 3, 4]}]});
        assert!(check_body(&with_path, &LIMITS).unwrap_err().detail.contains("'emails' has 4 values"));
    }
}
