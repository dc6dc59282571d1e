//! Resource parsing: any body (bytes, as the HTTP layer receives them) becomes a normalised
//! document or a 400, for every resource type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_operator::scim::resource::normalize;
use scim_operator::scim::schema::{group_resource_type, role_mapping_resource_type, user_resource_type};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else { return };
    for rt in [user_resource_type(), group_resource_type(), role_mapping_resource_type()] {
        match normalize(&rt, &body) {
            // What was accepted is accepted again, unchanged (normalising is idempotent).
            Ok(doc) => {
                let mut again = doc.clone();
                again.insert("schemas".into(), body.get("schemas").cloned().unwrap_or(Value::Null));
                if let Ok(twice) = normalize(&rt, &Value::Object(again)) {
                    assert_eq!(twice, doc, "normalising twice changed the document");
                }
            }
            Err(e) => assert_eq!(e.status, 400, "{e:?}"),
        }
    }
});
