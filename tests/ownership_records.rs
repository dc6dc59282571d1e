//! The operator's ownership records on a real control plane: two resources claiming one
//! userName on one target get one winner, who keeps winning; only the holder records an id or
//! releases; a released object can be claimed again; records are found by owner, and a team's
//! members' records by their owners in a few LISTs.

#[path = "common/k8s.rs"]
#[allow(dead_code)]
mod k8s;

use scim_operator::operator::ownership::{Holder, ObjectKey, Origin, OwnershipRecords, RecordOwner};

fn owner(ns: &str, uid: &str) -> RecordOwner {
    RecordOwner { namespace: ns.into(), name: "ada".into(), uid: uid.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_winner_per_object_and_target() {
    if k8s::control_plane().is_none() {
        return;
    }
    let client = kube::Client::try_default().await.unwrap();
    let ns = k8s::namespace(&client, "records").await;
    let records = OwnershipRecords::new(client, &ns);
    let target = format!("ClusterScimTarget/keycloak-{ns}");
    let ada = ObjectKey::user(&target, "Ada@Example.com");
    let (a, b) = (owner("team-a", "uid-a"), owner("team-b", "uid-b"));

    // Two claims at once: exactly one wins.
    let (ra, rb) = tokio::join!(records.claim(&ada, &a, Origin::Created), records.claim(&ada, &b, Origin::Created));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let (winner, loser) = match (&ra, &rb) {
        (Holder::Claimant(_), Holder::Other(o)) => {
            assert_eq!(o, &a);
            (a.clone(), b.clone())
        }
        (Holder::Other(o), Holder::Claimant(_)) => {
            assert_eq!(o, &b);
            (b.clone(), a.clone())
        }
        other => panic!("not one winner: {other:?}"),
    };
    // No flip-flop: claiming again, in any order and with another case of the userName, changes nothing.
    for _ in 0..2 {
        let again = ObjectKey::user(&target, "ada@example.com");
        assert!(
            matches!(records.claim(&again, &loser, Origin::Adopted).await.unwrap(), Holder::Other(o) if o == winner)
        );
        assert!(matches!(records.claim(&again, &winner, Origin::Created).await.unwrap(), Holder::Claimant(_)));
    }
    // Only the holder records the id and releases.
    assert!(!records.set_remote_id(&ada, &loser, "u-x").await.unwrap());
    assert!(records.set_remote_id(&ada, &winner, "u-1").await.unwrap());
    assert_eq!(records.get(&ada).await.unwrap().unwrap().remote_id.as_deref(), Some("u-1"));
    assert_eq!(records.owned_by(&winner.uid).await.unwrap().len(), 1);
    assert!(records.owned_by(&loser.uid).await.unwrap().is_empty());
    assert!(!records.release(&ada, &loser).await.unwrap(), "the loser cannot release");
    assert!(records.get(&ada).await.unwrap().is_some());
    assert!(records.release(&ada, &winner).await.unwrap());
    assert_eq!(records.get(&ada).await.unwrap(), None);
    // Released: the other may claim it now (adopting what the target still holds).
    assert!(
        matches!(records.claim(&ada, &loser, Origin::Adopted).await.unwrap(), Holder::Claimant(r) if r.origin == Origin::Adopted)
    );
    // Another target is another object.
    let elsewhere = ObjectKey::user("ClusterScimTarget/datadog", "ada@example.com");
    assert!(matches!(records.claim(&elsewhere, &winner, Origin::Created).await.unwrap(), Holder::Claimant(_)));
}

/// A team's members' records on one target, read by owner uid: each member gets its own record
/// and only that (not another target's, not one another resource holds); more owners than one
/// LIST selects are read in several.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_records_by_owner() {
    if k8s::control_plane().is_none() {
        return;
    }
    let client = kube::Client::try_default().await.unwrap();
    let ns = k8s::namespace(&client, "records-held").await;
    let records = OwnershipRecords::new(client, &ns);
    let target = format!("ClusterScimTarget/scim2-{ns}");
    let other_target = format!("ClusterScimTarget/other-{ns}");
    // 130 members: more than one LIST's worth of owners.
    let uids: Vec<String> = (0..130).map(|i| format!("uid-{i}")).collect();
    for (i, uid) in uids.iter().enumerate() {
        let key = ObjectKey::user(&target, &format!("user-{i}@example.com"));
        assert!(matches!(
            records.claim(&key, &owner("team", uid), Origin::Created).await.unwrap(),
            Holder::Claimant(_)
        ));
        if i % 2 == 0 {
            assert!(records.set_remote_id(&key, &owner("team", uid), &format!("id-{i}")).await.unwrap());
        }
    }
    // uid-0 also holds a user on another target, and the userName "taken" is another's.
    let elsewhere = ObjectKey::user(&other_target, "user-0@example.com");
    records.claim(&elsewhere, &owner("team", "uid-0"), Origin::Created).await.unwrap();
    let taken = ObjectKey::user(&target, "taken@example.com");
    records.claim(&taken, &owner("team", "uid-other"), Origin::Created).await.unwrap();

    let mut wanted: Vec<(ObjectKey, &str)> = uids
        .iter()
        .enumerate()
        .map(|(i, uid)| (ObjectKey::user(&target, &format!("USER-{i}@example.com")), uid.as_str()))
        .collect();
    wanted.push((taken.clone(), "uid-7"));
    wanted.push((ObjectKey::user(&target, "nobody@example.com"), "uid-8"));
    wanted.push((ObjectKey::user(&other_target, "user-1@example.com"), "uid-1"));
    let held = records.held_by(&wanted).await.unwrap();
    assert_eq!(held.len(), wanted.len());
    for (i, record) in held.iter().take(uids.len()).enumerate() {
        let record = record.as_ref().unwrap_or_else(|| panic!("member {i} has its record"));
        assert_eq!(record.owner.uid, uids[i]);
        assert_eq!(record.object, ObjectKey::user(&target, &format!("user-{i}@example.com")));
        let want = (i % 2 == 0).then(|| format!("id-{i}"));
        assert_eq!(record.remote_id, want, "member {i}");
    }
    assert_eq!(held[uids.len()], None, "a record another resource holds is not the member's");
    assert_eq!(held[uids.len() + 1], None, "no record");
    assert_eq!(held[uids.len() + 2], None, "uid-1 holds nothing on the other target");
    assert!(records.held_by(&[]).await.unwrap().is_empty());
}
