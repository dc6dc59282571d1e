//! The store translates filters into SQL; the in-memory evaluator states the semantics. This
//! property test runs generated filters both ways over the same users and demands the same
//! answer, on the real database (SQLite, or PostgreSQL when `SCIM_TEST_DATABASE_URL` is set).

mod common;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use scim_operator::provisioning::view::user_json;
use scim_operator::scim::filter::{Filter, matches, parse_filter};
use scim_operator::scim::list::SortOrder;
use scim_operator::scim::schema::user_resource_type;
use scim_operator::store::{ListSpec, SharedStore, UserRecord};
use serde_json::{Value, json};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn users() -> Vec<Value> {
    vec![
        json!({"userName": "alice@example.com", "displayName": "Alice A", "active": true, "title": "Engineer",
               "externalId": "A-1", "name": {"givenName": "Alice", "familyName": "Anders"},
               "emails": [{"value": "alice@example.com", "type": "work", "primary": true}, {"value": "alice@home.test", "type": "home"}],
               ENTERPRISE: {"employeeNumber": "100", "department": "R&D"}}),
        json!({"userName": "Bob", "displayName": "bob b", "active": false, "externalId": "b-2",
               "emails": [{"value": "BOB@EXAMPLE.COM", "type": "work"}], "name": {"givenName": "Bob"}}),
        json!({"userName": "carol", "active": true, "title": "engineer", "nickName": "",
               ENTERPRISE: {"employeeNumber": "200"}}),
        json!({"userName": "dave%_x", "displayName": "Dave", "active": true, "emails": [{"value": "dave@corp.test"}],
               "name": {"familyName": "O'Neil"}}),
        json!({"userName": "Émile", "active": true, "title": "Engineer II", "externalId": "A-10"}),
        // Non-ASCII case pairs: SQL lower() would disagree with the evaluator on every one.
        json!({"userName": "ÄRZTE", "displayName": "Straße", "active": true, "title": "İstanbul",
               "name": {"givenName": "e\u{301}mile", "familyName": "ΣΊΣΥΦΟΣ"},
               "emails": [{"value": "Ärzte@Klinik.DE", "type": "work"}], "nickName": "😀 Smile"}),
        json!({"userName": "ärzte2", "displayName": "STRASSE", "active": false, "title": "ıspanak",
               "name": {"givenName": "Émile", "familyName": "σίσυφος"}, "externalId": "Ä-1",
               "emails": [{"value": "x@ÄRZTE.de", "type": "Home"}], "nickName": "ǅemal"}),
    ]
}

fn path() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "userName",
        "USERNAME",
        "displayName",
        "title",
        "active",
        "externalId",
        "nickName",
        "emails",
        "emails.value",
        "emails.type",
        "emails.primary",
        "name.givenName",
        "name.familyName",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
        "employeeNumber",
        "department",
        "meta.created",
        "id",
        "notAnAttribute",
    ])
}

fn literal() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "alice",
            "ALICE@EXAMPLE.COM",
            "a",
            "e",
            "example",
            ".com",
            "bob",
            "Engineer",
            "engineer",
            "work",
            "home",
            "A-1",
            "a-1",
            "100",
            "2",
            "R&D",
            "%",
            "_",
            "O'Neil",
            "Émile",
            "",
            "dave%_x",
            "Anders",
            "ärzte",
            "ÄRZTE",
            "Ärzte@klinik.de",
            "straße",
            "STRASSE",
            "ss",
            "ß",
            "ẞ",
            "İ",
            "i\u{307}",
            "istanbul",
            "ı",
            "I",
            "😀",
            "😀 smile",
            "e\u{301}",
            "é",
            "émile",
            "Σ",
            "σίσυφος",
            "ς",
            "ǆ",
            "Ä-1",
            "ä-1",
            "\u{301}",
        ])
        .prop_map(|s| serde_json::to_string(s).unwrap_or_default()),
        Just("true".to_string()),
        Just("false".to_string()),
        Just("null".to_string()),
        Just("\"2000-01-01T00:00:00Z\"".to_string()),
    ]
}

fn op() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"])
}

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        (path(), op(), literal()).prop_map(|(p, o, v)| format!("{p} {o} {v}")),
        path().prop_map(|p| format!("{p} pr")),
        (prop::sample::select(vec!["type", "value", "primary"]), op(), literal())
            .prop_map(|(s, o, v)| format!("emails[{s} {o} {v}]")),
    ]
}

fn filter_text() -> impl Strategy<Value = String> {
    leaf().prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) and ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} or {b}")),
            inner.prop_map(|a| format!("not ({a})")),
        ]
    })
}

async fn seed(store: &SharedStore) -> Vec<(String, Value)> {
    let rt = user_resource_type();
    let mut out = Vec::new();
    let mut tx = store.begin_write().await.unwrap();
    for (i, data) in users().into_iter().enumerate() {
        let doc = data.as_object().unwrap().clone();
        let rec = UserRecord {
            id: format!("00000000-0000-0000-0000-0000000000{i:02}"),
            user_name: doc["userName"].as_str().unwrap().to_string(),
            external_id: doc.get("externalId").and_then(Value::as_str).map(str::to_string),
            display_name: doc.get("displayName").and_then(Value::as_str).map(str::to_string),
            active: doc["active"].as_bool().unwrap(),
            data: doc,
            created: format!("2024-0{}-01T00:00:00.000Z", i + 1),
            last_modified: "2024-06-01T00:00:00.000Z".into(),
            version: 1,
        };
        tx.insert_user(&rec).await.unwrap();
        let rendered = Value::Object(user_json(&rec, &[], "http://x/scim/v2"));
        assert!(matches(&parse_filter("userName pr").unwrap(), &rt, &rendered));
        out.push((rec.user_name.clone(), rendered));
    }
    tx.commit().await.unwrap();
    out
}

async fn sql_names(store: &SharedStore, filter: &Filter) -> Result<Vec<String>, String> {
    let rt = user_resource_type();
    let spec = ListSpec {
        resource_type: &rt,
        filter: Some(filter),
        sort_by: None,
        sort_order: SortOrder::Ascending,
        offset: 0,
        limit: 100,
    };
    let mut tx = store.begin_read().await.map_err(|e| e.to_string())?;
    let (total, rows) = tx.list_users(&spec).await.map_err(|e| e.to_string())?;
    assert_eq!(total as usize, rows.len());
    let mut names: Vec<String> = rows.into_iter().map(|r| r.user_name).collect();
    names.sort();
    Ok(names)
}

#[test]
fn sql_filters_agree_with_the_evaluator() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (store, users, _dir) = rt.block_on(async {
        let (url, dir) = common::fresh_database().await;
        let store = scim_operator::store::open(&url).await.unwrap();
        let users = seed(&store).await;
        (store, users, dir)
    });
    let schema = user_resource_type();
    // Deterministic by default so the test command is repeatable; SCIM_ORACLE_CASES and a random
    // seed (SCIM_ORACLE_RANDOM=1) explore further.
    let cases = std::env::var("SCIM_ORACLE_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(600);
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = if std::env::var_os("SCIM_ORACLE_RANDOM").is_some() {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(
            config,
            proptest::test_runner::TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
        )
    };
    let compared = std::cell::Cell::new(0usize);
    let result = runner.run(&filter_text(), |text| {
        let Ok(filter) = parse_filter(&text) else { return Ok(()) };
        let mut expected: Vec<String> =
            users.iter().filter(|(_, u)| matches(&filter, &schema, u)).map(|(n, _)| n.clone()).collect();
        expected.sort();
        match rt.block_on(sql_names(&store, &filter)) {
            Ok(actual) => {
                prop_assert_eq!(&actual, &expected, "filter: {}", text);
                compared.set(compared.get() + 1);
            }
            // The store refuses comparisons that make no sense for the attribute's type (e.g.
            // `co` on a boolean) with a filter error; the evaluator merely finds no match there.
            Err(e) => prop_assert!(e.contains("invalid filter"), "filter {}: {}", text, e),
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(compared.get() > 200, "too few filters compared: {}", compared.get());
}
