//! The SCIM 2.0 API over real HTTP on loopback, on a real database.

mod common;

use common::{TestServer, assert_scim_error};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

#[tokio::test]
async fn every_request_needs_a_valid_key() {
    let s = TestServer::start().await;
    let url = format!("{}/Users", s.base);
    for auth in [None, Some("Basic dXNlcjpwYXNz"), Some("Bearer"), Some("Bearer not-a-key"), Some("garbage")] {
        let mut req = s.http.get(&url);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "auth {auth:?}");
        assert!(resp.headers().get("www-authenticate").is_some());
        let body: Value = resp.json().await.unwrap();
        assert_scim_error(&body, 401, None);
    }
    let (status, body) = s.get("/Users").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Discovery needs the key too.
    let resp = s.http.get(format!("{}/ServiceProviderConfig", s.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn discovery_advertises_what_is_supported() {
    let s = TestServer::start().await;
    let (status, headers, spc) = s.call(Method::GET, "/ServiceProviderConfig", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("application/scim+json"));
    assert_eq!(spc["patch"]["supported"], true);
    assert_eq!(spc["bulk"]["supported"], false);
    assert_eq!(spc["filter"]["supported"], true);
    assert_eq!(spc["sort"]["supported"], true);
    assert_eq!(spc["etag"]["supported"], true);
    assert_eq!(spc["changePassword"]["supported"], false);
    assert!(spc["filter"]["maxResults"].as_u64().unwrap() >= 100);

    let (status, schemas) = s.get("/Schemas").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = schemas["Resources"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    for id in [USER, ENTERPRISE, GROUP] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    let (status, user_schema) = s.get(&format!("/Schemas/{USER}")).await;
    assert_eq!(status, StatusCode::OK);
    let user_name = user_schema["attributes"].as_array().unwrap().iter().find(|a| a["name"] == "userName").unwrap();
    assert_eq!(user_name["uniqueness"], "server");
    assert_eq!(user_name["required"], true);

    let (status, types) = s.get("/ResourceTypes").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(types["totalResults"], 3);
    let (status, user_type) = s.get("/ResourceTypes/User").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user_type["endpoint"], "/Users");
    assert_eq!(user_type["schemaExtensions"][0]["schema"], ENTERPRISE);
    let (status, body) = s.get("/ResourceTypes/Nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_scim_error(&body, 404, None);
}

#[tokio::test]
async fn user_lifecycle_with_etags_and_locations() {
    let s = TestServer::start().await;
    let (status, headers, created) = s
        .call(
            Method::POST,
            "/Users",
            Some(json!({
                "schemas": [USER, ENTERPRISE],
                "userName": "Barbara.Jensen@example.com",
                "externalId": "bjensen",
                "name": {"givenName": "Barbara", "familyName": "Jensen"},
                "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}],
                "password": "t1meMa$heen",
                ENTERPRISE: {"employeeNumber": "701984", "department": "Tour Operations"}
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert!(created.get("password").is_none(), "password must never be returned");
    assert_eq!(created["active"], true);
    assert_eq!(created["meta"]["resourceType"], "User");
    assert_eq!(created[ENTERPRISE]["employeeNumber"], "701984");
    let location = headers["location"].to_str().unwrap();
    assert!(location.ends_with(&format!("/scim/v2/Users/{id}")), "{location}");
    assert_eq!(created["meta"]["location"], location);
    let etag = headers["etag"].to_str().unwrap().to_string();
    assert_eq!(created["meta"]["version"], etag);

    // The password is not stored either.
    let mut tx = s.store.begin_read().await.unwrap();
    let rec = tx.user(&id).await.unwrap().unwrap();
    assert!(!rec.data.contains_key("password"));
    drop(tx);

    // userName is unique without regard to case.
    let (status, body) = s.post("/Users", json!({"schemas": [USER], "userName": "barbara.jensen@EXAMPLE.com"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_scim_error(&body, 409, Some("uniqueness"));

    // If-None-Match with the current version: 304; If-Match with another: 412.
    let resp = s
        .http
        .get(format!("{}/Users/{id}", s.base))
        .bearer_auth(&s.token)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    let resp = s
        .http
        .put(format!("{}/Users/{id}", s.base))
        .bearer_auth(&s.token)
        .header("if-match", "W/\"999\"")
        .json(&json!({"schemas": [USER], "userName": "bjensen"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);

    // PUT replaces: attributes left out are gone.
    let resp = s
        .http
        .put(format!("{}/Users/{id}", s.base))
        .bearer_auth(&s.token)
        .header("if-match", &etag)
        .json(&json!({"schemas": [USER], "userName": "bjensen@example.com", "displayName": "Babs", "active": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let new_etag = resp.headers()["etag"].to_str().unwrap().to_string();
    assert_ne!(new_etag, etag);
    let replaced: Value = resp.json().await.unwrap();
    assert_eq!(replaced["displayName"], "Babs");
    assert!(replaced.get("name").is_none());
    assert!(replaced.get(ENTERPRISE).is_none());
    assert_eq!(replaced["meta"]["created"], created["meta"]["created"]);

    let (status, _) = s.delete(&format!("/Users/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = s.get(&format!("/Users/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_scim_error(&body, 404, None);
    // The name is free again.
    s.create_user("bjensen@example.com").await;
}

#[tokio::test]
async fn unknown_ids_of_any_shape_are_404_with_a_scim_body() {
    let s = TestServer::start().await;
    for id in ["nope", "00000000-0000-0000-0000-000000000000", "%27%20OR%201%3D1", "a.b", "12345678901234567890"] {
        for path in [format!("/Users/{id}"), format!("/Groups/{id}")] {
            let (status, body) = s.get(&path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_scim_error(&body, 404, None);
            let (status, _) = s.delete(&path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            let (status, _) =
                s.patch(&path, patch(json!([{"op": "replace", "path": "displayName", "value": "x"}]))).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        }
    }
}

#[tokio::test]
async fn bad_bodies_get_the_right_scim_type() {
    let s = TestServer::start().await;
    let resp = s
        .http
        .post(format!("{}/Users", s.base))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_scim_error(&resp.json::<Value>().await.unwrap(), 400, Some("invalidSyntax"));

    let (status, body) = s.post("/Users", json!({"schemas": [USER]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_scim_error(&body, 400, Some("invalidValue"));

    let (status, body) = s.post("/Users", json!({"userName": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "schemas missing: {body}");
    assert_scim_error(&body, 400, Some("invalidSyntax"));

    let (status, body) = s.get("/Users?filter=userName%20eq").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_scim_error(&body, 400, Some("invalidFilter"));

    let id = s.create_user("alice").await;
    let (status, body) = s.patch(&format!("/Users/{id}"), json!({"Operations": []})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_scim_error(&body, 400, Some("invalidSyntax"));
    let (status, body) = s.patch(&format!("/Users/{id}"), patch(json!([{"op": "remove"}]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_scim_error(&body, 400, Some("noTarget"));
    let (status, body) =
        s.patch(&format!("/Users/{id}"), patch(json!([{"op": "add", "path": "emails[type eq", "value": "x"}]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_scim_error(&body, 400, Some("invalidPath"));
    let (status, body) =
        s.patch(&format!("/Users/{id}"), patch(json!([{"op": "replace", "path": "id", "value": "x"}]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_scim_error(&body, 400, Some("mutability"));

    // Oversized bodies are refused before they are read.
    let big = "x".repeat(2 << 20);
    let (status, body) = s.post("/Users", json!({"schemas": [USER], "userName": big})).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_scim_error(&body, 413, None);
}

#[tokio::test]
async fn filters_run_with_scim_semantics() {
    let s = TestServer::start().await;
    for (name, email_type, emp) in
        [("alice@example.com", "work", "1"), ("Bob@Example.com", "home", "2"), ("carol@corp.test", "work", "3")]
    {
        let (status, body) = s
            .post(
                "/Users",
                json!({"schemas": [USER, ENTERPRISE], "userName": name, "externalId": name.to_uppercase(),
                       "emails": [{"value": name, "type": email_type}], ENTERPRISE: {"employeeNumber": emp}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let names = |b: &Value| -> Vec<String> {
        let mut v: Vec<String> =
            b["Resources"].as_array().unwrap().iter().map(|r| r["userName"].as_str().unwrap().to_string()).collect();
        v.sort();
        v
    };
    let cases: &[(&str, &[&str])] = &[
        (r#"userName eq "BOB@example.COM""#, &["Bob@Example.com"]),
        (r#"UserName Eq "alice@example.com""#, &["alice@example.com"]),
        (r#"userName sw "a""#, &["alice@example.com"]),
        (r#"userName ew "example.com""#, &["Bob@Example.com", "alice@example.com"]),
        (r#"userName co "CORP""#, &["carol@corp.test"]),
        (r#"externalId eq "ALICE@EXAMPLE.COM""#, &["alice@example.com"]),
        (r#"externalId eq "alice@example.com""#, &[]),
        (r#"emails[type eq "work"]"#, &["alice@example.com", "carol@corp.test"]),
        (r#"emails[type eq "work"].value eq "carol@corp.test""#, &["carol@corp.test"]),
        (r#"emails.type eq "home" or userName sw "c""#, &["Bob@Example.com", "carol@corp.test"]),
        (r#"not (emails.type eq "home") and userName pr"#, &["alice@example.com", "carol@corp.test"]),
        (r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "2""#, &["Bob@Example.com"]),
        (r#"(userName sw "a" or userName sw "b") and emails co "example""#, &["Bob@Example.com", "alice@example.com"]),
        (
            r#"meta.lastModified gt "2000-01-01T00:00:00Z""#,
            &["Bob@Example.com", "alice@example.com", "carol@corp.test"],
        ),
        (r#"title pr"#, &[]),
    ];
    for (filter, expected) in cases {
        let q = serde_urlencoded::to_string([("filter", *filter)]).unwrap();
        let (status, body) = s.get(&format!("/Users?{q}")).await;
        assert_eq!(status, StatusCode::OK, "{filter}: {body}");
        assert_eq!(names(&body), *expected, "{filter}");
        assert_eq!(body["totalResults"], expected.len(), "{filter}");
    }
}

#[tokio::test]
async fn pages_are_stable_and_sortable() {
    let s = TestServer::start().await;
    for i in 0..25 {
        s.create_user(&format!("user{i:02}")).await;
    }
    let mut seen = Vec::new();
    for start in [1, 11, 21] {
        let (status, body) = s.get(&format!("/Users?startIndex={start}&count=10")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["totalResults"], 25);
        assert_eq!(body["startIndex"], start);
        let page = body["Resources"].as_array().unwrap();
        assert_eq!(body["itemsPerPage"], page.len());
        seen.extend(page.iter().map(|r| r["userName"].as_str().unwrap().to_string()));
    }
    assert_eq!(seen.len(), 25);
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 25, "pages overlap");

    let (_, body) = s.get("/Users?sortBy=userName&sortOrder=descending&count=3").await;
    let first: Vec<&str> =
        body["Resources"].as_array().unwrap().iter().map(|r| r["userName"].as_str().unwrap()).collect();
    assert_eq!(first, ["user24", "user23", "user22"]);
    let (_, body) = s.get("/Users?count=0").await;
    assert_eq!(body["totalResults"], 25);
    assert_eq!(body["Resources"].as_array().map(Vec::len).unwrap_or(0), 0);
    let (_, body) = s.get("/Users?startIndex=0&count=-4").await;
    assert_eq!(body["startIndex"], 1);
}

#[tokio::test]
async fn attributes_and_excluded_attributes_shape_responses() {
    let s = TestServer::start().await;
    let (_, created) = s
        .post("/Users", json!({"schemas": [USER], "userName": "dora", "displayName": "Dora", "title": "Explorer"}))
        .await;
    let id = created["id"].as_str().unwrap();
    let (_, only) = s.get(&format!("/Users/{id}?attributes=displayName")).await;
    assert_eq!(only["displayName"], "Dora");
    assert_eq!(only["id"], id);
    assert!(only.get("title").is_none());
    let (_, without) = s.get(&format!("/Users/{id}?excludedAttributes=title,meta")).await;
    assert!(without.get("title").is_none());
    assert_eq!(without["userName"], "dora");
    let (status, body) = s
        .post(
            "/Users/.search",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                                       "filter": "userName eq \"dora\"", "attributes": ["title"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["totalResults"], 1);
    assert_eq!(body["Resources"][0]["title"], "Explorer");
    assert!(body["Resources"][0].get("displayName").is_none());
}

#[tokio::test]
async fn patch_follows_what_identity_providers_send() {
    let s = TestServer::start().await;
    let (_, created) = s
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "erin", "emails": [{"value": "e@x.test", "type": "work"}]}),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/Users/{id}");

    // Op names in any case, booleans as strings, dotted keys without a path, read-only id ignored.
    let (status, body) = s
        .patch(
            &path,
            patch(json!([
                {"op": "Replace", "value": {"active": "False", "name.givenName": "Erin", "id": "ignored"}},
                {"op": "Add", "path": "emails[type eq \"work\"].display", "value": "Work"},
                {"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Ops"}
            ])),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], false);
    assert_eq!(body["name"]["givenName"], "Erin");
    assert_eq!(body["id"], id);
    assert_eq!(body["emails"][0]["display"], "Work");
    assert_eq!(body[ENTERPRISE]["department"], "Ops");
    let version = body["meta"]["version"].clone();

    // Adding what is already there changes nothing, not even the version.
    let (status, again) = s
        .patch(&path, patch(json!([{"op": "add", "path": "emails", "value": [{"value": "e@x.test", "type": "work", "display": "Work"}]}])))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["emails"].as_array().unwrap().len(), 1);
    assert_eq!(again["meta"]["version"], version);

    // Atomic: a failing operation leaves the earlier ones unapplied.
    let (status, body) = s
        .patch(
            &path,
            patch(json!([
                {"op": "replace", "path": "displayName", "value": "Changed"},
                {"op": "replace", "path": "emails[type eq \"home\"].value", "value": "h@x.test"}
            ])),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_scim_error(&body, 400, Some("noTarget"));
    let (_, now) = s.get(&path).await;
    assert!(now.get("displayName").is_none(), "half-applied PATCH: {now}");
    assert_eq!(now["meta"]["version"], version);

    // null means no value (Entra sends it for unmapped attributes).
    let (status, body) =
        s.put(&path, json!({"schemas": [USER], "userName": "erin", "title": null, "nickName": "E"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("title").is_none());
    assert_eq!(body["nickName"], "E");
}

#[tokio::test]
async fn groups_keep_membership_as_rows() {
    let s = TestServer::start().await;
    let u1 = s.create_user("u1").await;
    let u2 = s.create_user("u2").await;
    let u3 = s.create_user("u3").await;
    let (status, g) = s
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "Engineering", "members": [{"value": u1}, {"value": u2}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{g}");
    let gid = g["id"].as_str().unwrap().to_string();
    assert_eq!(g["members"].as_array().unwrap().len(), 2);

    // Entra's membership probe.
    let q = serde_urlencoded::to_string([
        ("filter", format!("id eq \"{gid}\" and members eq \"{u2}\"")),
        ("excludedAttributes", "members".into()),
    ])
    .unwrap();
    let (status, body) = s.get(&format!("/Groups?{q}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["totalResults"], 1);
    assert!(body["Resources"][0].get("members").is_none());
    let q = serde_urlencoded::to_string([("filter", format!("id eq \"{gid}\" and members eq \"{u3}\""))]).unwrap();
    let (_, body) = s.get(&format!("/Groups?{q}")).await;
    assert_eq!(body["totalResults"], 0);

    // Users show their groups.
    let (_, user) = s.get(&format!("/Users/{u1}")).await;
    assert_eq!(user["groups"][0]["value"], gid);
    assert_eq!(user["groups"][0]["display"], "Engineering");

    // Add one, remove one by filter, remove one Entra-style by value: a membership PATCH as
    // identity providers send it (no attributes, no excludedAttributes) is answered 204 with
    // the new ETag, and no member list.
    let (_, before) = s.get(&format!("/Groups/{gid}?excludedAttributes=members")).await;
    let (status, headers, body) = s
        .call(
            Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(patch(json!([
                {"op": "add", "path": "members", "value": [{"value": u3}]},
                {"op": "remove", "path": format!("members[value eq \"{u1}\"]")},
                {"op": "Remove", "path": "members", "value": [{"value": u2}]}
            ]))),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(body, Value::Null);
    let (_, now) = s.get(&format!("/Groups/{gid}")).await;
    assert_ne!(now["meta"]["version"], before["meta"]["version"]);
    assert_eq!(headers.get("etag").and_then(|v| v.to_str().ok()), now["meta"]["version"].as_str());
    let members: Vec<&str> = now["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap()).collect();
    assert_eq!(members, [u3.as_str()]);
    // A client that names a projection gets the group, as projected.
    let (status, body) = s
        .patch(
            &format!("/Groups/{gid}?attributes=members"),
            patch(json!([{"op": "add", "path": "members", "value": [{"value": u2}]}])),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["members"].as_array().map(Vec::len), Some(2), "{body}");
    let (status, body) = s
        .patch(
            &format!("/Groups/{gid}?excludedAttributes=members"),
            patch(json!([{"op": "remove", "path": "members", "value": [{"value": u2}]}])),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("members").is_none() && body["displayName"] == "Engineering", "{body}");
    // Anything but adding and removing named members is answered with the group: here removing
    // all members, then putting one back with replace.
    let (status, body) = s.patch(&format!("/Groups/{gid}"), patch(json!([{"op": "remove", "path": "members"}]))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("members").is_none(), "{body}");
    let (status, body) = s
        .patch(
            &format!("/Groups/{gid}"),
            patch(json!([{"op": "replace", "path": "members", "value": [{"value": u3}]}])),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["members"][0]["value"], u3.as_str(), "{body}");

    // An unknown member refuses the whole PATCH and names the id.
    let (status, body) = s
        .patch(
            &format!("/Groups/{gid}"),
            patch(json!([
                {"op": "add", "path": "members", "value": [{"value": u1}, {"value": "ghost-id"}]},
                {"op": "replace", "path": "displayName", "value": "Renamed"}
            ])),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_scim_error(&body, 400, Some("invalidValue"));
    assert!(body["detail"].as_str().unwrap().contains("ghost-id"));
    let (_, now) = s.get(&format!("/Groups/{gid}")).await;
    assert_eq!(now["displayName"], "Engineering");
    assert_eq!(now["members"].as_array().unwrap().len(), 1);

    // excludedAttributes=members on a single group.
    let (_, slim) = s.get(&format!("/Groups/{gid}?excludedAttributes=members")).await;
    assert!(slim.get("members").is_none());
    assert_eq!(slim["displayName"], "Engineering");

    // DELETE unlinks: the group answers 404 afterwards.
    let (status, _) = s.delete(&format!("/Groups/{gid}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = s.get(&format!("/Groups/{gid}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_scim_error(&body, 404, None);
}

#[tokio::test]
async fn json_media_type_is_accepted_and_scim_is_answered() {
    let s = TestServer::start().await;
    let resp = s
        .http
        .post(format!("{}/Users", s.base))
        .bearer_auth(&s.token)
        .header("content-type", "application/json; charset=utf-8")
        .body(json!({"schemas": [USER], "userName": "plainjson"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["content-type"], "application/scim+json");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let s = TestServer::start().await;
    let root = s.root();
    assert_eq!(s.http.get(format!("{root}/healthz")).send().await.unwrap().status(), StatusCode::OK);
    let ready: Value = s.http.get(format!("{root}/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    s.get("/Users").await;
    let text = s.http.get(format!("{root}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("scim_http_requests_total"), "{text}");
    assert!(text.contains("route=\"/scim/v2/Users\""), "{text}");
}

/// Lists read each user's groups in the same statement as the page: every user of a page gets
/// its own groups, ordered by name, and a user in none has no `groups` attribute. Totals stay
/// right whether the page tells them (a first page that is not full) or a COUNT does.
#[tokio::test]
async fn user_lists_carry_each_users_groups_and_true_totals() {
    let s = TestServer::start().await;
    let a = s.create_user("list-a@x.test").await;
    let b = s.create_user("list-b@x.test").await;
    let c = s.create_user("list-c@x.test").await;
    let mut gids = Vec::new();
    for (name, members) in [("Zeta", vec![&a, &b]), ("Alpha", vec![&a])] {
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        let (status, g) = s.post("/Groups", json!({"schemas": [GROUP], "displayName": name, "members": members})).await;
        assert_eq!(status, StatusCode::CREATED, "{g}");
        gids.push(g["id"].as_str().unwrap().to_string());
    }
    let (status, page) = s.get("/Users?sortBy=userName").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["totalResults"], 3);
    let users = page["Resources"].as_array().unwrap();
    let names = |u: &Value| -> Vec<String> {
        u["groups"]
            .as_array()
            .map_or_else(Vec::new, |gs| gs.iter().map(|g| g["display"].as_str().unwrap().to_string()).collect())
    };
    assert_eq!(users[0]["id"], a.as_str());
    assert_eq!(names(&users[0]), ["Alpha", "Zeta"]);
    assert_eq!(users[0]["groups"][0]["value"], gids[1].as_str());
    assert_eq!(users[1]["id"], b.as_str());
    assert_eq!(names(&users[1]), ["Zeta"]);
    assert_eq!(users[2]["id"], c.as_str());
    assert!(users[2].get("groups").is_none(), "{}", users[2]);

    // Full pages and later pages take the total from a COUNT.
    let (_, first) = s.get("/Users?sortBy=userName&count=2").await;
    assert_eq!(first["totalResults"], 3);
    assert_eq!(first["Resources"].as_array().unwrap().len(), 2);
    let (_, second) = s.get("/Users?sortBy=userName&count=2&startIndex=3").await;
    assert_eq!(second["totalResults"], 3);
    assert_eq!(second["Resources"][0]["id"], c.as_str());
    let (_, beyond) = s.get("/Users?count=2&startIndex=10").await;
    assert_eq!(beyond["totalResults"], 3);
    assert_eq!(beyond["Resources"].as_array().map_or(0, Vec::len), 0);
    // Groups can be left out, and the lookup-before-create answer stays exact.
    let (_, lean) = s.get("/Users?excludedAttributes=groups&filter=userName%20eq%20%22list-a@x.test%22").await;
    assert_eq!(lean["totalResults"], 1);
    assert!(lean["Resources"][0].get("groups").is_none());
    let (_, none) = s.get("/Users?filter=userName%20eq%20%22nobody@x.test%22").await;
    assert_eq!(none["totalResults"], 0);
}

/// Changing indexed attributes (userName, externalId, a group's displayName and externalId) is
/// seen by filters at once, and updates that leave them alone keep them findable (the store
/// writes indexed columns only when they change).
#[tokio::test]
async fn renames_and_external_ids_are_found_by_filters_after_updates() {
    let s = TestServer::start().await;
    let filter = |attr: &str, v: &str| serde_urlencoded::to_string([("filter", format!("{attr} eq \"{v}\""))]).unwrap();
    let (status, u) =
        s.post("/Users", json!({"schemas": [USER], "userName": "before@x.test", "externalId": "ext-1"})).await;
    assert_eq!(status, StatusCode::CREATED, "{u}");
    let id = u["id"].as_str().unwrap().to_string();
    // An update that touches neither: still found by both.
    let (status, _) = s
        .patch(
            &format!("/Users/{id}"),
            json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "displayName", "value": "D"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s.get(&format!("/Users?{}", filter("userName", "before@x.test"))).await.1["totalResults"], 1);
    assert_eq!(s.get(&format!("/Users?{}", filter("externalId", "ext-1"))).await.1["totalResults"], 1);
    // A rename and a new externalId.
    let (status, body) = s
        .put(&format!("/Users/{id}"), json!({"schemas": [USER], "userName": "After@x.test", "externalId": "ext-2"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(s.get(&format!("/Users?{}", filter("userName", "before@x.test"))).await.1["totalResults"], 0);
    assert_eq!(s.get(&format!("/Users?{}", filter("userName", "after@x.test"))).await.1["totalResults"], 1);
    assert_eq!(s.get(&format!("/Users?{}", filter("externalId", "ext-1"))).await.1["totalResults"], 0);
    assert_eq!(s.get(&format!("/Users?{}", filter("externalId", "ext-2"))).await.1["totalResults"], 1);
    // The old name is free again; the new one is taken without regard to case.
    assert_eq!(s.post("/Users", json!({"schemas": [USER], "userName": "before@x.test"})).await.0, StatusCode::CREATED);
    let (status, body) = s.post("/Users", json!({"schemas": [USER], "userName": "AFTER@x.test"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_scim_error(&body, 409, Some("uniqueness"));

    let (_, g) = s.post("/Groups", json!({"schemas": [GROUP], "displayName": "Old Name", "externalId": "g-1"})).await;
    let gid = g["id"].as_str().unwrap().to_string();
    let (status, body) = s
        .patch(
            &format!("/Groups/{gid}"),
            json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "replace", "path": "displayName", "value": "New Name"},
                {"op": "replace", "path": "externalId", "value": "g-2"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(s.get(&format!("/Groups?{}", filter("displayName", "Old Name"))).await.1["totalResults"], 0);
    assert_eq!(s.get(&format!("/Groups?{}", filter("displayName", "New Name"))).await.1["totalResults"], 1);
    assert_eq!(s.get(&format!("/Groups?{}", filter("externalId", "g-2"))).await.1["totalResults"], 1);
    assert_eq!(s.get(&format!("/Groups?{}", filter("externalId", "g-1"))).await.1["totalResults"], 0);
}
