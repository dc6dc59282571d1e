//! Filter-to-SQL translation: every parsed filter translates for both dialects without panicking,
//! and the SQLite translation, with its parameters, runs on a real (temporary) SQLite store for
//! Users and Groups: the only error allowed is an invalid filter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_operator::scim::filter::parse_filter;
use scim_operator::scim::list::SortOrder;
use scim_operator::scim::schema::{group_resource_type, user_resource_type};
use scim_operator::store::{
    Dialect, ListSpec, ResourceTable, SharedStore, StoreError, TeamRecord, UserRecord, translate_filter,
};
use serde_json::json;
use std::sync::OnceLock;

struct Fixture {
    rt: tokio::runtime::Runtime,
    store: SharedStore,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let url = dir.path().join("fuzz.db").to_string_lossy().into_owned();
        let store = rt.block_on(async {
            let store = scim_operator::store::open(&url).await.expect("open store");
            seed(&store).await;
            store
        });
        Fixture { rt, store, _dir: dir }
    })
}

/// One user in one group, so that the SQL is evaluated against rows, not only prepared.
async fn seed(store: &SharedStore) {
    let data = json!({
        "userName": "Ärzte@Example.com", "active": true, "title": "İstanbul ß", "displayName": "Émile",
        "name": {"givenName": "e\u{301}mile", "familyName": "O'Neil"},
        "emails": [{"value": "a@example.com", "type": "work", "primary": true}, {"value": "B@x.test"}],
        "phoneNumbers": [{"value": "555", "type": "work"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "7", "manager": {"value": "m"}}
    });
    let user = UserRecord {
        id: "00000000-0000-4000-8000-000000000001".into(),
        user_name: "Ärzte@Example.com".into(),
        external_id: Some("ext-1".into()),
        display_name: Some("Émile".into()),
        active: true,
        data: data.as_object().expect("object").clone(),
        created: "2024-01-01T00:00:00.000Z".into(),
        last_modified: "2024-01-02T00:00:00.000Z".into(),
        version: 1,
    };
    let team = TeamRecord {
        id: "t1".into(),
        name: "Ärzte".into(),
        handle: "aerzte".into(),
        scim_id: Some("00000000-0000-4000-8000-0000000000g1".into()),
        external_id: Some("g-ext".into()),
        data: json!({"displayName": "Ärzte"}).as_object().expect("object").clone(),
        created: "2024-01-01T00:00:00.000Z".into(),
        last_modified: "2024-01-02T00:00:00.000Z".into(),
        version: 1,
    };
    let mut tx = store.begin_write().await.expect("write");
    tx.insert_user(&user).await.expect("user");
    tx.insert_team(&team).await.expect("team");
    tx.add_team_members(&team.id, &[user.id.clone()]).await.expect("member");
    tx.commit().await.expect("commit");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(filter) = parse_filter(text) else { return };
    let users = user_resource_type();
    let groups = group_resource_type();
    for dialect in [Dialect::Sqlite, Dialect::Postgres] {
        let _ = translate_filter(&filter, &users, ResourceTable::Users, dialect, 1);
        let _ = translate_filter(&filter, &groups, ResourceTable::Groups, dialect, 1);
    }
    let f = fixture();
    f.rt.block_on(async {
        for (rt, table) in [(&users, ResourceTable::Users), (&groups, ResourceTable::Groups)] {
            let spec = ListSpec {
                resource_type: rt,
                filter: Some(&filter),
                sort_by: None,
                sort_order: SortOrder::Ascending,
                offset: 0,
                limit: 10,
            };
            let mut tx = f.store.begin_read().await.expect("read handle");
            let result = match table {
                ResourceTable::Users => tx.list_users(&spec).await.map(|_| ()),
                ResourceTable::Groups => tx.list_groups(&spec).await.map(|_| ()),
            };
            match result {
                Ok(()) | Err(StoreError::InvalidFilter(_)) => {}
                Err(e) => panic!("filter {text:?} on {table:?}: {e}"),
            }
        }
    });
});
