//! The ScimUser controller: fetch, validate, build the desired user, apply, write status.

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::Event as Finalizer;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

use super::conditions::{self, Desired, reason};
use super::crd::{ScimUser, ScimUserStatus, UserDeletionPolicy};
use super::user_doc::{desired, drift, owned_by_a_resource, owner_marker, validate};
use super::{Context, RELEASE_ANNOTATION, ReconcileError, key, now, reconcile_with_finalizer};
use crate::client::ClientError;

/// What applying the desired user did.
#[derive(Debug, PartialEq, Eq)]
enum Applied {
    Created(String),
    Updated(String, Vec<&'static str>),
    Adopted(String),
    Unchanged(String),
}

impl Applied {
    fn id(&self) -> &str {
        match self {
            Applied::Created(i) | Applied::Updated(i, _) | Applied::Adopted(i) | Applied::Unchanged(i) => i,
        }
    }
}

/// Why the user could not be applied.
#[derive(Debug)]
enum ApplyError {
    Conflict(String),
    Client(ClientError),
}

impl From<ClientError> for ApplyError {
    fn from(e: ClientError) -> Self {
        ApplyError::Client(e)
    }
}

/// Reconciles one ScimUser.
pub async fn reconcile(obj: Arc<ScimUser>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<ScimUser> = Api::namespaced(ctx.kube.clone(), &ns);
    reconcile_with_finalizer("ScimUser", &ctx, &api, obj, |event| async {
        match event {
            Finalizer::Apply(u) => apply(u, &api, &ctx).await,
            Finalizer::Cleanup(u) => cleanup(u, &ctx).await,
        }
    })
    .await
}

/// Creates, adopts or corrects the SCIM user.
async fn sync(ctx: &Context, obj: &ScimUser, want: &Value, owner: &str) -> Result<Applied, ApplyError> {
    let scim = &ctx.scim;
    if let Some(id) = obj.status.as_ref().and_then(|s| s.scim_id.clone()) {
        match scim.get_user(&id).await {
            Ok(current) => {
                let fields = drift(&current, want);
                if fields.is_empty() {
                    return Ok(Applied::Unchanged(id));
                }
                scim.replace_user(&id, want).await?;
                return Ok(Applied::Updated(id, fields));
            }
            // Gone from the server (deleted there): provision it again below.
            Err(ClientError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Not provisioned yet (as far as the status says): create it. Most users are new, so this
    // saves a lookup; a taken userName answers 409 and the lookup below decides.
    match scim.create_user(want).await {
        Ok(created) => return Ok(Applied::Created(created["id"].as_str().unwrap_or_default().to_string())),
        Err(ClientError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let user_name = want["userName"].as_str().unwrap_or_default();
    let Some(existing) = scim.find_user_by_name(user_name).await? else {
        // Taken a moment ago, gone now (a racing writer): look again next time.
        return Err(ApplyError::Client(ClientError::Unavailable {
            message: format!("userName {user_name} was taken, then not found; retrying"),
            retry_after: None,
        }));
    };
    let id = existing["id"].as_str().unwrap_or_default().to_string();
    let ext = existing.get("externalId").and_then(Value::as_str);
    if ext == Some(owner) {
        // Ours already (e.g. created before a restart that lost the status write).
        let fields = drift(&existing, want);
        if !fields.is_empty() {
            scim.replace_user(&id, want).await?;
        }
        return Ok(Applied::Unchanged(id));
    }
    if owned_by_a_resource(ext) {
        return Err(ApplyError::Conflict(format!(
            "userName {user_name} belongs to another ScimUser (externalId {})",
            ext.unwrap_or_default()
        )));
    }
    if !obj.spec.adopt {
        return Err(ApplyError::Conflict(format!(
            "a user named {user_name} already exists on the SCIM server and no resource owns it; set spec.adopt: true to take it over"
        )));
    }
    scim.replace_user(&id, want).await?;
    Ok(Applied::Adopted(id))
}

async fn apply(obj: Arc<ScimUser>, api: &Api<ScimUser>, ctx: &Context) -> Result<Action, ReconcileError> {
    let ns = obj.namespace().unwrap_or_default();
    let uid = obj.uid().unwrap_or_default();
    let generation = obj.meta().generation;
    let previous = obj.status.clone().unwrap_or_default();
    let mut status = ScimUserStatus { observed_generation: generation, ..previous.clone() };
    let mut wanted: Vec<Desired> = Vec::new();
    let trusted = ctx.trusted(&ns);
    let roles_sent = !obj.spec.roles.is_empty() && trusted;
    let mut action = ctx.resync();

    if let Err(msg) = validate(&obj.spec) {
        wanted.push(Desired::not_ready(reason::INVALID_SPEC, msg));
    } else {
        let owner = owner_marker(&obj.spec, &uid);
        let want = desired(&obj.spec, &owner, roles_sent);
        match sync(ctx, &obj, &want, &owner).await {
            Ok(applied) => {
                ctx.succeeded(&key(obj.as_ref()));
                let id = applied.id().to_string();
                // The event (if any) and the effective roles are independent: ask for both at once.
                let announce = async {
                    match &applied {
                        // A creation is recorded by the Ready condition (its message names the SCIM
                        // id, its lastTransitionTime says when): an Event per created user would
                        // double the API writes of a bulk provisioning for no new information.
                        Applied::Created(_) => {}
                        Applied::Adopted(_) => {
                            ctx.event(obj.as_ref(), false, "Adopted", format!("took over SCIM user {id}")).await
                        }
                        Applied::Updated(_, fields) => {
                            // The spec did not change since the last sync: someone changed the server.
                            let reason =
                                if previous.observed_generation == generation { "DriftCorrected" } else { "Updated" };
                            ctx.event(
                                obj.as_ref(),
                                false,
                                reason,
                                format!("updated {} on SCIM user {id}", fields.join(", ")),
                            )
                            .await
                        }
                        Applied::Unchanged(_) => {}
                    }
                };
                let ((), roles) = tokio::join!(announce, ctx.scim.effective_roles(&id));
                status.scim_id = Some(id.clone());
                status.effective_roles = roles.ok().flatten().unwrap_or_default();
                wanted.push(Desired::ready(format!("provisioned as SCIM user {id}")));
            }
            Err(ApplyError::Conflict(msg)) => {
                wanted.push(Desired::not_ready(reason::CONFLICT, msg));
                action = Action::requeue(Duration::from_secs(300));
            }
            Err(ApplyError::Client(e)) => {
                let (r, retry_after) = match &e {
                    ClientError::Unavailable { retry_after, .. } => (reason::SCIM_UNAVAILABLE, *retry_after),
                    ClientError::Unauthorized(_) => (reason::UNAUTHORIZED, None),
                    ClientError::BadRequest { .. } => (reason::REJECTED, None),
                    _ => (reason::SCIM_UNAVAILABLE, None),
                };
                wanted.push(Desired::not_ready(r, e.to_string()));
                action = Action::requeue(ctx.backoff(&key(obj.as_ref()), retry_after));
            }
        }
    }
    if !obj.spec.roles.is_empty() {
        wanted.push(if trusted {
            Desired {
                type_: conditions::ROLES_ALLOWED,
                status: true,
                reason: reason::ROLES_ALLOWED,
                message: "roles are sent".into(),
            }
        } else {
            Desired {
                type_: conditions::ROLES_ALLOWED,
                status: false,
                reason: reason::ROLES_NOT_ALLOWED,
                message: format!("namespace {ns} is not trusted to assign roles; no role was sent"),
            }
        });
    }
    status.conditions = conditions::merge(&previous.conditions, &wanted, generation, &now());
    ctx.warn_on_new_reason(obj.as_ref(), &previous.conditions, &status.conditions).await;
    if !obj.spec.roles.is_empty()
        && !trusted
        && !previous.conditions.iter().any(|c| c.reason == reason::ROLES_NOT_ALLOWED)
    {
        ctx.event(obj.as_ref(), true, reason::ROLES_NOT_ALLOWED, format!("namespace {ns} may not assign roles")).await;
    }
    write_status(api, &obj, &previous, &status).await?;
    Ok(action)
}

/// Writes the status only when it says something new.
async fn write_status(
    api: &Api<ScimUser>,
    obj: &ScimUser,
    previous: &ScimUserStatus,
    status: &ScimUserStatus,
) -> Result<(), ReconcileError> {
    let same = previous.observed_generation == status.observed_generation
        && previous.scim_id == status.scim_id
        && previous.effective_roles == status.effective_roles
        && conditions::same(&previous.conditions, &status.conditions);
    if same {
        return Ok(());
    }
    let patch = json!({"status": status});
    api.patch_status(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// Applies the deletion policy before the resource goes; a 404 counts as done.
async fn cleanup(obj: Arc<ScimUser>, ctx: &Context) -> Result<Action, ReconcileError> {
    let released = obj.annotations().get(RELEASE_ANNOTATION).is_some_and(|v| v == "true");
    let id = obj.status.as_ref().and_then(|s| s.scim_id.clone());
    if let (Some(id), false) = (id, released) {
        let result = match obj.spec.deletion_policy {
            UserDeletionPolicy::Deactivate => ctx.scim.set_active(&id, false).await.map(|_| ()),
            UserDeletionPolicy::Delete => ctx.scim.delete_user(&id).await,
            UserDeletionPolicy::Orphan => Ok(()),
        };
        match result {
            Ok(()) | Err(ClientError::NotFound) => {
                let what = format!("{:?}", obj.spec.deletion_policy);
                ctx.event(obj.as_ref(), false, "Deleted", format!("applied deletion policy {what} to SCIM user {id}"))
                    .await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    ctx.succeeded(&key(obj.as_ref()));
    Ok(Action::await_change())
}
