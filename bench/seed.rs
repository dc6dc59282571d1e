//! Seeds a database for the benchmarks, straight through the store (minutes, not hours):
//! `cargo run --release --example bench-seed -- DB USERS GROUPS BIG_GROUP_MEMBERS OUT_DIR`.
//! Writes the user ids, the big and small group ids and a bearer key into OUT_DIR.

use scim_operator::clock::{Clock, SystemClock, format_time};
use scim_operator::provisioning::access::Permissions;
use scim_operator::provisioning::keys::{Secret, new_key_record};
use scim_operator::store::{KeyOwner, TeamRecord, UserRecord};
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 6, "usage: bench-seed DB USERS GROUPS BIG_GROUP_MEMBERS OUT_DIR");
    let (db, users, groups, big, out) =
        (&args[1], args[2].parse::<usize>()?, args[3].parse::<usize>()?, args[4].parse::<usize>()?, &args[5]);
    let store = scim_operator::store::open(db).await?;
    let now = format_time(SystemClock.now());
    let mut ids = Vec::with_capacity(users);
    for chunk in 0..users.div_ceil(5000) {
        let mut tx = store.begin_write().await?;
        for i in chunk * 5000..((chunk + 1) * 5000).min(users) {
            let id = scim_operator::provisioning::ids::new_id();
            let name = format!("user{i}@bench.test");
            let data = json!({"userName": name, "active": true, "displayName": format!("User {i}"),
                "emails": [{"value": name, "type": "work", "primary": true}]});
            tx.insert_user(&UserRecord {
                id: id.clone(),
                user_name: name,
                external_id: Some(format!("ext-{i}")),
                display_name: Some(format!("User {i}")),
                active: true,
                data: data.as_object().cloned().unwrap_or_default(),
                created: now.clone(),
                last_modified: now.clone(),
                version: 1,
            })
            .await?;
            ids.push(id);
        }
        tx.commit().await?;
    }
    let team = |name: String| TeamRecord {
        id: scim_operator::provisioning::ids::new_id(),
        handle: name.to_lowercase().replace(' ', "-"),
        data: json!({"displayName": name}).as_object().cloned().unwrap_or_default(),
        name,
        scim_id: Some(scim_operator::provisioning::ids::new_id()),
        external_id: None,
        declared_by: None,
        created: now.clone(),
        last_modified: now.clone(),
        version: 1,
    };
    let mut tx = store.begin_write().await?;
    let big_team = team("Big Group".into());
    tx.insert_team(&big_team).await?;
    tx.add_team_members(&big_team.id, &ids[..big.min(ids.len())], &now, "bench-seed").await?;
    let small_team = team("Small Group".into());
    tx.insert_team(&small_team).await?;
    tx.add_team_members(&small_team.id, &ids[..10.min(ids.len())], &now, "bench-seed").await?;
    for g in 0..groups {
        tx.insert_team(&team(format!("Group {g}"))).await?;
    }
    let secret = Secret::generate();
    let perms = Permissions::all();
    tx.insert_key(&new_key_record(&secret, "bench", KeyOwner::ServiceAccount, None, &perms, &now)).await?;
    tx.commit().await?;
    std::fs::create_dir_all(out)?;
    std::fs::write(format!("{out}/user_ids"), ids.join("\n"))?;
    std::fs::write(format!("{out}/big_group"), big_team.scim_id.unwrap_or_default())?;
    std::fs::write(format!("{out}/small_group"), small_team.scim_id.unwrap_or_default())?;
    std::fs::write(format!("{out}/token"), secret.expose())?;
    // Users in no group, to add to and remove from the groups (the load script needs 64 per
    // load-generator thread).
    let spares = &ids[big.min(ids.len()).max(10.min(ids.len()))..];
    anyhow::ensure!(spares.len() >= 128, "need at least 128 users outside the big group, have {}", spares.len());
    std::fs::write(format!("{out}/spare_users"), spares.join("\n"))?;
    println!("seeded {users} users, {groups} groups, a {big}-member group");
    Ok(())
}
