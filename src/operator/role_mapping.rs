//! The RoleMapping controller: the cluster-scoped resource mirrored into the server's
//! `/RoleMappings` resource type. It writes only mappings it created (its ownership marker in
//! `externalId`): one of the same name made another way is reported as a `Conflict`.

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::Event as Finalizer;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use std::sync::Arc;

use super::conditions::{self, Desired};
use super::crd::{RoleMapping, RoleMappingStatus};
use super::ownership::{Claim, Owner};
use super::{Context, RELEASE_ANNOTATION, ReconcileError, key, now, reconcile_with_finalizer};
use crate::client::{ClientError, ScimClient, ScimObject};

fn values(v: &Value, key: &str) -> Vec<String> {
    let mut out: Vec<String> = v
        .get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.get("value").and_then(Value::as_str).map(str::to_lowercase)).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// Whether the server's mapping differs from the desired one.
pub fn differs(current: &Value, desired: &Value) -> bool {
    values(current, "roles") != values(desired, "roles") || values(current, "teams") != values(desired, "teams")
}

/// Reconciles one RoleMapping.
pub async fn reconcile(obj: Arc<RoleMapping>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let api: Api<RoleMapping> = Api::all(ctx.kube.clone());
    reconcile_with_finalizer("RoleMapping", &ctx, &api, obj, |event| async {
        match event {
            Finalizer::Apply(m) => apply(m, &api, &ctx).await,
            Finalizer::Cleanup(m) => cleanup(m, &ctx).await,
        }
    })
    .await
}

/// Why a reconcile of a mapping ended without the server holding the spec.
enum MappingError {
    /// A mapping of that id or name exists that this resource did not create: nothing written.
    NotOurs(String),
    Client(ClientError),
}

impl From<ClientError> for MappingError {
    fn from(e: ClientError) -> Self {
        MappingError::Client(e)
    }
}

/// Whether this resource may write (replace, delete) the server's mapping: only one carrying its
/// own marker. An administrator's mapping, an identity provider's or another resource's is
/// never rewritten or deleted from Kubernetes.
fn ours(owner: &Owner, mapping: &ScimObject) -> bool {
    matches!(owner.claim(mapping.external_id.as_deref()), Claim::Ours | Claim::OursLegacy)
}

async fn sync(ctx: &Context, obj: &RoleMapping, body: &Value) -> Result<String, MappingError> {
    let owner = ctx.owner(obj);
    let name = obj.name_any();
    let not_ours = || {
        MappingError::NotOurs(format!(
            "a role mapping named {name} exists on the server that this resource did not create; it is never \
             replaced or deleted from Kubernetes; nothing was written"
        ))
    };
    let mut held = None;
    if let Some(id) = obj.status.as_ref().and_then(|s| s.scim_id.clone()) {
        match ctx.scim.get_role_mapping(&id).await {
            Ok(current) => held = Some(current),
            Err(ClientError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if held.is_none() {
        held = ctx.scim.find_role_mapping(&name).await?;
    }
    match held {
        Some(current) if !ours(&owner, &current) => Err(not_ours()),
        Some(current) => {
            if differs(&current.body, body) || current.external_id.as_deref() != Some(owner.marker()) {
                ctx.scim.replace_role_mapping(&current.id, body).await?;
            }
            Ok(current.id)
        }
        None => Ok(ctx.scim.create_role_mapping(body).await?.id),
    }
}

async fn apply(obj: Arc<RoleMapping>, api: &Api<RoleMapping>, ctx: &Context) -> Result<Action, ReconcileError> {
    let generation = obj.meta().generation;
    let previous = obj.status.clone().unwrap_or_default();
    let mut status = RoleMappingStatus { observed_generation: generation, ..previous.clone() };
    let body = ScimClient::role_mapping_body(
        &obj.name_any(),
        ctx.owner(obj.as_ref()).marker(),
        &obj.spec.roles,
        &obj.spec.teams,
    );
    let mut action = ctx.resync();
    let wanted = match sync(ctx, &obj, &body).await {
        Ok(id) => {
            ctx.succeeded(&key(obj.as_ref()));
            if previous.scim_id.as_deref() != Some(id.as_str()) {
                ctx.event(obj.as_ref(), false, "Created", format!("role mapping provisioned as {id}")).await;
            }
            status.scim_id = Some(id.clone());
            Desired::ready(format!("members of {} receive {}", obj.spec.teams.join(", "), obj.spec.roles.join(", ")))
        }
        Err(MappingError::NotOurs(message)) => {
            action = ctx.refused_retry(&key(obj.as_ref()), std::time::Duration::from_secs(300));
            Desired::not_ready(conditions::reason::CONFLICT, message)
        }
        Err(MappingError::Client(e)) => {
            let failure = conditions::failure(&e);
            action = Action::requeue(ctx.backoff(&key(obj.as_ref()), failure.retry_after));
            Desired::not_ready(failure.reason, e.to_string())
        }
    };
    status.conditions = conditions::merge(&previous.conditions, &[wanted], generation, &now());
    ctx.warn_on_new_reason(obj.as_ref(), &previous.conditions, &status.conditions).await;
    let same = previous.observed_generation == status.observed_generation
        && previous.scim_id == status.scim_id
        && conditions::same(&previous.conditions, &status.conditions);
    if !same {
        // Every field is serialized (nulls included), so the merge patch clears what is gone.
        api.patch_status(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await?;
    }
    Ok(action)
}

async fn cleanup(obj: Arc<RoleMapping>, ctx: &Context) -> Result<Action, ReconcileError> {
    let released = obj.annotations().get(RELEASE_ANNOTATION).is_some_and(|v| v == "true");
    if let (Some(id), false) = (obj.status.as_ref().and_then(|s| s.scim_id.clone()), released) {
        let held = match ctx.scim.get_role_mapping(&id).await {
            Ok(m) => Some(m),
            Err(ClientError::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        match held {
            Some(m) if ours(&ctx.owner(obj.as_ref()), &m) => match ctx.scim.delete_role_mapping(&id).await {
                Ok(()) | Err(ClientError::NotFound) => {}
                Err(e) => return Err(e.into()),
            },
            Some(_) => {
                let note = format!("role mapping {id} is not owned by this resource: left as it is");
                ctx.event(obj.as_ref(), true, conditions::reason::CONFLICT, note).await;
            }
            None => {}
        }
    }
    ctx.succeeded(&key(obj.as_ref()));
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_ignore_order_and_case() {
        let a = ScimClient::role_mapping_body("m", "k8s:1", &["Admin".into(), "Billing".into()], &["Finance".into()]);
        let b = json!({"roles": [{"value": "billing"}, {"value": "admin"}], "teams": [{"value": "Finance"}]});
        assert!(!differs(&b, &a));
        let c = json!({"roles": [{"value": "admin"}], "teams": [{"value": "Finance"}]});
        assert!(differs(&c, &a));
    }

    #[test]
    fn only_a_mapping_carrying_this_resources_marker_is_written() {
        // A cluster-scoped RoleMapping has no namespace; its marker names its uid.
        let me = Owner::new("c1", "", "uid-1");
        let other = Owner::new("c1", "", "uid-2");
        let mapping = |external_id: Option<&str>| ScimObject {
            id: "m1".into(),
            version: None,
            external_id: external_id.map(str::to_string),
            body: json!({}),
        };
        let cases = [
            (Some(me.marker()), true, "created by this resource"),
            (Some(other.marker()), false, "another resource's"),
            (None, false, "an administrator's or an identity provider's (no marker)"),
            (Some("okta-123"), false, "an identity provider's own externalId"),
        ];
        for (external_id, want, what) in cases {
            assert_eq!(ours(&me, &mapping(external_id)), want, "{what}");
        }
    }
}
