//! The fetch and execute steps around a [`plan`](super::plan): what a target holds, what it
//! says it supports, and sending a plan's operations in order.

use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeSet;

use super::discovery::Capabilities;
use super::plan::{GroupRef, HeldGroup, Operation, Plan};
use super::{ClientError, ClientResult, Precondition, ScimClient, ScimObject, quote, resource_path};

/// What executing a plan produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Executed {
    /// The user as the target last answered it (a create or a write that returned it).
    pub user: Option<ScimObject>,
    /// The id of the group the plan created.
    pub created_group: Option<String>,
    /// Requests sent.
    pub requests: usize,
}

/// What a probe of a target found: whether it answers, whether the credentials work, and its
/// capabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// `Err(why)` when the base URL does not answer as a SCIM server.
    pub reachable: Result<(), ClientError>,
    /// `Err(why)` when the credentials are refused (`Unauthorized`: a 401 or 403, or a token
    /// endpoint that refused the client) or an authenticated query failed otherwise.
    pub credentials: Result<(), ClientError>,
    /// From `/ServiceProviderConfig`, or assumed when the target does not answer it.
    pub capabilities: Option<Capabilities>,
}

impl ScimClient {
    /// The capabilities discovery found (assumed ones before [`Self::discover`] ran).
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities.read().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_else(Capabilities::assumed)
    }

    /// Reads `/ServiceProviderConfig` and remembers what it says. A target that answers it
    /// with an error other than 401 is assumed to filter and PATCH.
    pub async fn discover(&self) -> ClientResult<Capabilities> {
        let caps = match self.request(Method::GET, "/ServiceProviderConfig", None).await {
            Ok(doc) => Capabilities::from_service_provider_config(&doc).ok_or_else(|| {
                ClientError::Other("/ServiceProviderConfig answered something that is not a SCIM document".into())
            })?,
            Err(e @ (ClientError::Unauthorized(_) | ClientError::Unavailable { .. })) => return Err(e),
            Err(_) => Capabilities::assumed(),
        };
        *self.capabilities.write().unwrap_or_else(|e| e.into_inner()) = Some(caps.clone());
        Ok(caps)
    }

    /// Probes the target for its status: discovery, then one authenticated one-result query
    /// (many servers answer `/ServiceProviderConfig` without authentication).
    pub async fn probe(&self) -> Health {
        let capabilities = match self.discover().await {
            Ok(c) => Some(c),
            Err(e @ ClientError::Unauthorized(_)) => {
                return Health { reachable: Ok(()), credentials: Err(e), capabilities: None };
            }
            Err(e) => return Health { reachable: Err(e.clone()), credentials: Err(e), capabilities: None },
        };
        let credentials = self.request(Method::GET, "/Users?startIndex=1&count=1", None).await.map(|_| ());
        Health { reachable: Ok(()), credentials, capabilities }
    }

    /// Every resource of `/Users` or `/Groups` (optionally filtered), page by page, in pages no
    /// larger than the target announces or its profile is known to answer.
    pub async fn list_all(&self, resource: &str, filter: Option<&str>) -> ClientResult<Vec<Value>> {
        let size = self.capabilities().page_size(200, self.dialect.page_cap());
        let filter = filter.map(|f| format!("&{}", Self::encode(f))).unwrap_or_default();
        let mut all = Vec::new();
        let mut start = 1usize;
        loop {
            let page = self
                .request(Method::GET, &format!("/{resource}?startIndex={start}&count={size}{filter}"), None)
                .await?;
            let resources = page.get("Resources").and_then(Value::as_array).cloned().unwrap_or_default();
            let total = page.get("totalResults").and_then(Value::as_u64).unwrap_or(0);
            let got = resources.len();
            all.extend(resources);
            start += got;
            if got == 0 || start as u64 > total {
                return Ok(all);
            }
        }
    }

    /// The group of this name with its member ids, if the target holds one.
    pub async fn fetch_group(&self, display_name: &str) -> ClientResult<Option<HeldGroup>> {
        let Some(found) = self.find_group_by_name(display_name).await? else { return Ok(None) };
        let members: BTreeSet<String> = self.group_members(&found.id).await?.into_iter().collect();
        let display_name = found.body.get("displayName").and_then(Value::as_str).unwrap_or(display_name).to_string();
        Ok(Some(HeldGroup { id: found.id, display_name, external_id: found.external_id, members }))
    }

    /// The user with this userName as the target holds it (its whole body).
    pub async fn fetch_user(&self, user_name: &str) -> ClientResult<Option<Value>> {
        let q = Self::encode(&format!("userName eq {}", quote(user_name)));
        let found = self.request(Method::GET, &format!("/Users?{q}"), None).await?;
        let first = found.get("Resources").and_then(Value::as_array).and_then(|r| r.first()).cloned();
        Ok(first)
    }

    /// Sends a plan's operations in order; stops at the first failure (deciding again from
    /// what the target then holds finishes the rest).
    pub async fn execute(&self, plan: &Plan) -> ClientResult<Executed> {
        let mut done = Executed::default();
        for op in &plan.operations {
            done.requests += 1;
            match op {
                Operation::CreateUser { body } => {
                    done.user = Some(ScimObject::from_reply(self.request(Method::POST, "/Users", Some(body)).await?)?);
                }
                Operation::ReplaceUser { id, body } => {
                    let path = resource_path("Users", id);
                    done.user = Some(ScimObject::from_reply(self.request(Method::PUT, &path, Some(body)).await?)?);
                }
                Operation::PatchUser { id, operations } => {
                    let body = Operation::patch_body(operations);
                    let answer = self.request(Method::PATCH, &resource_path("Users", id), Some(&body)).await?;
                    done.user = ScimObject::from_optional_reply(answer)?.or(done.user.take());
                }
                Operation::DeleteUser { id } => {
                    self.request(Method::DELETE, &resource_path("Users", id), None).await?;
                }
                Operation::CreateGroup { body, exclusive } => {
                    let pre = if *exclusive { Precondition::Absent } else { Precondition::None };
                    let answer = self.request_if(Method::POST, "/Groups", Some(body), pre).await?;
                    done.created_group = Some(ScimObject::from_reply(answer)?.id);
                }
                Operation::ReplaceGroup { id, body } => {
                    self.request(Method::PUT, &resource_path("Groups", id), Some(body)).await?;
                }
                Operation::PatchGroup { group, operations } => {
                    let id = match group {
                        GroupRef::Id(id) => id.as_str(),
                        GroupRef::Created => done.created_group.as_deref().ok_or_else(|| {
                            ClientError::Other("a plan patched the group it creates before creating it".into())
                        })?,
                    };
                    let body = Operation::patch_body(operations);
                    let path = format!("{}?excludedAttributes=members", resource_path("Groups", id));
                    self.request(Method::PATCH, &path, Some(&body)).await?;
                }
                Operation::DeleteGroup { id } => {
                    self.request(Method::DELETE, &resource_path("Groups", id), None).await?;
                }
            }
        }
        Ok(done)
    }
}
