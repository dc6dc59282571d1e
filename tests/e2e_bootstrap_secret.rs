//! End to end on the real control plane (tests/env/control-plane.sh): the operator's bootstrap
//! key Secret. The chart renders no random value (Argo CD's `helm template` would make a new key
//! at every sync); the operator makes the Secret when it is missing, keeps it across restarts,
//! writes a new token once per new rotation value, and replicas starting together agree on one.
//!
//! Without a control plane (no KUBECONFIG) the test says so and skips, unless
//! `SCIM_E2E_REQUIRED` is set, as the project's test command does.

mod common;

use common::k8s::*;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use scim_operator::operator::bootstrap_secret::{Outcome, ROTATION_ANNOTATION, TOKEN_KEY, ensure};

fn token(s: &Secret) -> Vec<u8> {
    s.data.as_ref().and_then(|d| d.get(TOKEN_KEY)).map(|t| t.0.clone()).expect("the Secret holds a token")
}

async fn read(api: &Api<Secret>, name: &str) -> Secret {
    api.get(name).await.expect("the Secret exists")
}

#[tokio::test]
async fn the_operator_makes_the_key_secret_once_and_rotates_it_once_per_value() {
    if control_plane().is_none() {
        return;
    }
    let client = Client::try_default().await.expect("kubeconfig");
    let ns = namespace(&client, "bootkey").await;
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns);

    assert_eq!(ensure(&api, "key", "").await.expect("ensure"), Outcome::Created);
    let first = read(&api, "key").await;
    assert!(token(&first).len() >= 32, "a usable token");
    // A restart (or a second render of the chart, which no longer carries the key) changes nothing.
    assert_eq!(ensure(&api, "key", "").await.expect("ensure"), Outcome::Kept);
    assert_eq!(token(&read(&api, "key").await), token(&first), "a restart changed the key");

    // A new rotation value: one new token, recorded; the same value again keeps it.
    assert_eq!(ensure(&api, "key", "2").await.expect("ensure"), Outcome::Replaced);
    let second = read(&api, "key").await;
    assert_ne!(token(&second), token(&first), "rotation 2 kept the old key");
    assert_eq!(
        second.metadata.annotations.as_ref().and_then(|a| a.get(ROTATION_ANNOTATION)).map(String::as_str),
        Some("2")
    );
    assert_eq!(ensure(&api, "key", "2").await.expect("ensure"), Outcome::Kept);
    assert_eq!(token(&read(&api, "key").await), token(&second), "the same rotation made another key");

    // Replicas starting together: one makes the Secret, the others read it; one token in the end.
    let outcomes = futures::future::join_all((0..4).map(|_| {
        let api = api.clone();
        async move { ensure(&api, "raced", "").await.expect("ensure under a race") }
    }))
    .await;
    assert_eq!(outcomes.iter().filter(|o| **o == Outcome::Created).count(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Created | Outcome::Kept)), "{outcomes:?}");
    // And replicas rotating together write one new token, not one each.
    let before = token(&read(&api, "raced").await);
    let outcomes = futures::future::join_all((0..4).map(|_| {
        let api = api.clone();
        async move { ensure(&api, "raced", "3").await.expect("ensure under a race") }
    }))
    .await;
    assert_eq!(outcomes.iter().filter(|o| **o == Outcome::Replaced).count(), 1, "{outcomes:?}");
    assert_ne!(token(&read(&api, "raced").await), before);

    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client).delete(&ns, &Default::default()).await;
}
