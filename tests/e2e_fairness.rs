//! End to end: one namespace's bulk run does not starve another. On the real control plane and
//! the real SCIM server, a namespace declares 1,200 ScimUsers at once while the operator may
//! send only 40 SCIM requests a second; a moment later another namespace declares five. The
//! five must be provisioned while most of the bulk is still waiting, not after all of it (the
//! reconcile queue is first come, first served; the operator's fair shares let the newcomer
//! through).
//!
//! Without a control plane (no KUBECONFIG) the test says so and skips, unless
//! `SCIM_E2E_REQUIRED` is set, as the project's test command does.

mod common;

use common::TestServer;
use common::k8s::*;
use futures::StreamExt;
use kube::api::{Api, PostParams};
use scim_operator::operator::crd::ScimUser;
use serde_json::json;
use std::time::Duration;

const BULK: usize = 1_200;
const SMALL: usize = 5;

async fn ready_count(api: &Api<ScimUser>) -> usize {
    let list = api.list(&Default::default()).await.expect("list ScimUsers");
    list.items.iter().filter(|u| user_ready(u, "True", "Provisioned")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_namespace_is_served_while_a_bulk_run_is_under_way() {
    if control_plane().is_none() {
        return;
    }
    let client = fresh_cluster().await;
    let bulk_ns = namespace(&client, "bulk").await;
    let small_ns = namespace(&client, "small").await;
    let scim = TestServer::start().await;
    let (_dir, token_file) = token_file(&scim.token);
    let mut args = operator_args(&scim.base, &token_file, &[], &bulk_ns, 3600);
    args.rate_limit = 40;
    args.concurrency = 4;
    let operator = start_operator_from(args);

    let bulk: Api<ScimUser> = Api::namespaced(client.clone(), &bulk_ns);
    let small: Api<ScimUser> = Api::namespaced(client.clone(), &small_ns);
    futures::stream::iter(0..BULK)
        .map(|i| {
            let bulk = bulk.clone();
            async move {
                let u = scim_user(&format!("b{i:04}"), json!({"userName": format!("b{i:04}@bulk.test")}));
                bulk.create(&PostParams::default(), &u).await.expect("create a bulk ScimUser");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    for i in 0..SMALL {
        let u = scim_user(&format!("s{i}"), json!({"userName": format!("s{i}@small.test")}));
        small.create(&PostParams::default(), &u).await.expect("create a small ScimUser");
    }
    wait_until_long("the small namespace's users are Ready", Duration::from_secs(300), || async {
        ready_count(&small).await == SMALL
    })
    .await;
    let bulk_done = ready_count(&bulk).await;
    eprintln!("small namespace Ready with {bulk_done} of {BULK} bulk users Ready");
    assert!(
        bulk_done < BULK / 2,
        "the small namespace waited behind the bulk run: {bulk_done} of {BULK} bulk users were Ready first"
    );
    operator.stop().await;
    forget_earlier_runs(&client).await;
    scim.stop().await;
}
