//! The operator's SCIM client against another RFC 7644 implementation: the Python
//! `scim2-server` from PyPI (in the pinned tools environment). Users and groups must work
//! there as they do against this project's server.

use scim_operator::client::{ClientConfig, ClientError, ScimClient};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_works_against_the_python_reference_server() {
    let Some(bin) = std::env::var_os("SCIM_CONFORMANCE_BIN") else {
        assert!(std::env::var_os("SCIM_CONFORMANCE_REQUIRED").is_none(), "SCIM_CONFORMANCE_BIN is required");
        eprintln!("SKIPPED: SCIM_CONFORMANCE_BIN is not set (run tests/env/python-tools.sh)");
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _peer = Peer(
        Command::new(std::path::Path::new(&bin).join("scim2-server"))
            .args(["--hostname", "127.0.0.1", "--port", &port.to_string(), "--bearer-token", "peer-token"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start scim2-server"),
    );
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "peer-token\n").unwrap();
    let client = ScimClient::new(ClientConfig {
        base_url: format!("http://127.0.0.1:{port}"),
        token_file,
        timeout: Duration::from_secs(10),
        max_concurrency: 4,
        rate_limit: 100,
    })
    .unwrap();
    // Wait for the peer to listen.
    let mut up = false;
    for _ in 0..100 {
        if client.find_user_by_name("nobody").await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "scim2-server did not start");

    let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "peer.user", "externalId": "k8s:1", "active": true});
    let created = client.create_user(&user, true).await.unwrap();
    let id = created.id.clone();
    let found = client.find_user_by_name("peer.user").await.unwrap().expect("found by userName");
    assert_eq!(found.id, id);
    assert!(matches!(client.create_user(&user, true).await, Err(ClientError::Conflict(_))), "uniqueness is a conflict");
    let mut replaced = user.clone();
    replaced["displayName"] = json!("Peer User");
    assert_eq!(client.replace_user(&id, &replaced).await.unwrap().body["displayName"], "Peer User");
    let read = client.get_user(&id).await.unwrap();
    client.set_active(&id, false, read.version.as_deref()).await.unwrap();
    assert_eq!(client.get_user(&id).await.unwrap().body["active"], false);

    let other = client
        .create_user(&json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "peer.two"}), true)
        .await
        .unwrap();
    let other_id = other.id.clone();
    let group = client.create_group("Peers", "k8s:g", std::slice::from_ref(&id), false, None).await.unwrap();
    let gid = group.id.clone();
    client.change_members(&gid, std::slice::from_ref(&other_id), std::slice::from_ref(&id), None).await.unwrap();
    assert_eq!(client.group_members(&gid).await.unwrap(), vec![other_id.clone()]);
    let rename = json!({"op": "replace", "path": "displayName", "value": "Peers 2"});
    client.patch_group(&gid, &[rename], None, None).await.unwrap();
    assert_eq!(client.find_group_by_name("Peers 2").await.unwrap().unwrap().id, gid);
    // This server's extensions are absent there: effective roles degrade to "unknown".
    assert_eq!(client.effective_roles(&id).await.unwrap(), None);
    client.delete_group(&gid, None).await.unwrap();
    client.delete_user(&id, None).await.unwrap();
    assert!(matches!(client.get_user(&id).await, Err(ClientError::NotFound)));
}
