//! The filter parser and the in-memory evaluator: any text either parses or gets a SCIM error
//! with `invalidFilter`/`invalidPath`, and evaluating what parses never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_operator::scim::ScimType;
use scim_operator::scim::filter::{matches, parse_attr_path, parse_filter, parse_patch_path};
use scim_operator::scim::schema::{group_resource_type, user_resource_type};
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse_filter(text) {
        Ok(filter) => {
            let user = json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "id": "2819c223", "userName": "Ärzte@Example.com", "active": true, "title": "İstanbul ß",
                "name": {"givenName": "Émile", "familyName": "O'Neil"},
                "emails": [{"value": "a@example.com", "type": "work", "primary": true}, {"value": "B@x.test"}],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "7", "manager": {"value": "m"}},
                "meta": {"created": "2024-01-01T00:00:00.000Z", "lastModified": "2024-01-02T00:00:00.000Z"}
            });
            let group = json!({"displayName": "Ärzte", "members": [{"value": "2819c223", "type": "User"}]});
            let _ = matches(&filter, &user_resource_type(), &user);
            let _ = matches(&filter, &group_resource_type(), &group);
        }
        Err(e) => assert_eq!(e.status, 400, "{e:?}"),
    }
    if let Err(e) = parse_patch_path(text) {
        assert_eq!(e.status, 400, "{e:?}");
        assert!(matches!(e.scim_type, Some(ScimType::InvalidPath | ScimType::InvalidFilter)), "{e:?}");
    }
    if let Err(e) = parse_attr_path(text) {
        assert_eq!(e.status, 400, "{e:?}");
    }
});
