//! Replays of what Okta and Microsoft Entra ID send (tests/replays/*.json), against the server
//! over real HTTP. Each file is a sequence of requests with expected statuses and values;
//! `${name}` placeholders take values captured from earlier responses.

mod common;

use common::TestServer;
use reqwest::Method;
use serde_json::Value;
use std::collections::HashMap;

fn substitute(text: &str, vars: &HashMap<String, String>) -> String {
    let mut out = text.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("${{{k}}}"), v);
    }
    out
}

fn substitute_json(v: &Value, vars: &HashMap<String, String>) -> Value {
    match v {
        Value::String(s) => Value::String(substitute(s, vars)),
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute_json(x, vars)).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, x)| (substitute(k, vars), substitute_json(x, vars))).collect())
        }
        other => other.clone(),
    }
}

async fn replay(file: &std::path::Path) {
    let text = std::fs::read_to_string(file).expect("read replay");
    let scenario: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let name = scenario["name"].as_str().unwrap_or("?");
    let s = TestServer::start().await;
    let mut vars: HashMap<String, String> = HashMap::new();
    let steps = scenario["steps"].as_array().unwrap_or_else(|| panic!("{name}: no steps"));
    assert!(!steps.is_empty(), "{name}: empty scenario");
    for (i, step) in steps.iter().enumerate() {
        let method = Method::from_bytes(step["method"].as_str().expect("method").as_bytes()).expect("method");
        let path = substitute(step["path"].as_str().expect("path"), &vars);
        let body = step.get("body").filter(|b| !b.is_null()).map(|b| substitute_json(b, &vars));
        let (status, _, resp) = s.call(method.clone(), &path, body).await;
        let ctx = format!("{} step {i} ({method} {path})", file.display());
        if let Some(expected) = step.get("expect_status").and_then(Value::as_u64) {
            assert_eq!(status.as_u16() as u64, expected, "{ctx}: {resp}");
        }
        if let Some(captures) = step.get("capture").and_then(Value::as_object) {
            for (k, ptr) in captures {
                let v = resp
                    .pointer(ptr.as_str().unwrap_or(""))
                    .unwrap_or_else(|| panic!("{ctx}: nothing at {ptr} in {resp}"));
                let text = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                vars.insert(k.clone(), text);
            }
        }
        if let Some(expect) = step.get("expect").and_then(Value::as_object) {
            for (ptr, want) in expect {
                let want = substitute_json(want, &vars);
                assert_eq!(resp.pointer(ptr), Some(&want), "{ctx}: {ptr} in {resp}");
            }
        }
        if let Some(absent) = step.get("expect_absent").and_then(Value::as_array) {
            for ptr in absent {
                let p = ptr.as_str().unwrap_or("");
                assert!(resp.pointer(p).is_none(), "{ctx}: {p} should be absent in {resp}");
            }
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn okta_and_entra_replays_pass() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/replays");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(
        files.iter().any(|f| f.file_name().is_some_and(|n| n.to_string_lossy().starts_with("okta"))),
        "no Okta replays"
    );
    assert!(
        files.iter().any(|f| f.file_name().is_some_and(|n| n.to_string_lossy().starts_with("entra"))),
        "no Entra replays"
    );
    for f in &files {
        replay(f).await;
    }
}
