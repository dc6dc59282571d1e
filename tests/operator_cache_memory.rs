//! What the operator's ScimUser cache holds per user, counted by the allocator: the operator
//! watches every ScimUser of the cluster, so these bytes times 50,000 are most of its memory.
//! Pure (no cluster): the objects are decoded from the JSON the API server sends after the
//! operator's own writes, as the watch decodes them.

use scim_operator::operator::crd::ScimUser;
use scim_operator::operator::user_cache::CachedUser;
use serde_json::json;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

/// Net bytes allocated (allocations minus frees), as requested from the allocator.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// ScimUser `i` as the API server sends it once the operator made it Ready (finalizer, status
/// with its conditions, managedFields of the three writers), like the benchmark's users.
fn wire(i: usize) -> String {
    let id = format!("0193f0c2-7a1b-7c3d-8e4f-{i:012}");
    let t = "2026-12-06T10:00:00Z";
    json!({
        "apiVersion": "scim.dev/v1alpha1", "kind": "ScimUser",
        "metadata": {
            "name": format!("u{i:05}"), "namespace": "bench-operator",
            "uid": format!("6f1c2a4e-1b2c-4d3e-8f40-{i:012}"), "resourceVersion": format!("{}", 100_000 + i),
            "generation": 1, "creationTimestamp": t, "finalizers": ["scim.dev/cleanup"],
            "managedFields": [
                {"manager": "bench-kube-load", "operation": "Update", "apiVersion": "scim.dev/v1alpha1", "time": t,
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {".": {}, "f:userName": {}, "f:displayName": {}, "f:title": {}}}},
                {"manager": "scim-operator", "operation": "Update", "apiVersion": "scim.dev/v1alpha1", "time": t,
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:finalizers": {".": {}, "v:\"scim.dev/cleanup\"": {}}}}},
                {"manager": "scim-operator", "operation": "Update", "apiVersion": "scim.dev/v1alpha1", "time": t,
                 "fieldsType": "FieldsV1", "subresource": "status", "fieldsV1": {"f:status": {".": {}, "f:conditions": {}, "f:scimId": {}}}}
            ]
        },
        "spec": {"userName": format!("bench-{i:05}@example.com"), "displayName": format!("Bench User {i}"),
                 "title": "Engineer", "active": true, "deletionPolicy": "Deactivate", "adopt": false},
        "status": {
            "observedGeneration": 1, "scimId": id, "effectiveRoles": ["Standard"], "grantedRoles": [],
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Provisioned", "message": format!("provisioned as SCIM user {id}"),
                 "observedGeneration": 1, "lastTransitionTime": t},
                {"type": "Reconciling", "status": "False", "reason": "NotReconciling", "message": "", "observedGeneration": 1, "lastTransitionTime": t},
                {"type": "Stalled", "status": "False", "reason": "NotStalled", "message": "", "observedGeneration": 1, "lastTransitionTime": t}
            ]
        }
    })
    .to_string()
}

/// Bytes held per object after decoding `n` of them into `Arc<K>` (as a store keeps them),
/// with `then` applied to each.
fn held_per_object<K: serde::de::DeserializeOwned>(n: usize, then: impl Fn(&mut K)) -> isize {
    let docs: Vec<String> = (0..n).map(wire).collect();
    let before = LIVE.load(Ordering::SeqCst);
    let kept: Vec<Arc<K>> = docs
        .iter()
        .map(|d| {
            let mut o: K = serde_json::from_str(d).expect("a ScimUser document");
            then(&mut o);
            Arc::new(o)
        })
        .collect();
    let held = LIVE.load(Ordering::SeqCst) - before - (kept.capacity() * size_of::<Arc<K>>()) as isize;
    drop(kept);
    held / n as isize
}

#[test]
fn the_cache_keeps_a_fraction_of_each_scim_user() {
    let n = 2_000;
    // What the operator cached before: the whole object without managedFields.
    let full = held_per_object::<ScimUser>(n, |u| u.metadata.managed_fields = None);
    let cached = held_per_object::<CachedUser>(n, |_| {});
    println!("bytes held per ScimUser: whole object {full}, cached facts {cached}");
    assert!(full > 1_500, "the whole object is counted ({full} bytes)");
    // The facts: name, namespace, uid, resourceVersion, userName, scimId and the inline
    // metadata struct. Well under a third of the object, and under 700 bytes.
    assert!(cached * 3 < full, "cached {cached} bytes against {full}");
    assert!(cached < 700, "cached {cached} bytes per ScimUser");
}
