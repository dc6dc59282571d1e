//! The Datadog and Grafana profiles against replays of those services' documented exchanges (no
//! hosted service is reachable from tests). A local HTTP server plays the documented answers in
//! order and records every request that differs from the documented one; the client runs the
//! same fetch → decide → execute pipeline the operator runs.
//!
//! Sources:
//! - Datadog SCIM API, <https://docs.datadoghq.com/api/latest/scim/>: "List users" (filter
//!   `userName eq`), "Create user" (body: active, emails with type `work`, name.formatted,
//!   schemas, title, userName; answer with id and meta), "Patch group"; Datadog's API error
//!   form `{"errors": ["Bad Request"]}` of every endpoint's 400 and 429 answers.
//! - Grafana, "Configure SCIM provisioning" and "Manage users and teams with SCIM",
//!   <https://grafana.com/docs/grafana/latest/setup-grafana/configure-access/configure-scim-provisioning/>:
//!   the SCIM user's `externalId` is the SAML user id, and a user provisioned through SCIM cannot
//!   be deleted, only deactivated.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use scim_operator::client::plan::{self, DesiredGroup, DesiredUser, Notice, Target, UserRemoval};
use scim_operator::client::{ClientError, Credentials, Profile, ScimClient, TargetConfig};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// One documented exchange: the request the client must send and the documented answer.
struct Exchange {
    method: Method,
    path: &'static str,
    filter: Option<&'static str>,
    body: Option<Value>,
    status: u16,
    answer: Value,
}

fn exchange(method: Method, path: &'static str, body: Option<Value>, status: u16, answer: Value) -> Exchange {
    Exchange { method, path, filter: None, body, status, answer }
}

fn lookup(path: &'static str, filter: &'static str, found: Vec<Value>) -> Exchange {
    let answer = json!({"schemas": [LIST], "totalResults": found.len(), "startIndex": 1, "itemsPerPage": found.len(), "Resources": found});
    Exchange { method: Method::GET, path, filter: Some(filter), body: None, status: 200, answer }
}

#[derive(Default)]
struct Replay {
    script: Mutex<VecDeque<Exchange>>,
    mismatches: Mutex<Vec<String>>,
}

async fn play(State(replay): State<Arc<Replay>>, method: Method, uri: Uri, body: Bytes) -> (StatusCode, String) {
    let Some(want) = replay.script.lock().unwrap().pop_front() else {
        replay.mismatches.lock().unwrap().push(format!("unexpected request {method} {uri}"));
        return (StatusCode::INTERNAL_SERVER_ERROR, "{}".into());
    };
    let filter = uri.query().and_then(|q| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == "filter")
            .map(|(_, v)| v)
    });
    let sent: Option<Value> = if body.is_empty() { None } else { serde_json::from_slice(&body).ok() };
    let mut wrong = Vec::new();
    if method != want.method || uri.path() != want.path {
        wrong.push(format!("sent {method} {}, documented {} {}", uri.path(), want.method, want.path));
    }
    if want.filter.is_some() && filter.as_deref() != want.filter {
        wrong.push(format!("filter {filter:?}, documented {:?}", want.filter));
    }
    if sent != want.body {
        wrong.push(format!("body {sent:?}, documented {:?}", want.body));
    }
    replay.mismatches.lock().unwrap().extend(wrong);
    (StatusCode::from_u16(want.status).unwrap(), want.answer.to_string())
}

/// Serves `script` and returns a client of `profile` for it, and the replay to check after.
async fn replay(profile: Profile, prefix: &str, script: Vec<Exchange>) -> (ScimClient, Arc<Replay>) {
    let state = Arc::new(Replay { script: Mutex::new(script.into()), ..Default::default() });
    let app = Router::new().fallback(play).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = ScimClient::for_target(TargetConfig {
        base_url: format!("http://{addr}{prefix}"),
        profile,
        credentials: Credentials::bearer(Arc::new(|| Ok("documented-app-key".to_string()))),
        ca_bundle: None,
        timeout: Duration::from_secs(5),
        max_concurrency: 1,
        rate_limit: 100,
    })
    .unwrap();
    (client, state)
}

fn finished(replay: &Replay) {
    assert_eq!(*replay.mismatches.lock().unwrap(), Vec::<String>::new(), "requests differ from the documented ones");
    assert_eq!(replay.script.lock().unwrap().len(), 0, "documented exchanges left unplayed");
}

fn ada(external_id: Option<&str>) -> DesiredUser {
    DesiredUser {
        document: json!({"schemas": [USER], "userName": "ada@example.com", "displayName": "Ada",
            "name": {"givenName": "Ada", "familyName": "Lovelace"}, "title": "Countess",
            "emails": [{"value": "ada@example.com", "type": "home", "primary": true}]}),
        marker: Some("k8s:c1/team-a/uid-1".into()),
        external_id: external_id.map(str::to_string),
    }
}

async fn sync_user(c: &ScimClient, desired: &DesiredUser) -> plan::Plan {
    let caps = c.capabilities();
    let held = c.fetch_user("ada@example.com").await.expect("fetch");
    let plan = plan::user(Target::new(c.dialect(), &caps, None), desired, held.as_ref()).expect("plan");
    c.execute(&plan).await.expect("execute");
    plan
}

#[tokio::test]
async fn datadog_user_and_team_as_documented() {
    const USERS: &str = "/api/v2/scim/Users";
    // "Create user": the documented request model, and the documented answer.
    let sent = json!({"schemas": [USER], "userName": "ada@example.com", "name": {"formatted": "Ada Lovelace"},
        "title": "Countess", "emails": [{"value": "ada@example.com", "type": "work", "primary": true}], "active": true});
    let created = json!({"schemas": [USER], "id": "2d7e5c1a-0000-4000-8000-000000000001", "userName": "ada@example.com",
        "active": true, "title": "Countess", "name": {"formatted": "Ada Lovelace"},
        "emails": [{"primary": true, "type": "work", "value": "ada@example.com"}],
        "meta": {"created": "2024-10-17T12:53:35.793Z", "lastModified": "2024-10-19T12:53:35.793Z",
            "location": "https://api.datadoghq.com/api/v2/scim/Users/2d7e5c1a-0000-4000-8000-000000000001", "resourceType": "User"}});
    let (c, r) = replay(
        Profile::Datadog,
        "/api/v2/scim",
        vec![
            lookup(USERS, "userName eq \"ada@example.com\"", vec![]),
            exchange(Method::POST, USERS, Some(sent), 201, created.clone()),
            lookup(USERS, "userName eq \"ada@example.com\"", vec![created.clone()]),
            // Datadog's API error form.
            exchange(Method::POST, USERS, Some(json!({"schemas": [USER], "userName": "x"})), 400, json!({"errors": ["Bad Request"]})),
            exchange(Method::GET, "/api/v2/scim/Users/none", None, 429, json!({"errors": ["Too many requests"]})),
            // "Create group" with its members, then "Patch group" removing one.
            lookup("/api/v2/scim/Groups", "displayName eq \"Platform\"", vec![]),
            exchange(
                Method::POST,
                "/api/v2/scim/Groups",
                Some(json!({"schemas": [GROUP], "displayName": "Platform", "members": [{"value": "u1"}, {"value": "u2"}]})),
                201,
                json!({"schemas": [GROUP], "id": "g-1", "displayName": "Platform", "meta": {"resourceType": "Group"}}),
            ),
            exchange(
                Method::PATCH,
                "/api/v2/scim/Groups/g-1",
                Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "remove", "path": "members[value eq \"u2\"]"}]})),
                200,
                json!({"schemas": [GROUP], "id": "g-1", "displayName": "Platform"}),
            ),
        ],
    )
    .await;
    let first = sync_user(&c, &ada(None)).await;
    assert_eq!(first.notices, vec![Notice::AttributesNotKept(vec!["displayName".into()])]);
    let again = sync_user(&c, &ada(None)).await;
    assert_eq!(again.operations, vec![], "what Datadog answers compares equal: no request");
    let bad = c.create_user(&json!({"schemas": [USER], "userName": "x"}), true).await;
    assert!(
        matches!(&bad, Err(ClientError::BadRequest { detail, .. }) if detail == "Bad Request"),
        "Datadog's error form is read: {bad:?}"
    );
    assert!(
        matches!(c.get_user("none").await, Err(ClientError::Unavailable { message, .. }) if message.contains("Too many requests"))
    );
    let caps = c.capabilities();
    let target = Target::new(c.dialect(), &caps, None);
    let team = |members: &[&str]| DesiredGroup {
        display_name: "Platform".into(),
        marker: Some("k8s:c1/team-a/g".into()),
        members: members.iter().map(|m| m.to_string()).collect(),
        authoritative: true,
    };
    assert_eq!(c.fetch_group("Platform").await.unwrap(), None);
    let done = c.execute(&plan::group(target, &team(&["u1", "u2"]), None).unwrap()).await.unwrap();
    assert_eq!(done.created_group.as_deref(), Some("g-1"));
    let held = plan::HeldGroup {
        id: "g-1".into(),
        display_name: "Platform".into(),
        external_id: None,
        members: ["u1".to_string(), "u2".to_string()].into(),
    };
    c.execute(&plan::group(target, &team(&["u1"]), Some(&held)).unwrap()).await.unwrap();
    finished(&r);
}

#[tokio::test]
async fn grafana_user_with_its_saml_id_deactivated_never_deleted() {
    const USERS: &str = "/apis/scim.grafana.app/v0alpha1/namespaces/stacks-1/Users";
    let sent = json!({"schemas": [USER], "userName": "ada@example.com", "displayName": "Ada",
        "name": {"givenName": "Ada", "familyName": "Lovelace"}, "title": "Countess",
        "emails": [{"value": "ada@example.com", "type": "home", "primary": true}],
        "externalId": "00u1okta-saml", "active": true});
    let mut created = sent.clone();
    created["id"] = json!("u-1");
    created["meta"] = json!({"resourceType": "User"});
    let mut inactive = created.clone();
    inactive["active"] = json!(false);
    let (c, r) = replay(
        Profile::Grafana,
        "/apis/scim.grafana.app/v0alpha1/namespaces/stacks-1",
        vec![
            lookup(USERS, "userName eq \"ada@example.com\"", vec![]),
            exchange(Method::POST, USERS, Some(sent), 201, created.clone()),
            // A Delete policy: Grafana cannot delete a SCIM user, so it is deactivated.
            lookup(USERS, "userName eq \"ada@example.com\"", vec![created.clone()]),
            exchange(
                Method::PATCH,
                "/apis/scim.grafana.app/v0alpha1/namespaces/stacks-1/Users/u-1",
                Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "active", "value": false}]})),
                200,
                inactive,
            ),
        ],
    )
    .await;
    let caps = c.capabilities();
    let target = Target::new(c.dialect(), &caps, None);
    assert_eq!(
        plan::user(target, &ada(None), None),
        Err(plan::PlanError::ExternalIdRequired),
        "no request without the SAML user id"
    );
    sync_user(&c, &ada(Some("00u1okta-saml"))).await;
    let held = c.fetch_user("ada@example.com").await.unwrap().unwrap();
    let removal = plan::user_removal(target, UserRemoval::Delete, &held).unwrap();
    assert_eq!(removal.notices, vec![Notice::DeactivatedInsteadOfDeleted]);
    c.execute(&removal).await.unwrap();
    finished(&r);
}
