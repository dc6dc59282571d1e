//! The PATCH engine: any JSON body either applies or is refused with a 400; a refused PATCH
//! leaves the document untouched, and an applied one leaves a document that normalises again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_operator::scim::patch::{apply_patch, parse_patch_request};
use scim_operator::scim::resource::normalize;
use scim_operator::scim::schema::{group_resource_type, user_resource_type};
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else { return };
    let req = match parse_patch_request(&body) {
        Ok(r) => r,
        Err(e) => {
            assert_eq!(e.status, 400, "{e:?}");
            return;
        }
    };
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "userName": "bjensen", "active": true, "displayName": "Babs",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [{"value": "b@example.com", "type": "work", "primary": true}, {"value": "b@home.test", "type": "home"}],
        "phoneNumbers": [{"value": "555", "type": "work"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D", "manager": {"value": "x"}}
    });
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Ärzte"});
    for (rt, doc, external) in
        [(user_resource_type(), user, &["groups"][..]), (group_resource_type(), group, &["members"][..])]
    {
        let mut doc = normalize(&rt, &doc).expect("the seed document is valid");
        let before = doc.clone();
        match apply_patch(&rt, &mut doc, &req, external) {
            Ok(_) => {
                let mut again = doc.clone();
                again.insert("schemas".into(), json!([rt.schema.id]));
                if let Err(e) = normalize(&rt, &Value::Object(again)) {
                    assert_eq!(e.status, 400, "{e:?}");
                }
            }
            Err(e) => {
                assert_eq!(e.status, 400, "{e:?}");
                assert_eq!(doc, before, "a refused PATCH changed the document");
            }
        }
    }
});
