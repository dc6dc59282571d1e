//! Filter-to-SQL translation: every parsed filter translates for both dialects without panicking,
//! and the SQLite translation, with its parameters, runs on a real (temporary) SQLite store for
//! Users and Groups: the only error allowed is an invalid filter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_operator::scim::filter::parse_filter;
use scim_operator::scim::list::SortOrder;
use scim_operator::scim::schema::{group_resource_type, user_resource_type};
use scim_operator::store::{Dialect, ListSpec, ResourceTable, SharedStore, StoreError, translate_filter};
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
        let store = rt.block_on(scim_operator::store::open(&url)).expect("open store");
        Fixture { rt, store, _dir: dir }
    })
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
