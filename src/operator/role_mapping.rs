//! The RoleMapping controller: the cluster-scoped resource mirrored into the server's
//! `/RoleMappings` resource type.

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::Event as Finalizer;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use std::sync::Arc;

use super::conditions::{self, Desired, reason};
use super::crd::{RoleMapping, RoleMappingStatus};
use super::{Context, RELEASE_ANNOTATION, ReconcileError, key, now, reconcile_with_finalizer};
use crate::client::{ClientError, ScimClient};

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

async fn sync(ctx: &Context, obj: &RoleMapping, body: &Value) -> Result<String, ClientError> {
    if let Some(id) = obj.status.as_ref().and_then(|s| s.scim_id.clone()) {
        match ctx.scim.get_role_mapping(&id).await {
            Ok(current) => {
                if differs(&current, body) {
                    ctx.scim.replace_role_mapping(&id, body).await?;
                }
                return Ok(id);
            }
            Err(ClientError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(existing) = ctx.scim.find_role_mapping(&obj.name_any()).await? {
        let id = existing["id"].as_str().unwrap_or_default().to_string();
        ctx.scim.replace_role_mapping(&id, body).await?;
        return Ok(id);
    }
    let created = ctx.scim.create_role_mapping(body).await?;
    Ok(created["id"].as_str().unwrap_or_default().to_string())
}

async fn apply(obj: Arc<RoleMapping>, api: &Api<RoleMapping>, ctx: &Context) -> Result<Action, ReconcileError> {
    let generation = obj.meta().generation;
    let previous = obj.status.clone().unwrap_or_default();
    let mut status = RoleMappingStatus { observed_generation: generation, ..previous.clone() };
    let body = ScimClient::role_mapping_body(
        &obj.name_any(),
        &format!("k8s:{}", obj.uid().unwrap_or_default()),
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
        Err(ClientError::BadRequest { detail, .. }) => Desired::not_ready(reason::INVALID_SPEC, detail),
        Err(e) => {
            let retry_after = match &e {
                ClientError::Unavailable { retry_after, .. } => *retry_after,
                _ => None,
            };
            action = Action::requeue(ctx.backoff(&key(obj.as_ref()), retry_after));
            Desired::not_ready(
                if matches!(e, ClientError::Unauthorized(_)) { reason::UNAUTHORIZED } else { reason::SCIM_UNAVAILABLE },
                e.to_string(),
            )
        }
    };
    status.conditions = conditions::merge(&previous.conditions, &[wanted], generation, &now());
    ctx.warn_on_new_reason(obj.as_ref(), &previous.conditions, &status.conditions).await;
    let same = previous.observed_generation == status.observed_generation
        && previous.scim_id == status.scim_id
        && conditions::same(&previous.conditions, &status.conditions);
    if !same {
        api.patch_status(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await?;
    }
    Ok(action)
}

async fn cleanup(obj: Arc<RoleMapping>, ctx: &Context) -> Result<Action, ReconcileError> {
    let released = obj.annotations().get(RELEASE_ANNOTATION).is_some_and(|v| v == "true");
    if let (Some(id), false) = (obj.status.as_ref().and_then(|s| s.scim_id.clone()), released) {
        match ctx.scim.delete_role_mapping(&id).await {
            Ok(()) | Err(ClientError::NotFound) => {}
            Err(e) => return Err(e.into()),
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
}
