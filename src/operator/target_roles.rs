//! The roles a ScimUser holds on a target other than the default, computed by the operator.
//!
//! On the default target (this project's server) RoleMappings are mirrored to the server and
//! the server computes each user's roles. Other targets know nothing of RoleMappings, so the
//! operator computes the roles a user should hold on target T and sends them:
//! - `spec.roles`, when the user's namespace is trusted on T;
//! - the roles of every RoleMapping whose `teams` name (exactly) the `displayName` of a
//!   ManagedTeam that names T, has this user as a member by its spec, is not being deleted,
//!   and whose namespace is trusted on T.
//!
//! What decides trust is the namespace's standing on T, as [`super::targets::standing`] decides
//! it (a ClusterScimTarget's `spec.namespaces.trusted`; a ScimTarget trusts its own namespace):
//! the callers pass those standings in, and a namespace whose standing is missing counts as not
//! trusted (fail closed). So an untrusted namespace gains no role on T by naming a team like a
//! mapped one, nor by listing users in such a team.
//!
//! Membership is read from the team's spec, never from what a target holds (a target's group
//! of that name may have been made by anyone): a `scimUserRef` or `memberSelector` of the
//! user's own namespace, or a `userName` (without regard to case) from the team's own
//! namespace, or from a namespace trusted on T (as the team's sync adds such members there).
//!
//! What the user is then sent, and what is withdrawn, is [`super::user_doc::plan_roles`]'s
//! decision, as on the default target: only roles this resource granted (recorded in its
//! ownership record on T before they are sent) are ever withdrawn.

use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::crd::{ManagedTeam, RoleMapping, ScimUser, Standing, effective_targets};
use super::managed_team::selects;
use super::target_work::TargetWork;
use super::targets::{Outcome, Resolved};
use super::user_cache::CachedUser;
use super::user_doc::{RolePlan, plan_roles};
use super::{Context, ReconcileError};

/// The facts of a ScimUser that membership reads.
#[derive(Debug, Clone, Copy)]
pub struct UserFacts<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub user_name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

impl<'a> UserFacts<'a> {
    /// The facts of a ScimUser as the operator caches it.
    pub fn of_cached(user: &'a CachedUser) -> Self {
        let meta = kube::Resource::meta(user);
        UserFacts {
            namespace: meta.namespace.as_deref().unwrap_or(""),
            name: meta.name.as_deref().unwrap_or(""),
            user_name: &user.user_name,
            labels: user.labels(),
        }
    }
}

/// Whether `team` names the target `id` in its `spec.targets` (`[default]` when empty).
pub fn names_target(team: &ManagedTeam, id: &str) -> bool {
    let ns = team.namespace().unwrap_or_default();
    effective_targets(&team.spec.targets).iter().any(|t| t.id(&ns) == id)
}

/// Whether `team`'s spec names `user` as a member: by `scimUserRef` or `memberSelector` within
/// the team's namespace, by `userName` (without regard to case) within it too and, with
/// `across_namespaces`, in any namespace. The one reading of a team's members by its spec, for
/// the teams' triggers and the roles on other targets.
pub fn is_member(team: &ManagedTeam, user: &UserFacts<'_>, across_namespaces: bool) -> bool {
    let same_namespace = team.namespace().as_deref() == Some(user.namespace);
    team.spec.members.iter().any(|m| {
        (same_namespace && m.scim_user_ref.as_deref() == Some(user.name))
            || ((same_namespace || across_namespaces)
                && m.user_name.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(user.user_name)))
    }) || (same_namespace && team.spec.member_selector.as_ref().is_some_and(|s| selects(s, user.labels)))
}

/// Whether a namespace is trusted, by the standings given (missing: not trusted).
fn trusted(standings: &BTreeMap<String, Standing>, namespace: &str) -> bool {
    standings.get(namespace) == Some(&Standing::Trusted)
}

/// The teams that may give roles on target `id`: they name it, are not being deleted, and
/// some RoleMapping (not being deleted) names them. Their namespaces are the ones whose
/// standing [`roles_on_target`] needs.
pub fn mapped_teams<'a>(
    id: &str,
    teams: &'a [impl Borrow<ManagedTeam>],
    mappings: &[impl Borrow<RoleMapping>],
) -> Vec<&'a ManagedTeam> {
    let mapped: BTreeSet<&str> = mappings
        .iter()
        .map(Borrow::borrow)
        .filter(|m: &&RoleMapping| m.metadata.deletion_timestamp.is_none())
        .flat_map(|m| m.spec.teams.iter().map(String::as_str))
        .collect();
    teams
        .iter()
        .map(Borrow::borrow)
        .filter(|t: &&ManagedTeam| t.metadata.deletion_timestamp.is_none())
        .filter(|t| mapped.contains(t.spec.display_name.as_str()) && names_target(t, id))
        .collect()
}

/// The roles `user` should hold on target `id`: its `spec_roles` when its namespace is trusted
/// there, then the roles of the mappings of the trusted teams it is a member of (mappings in
/// name order); each role once, compared without regard to case, first spelling kept.
/// `standings` are the namespaces' standings on the target; one missing is not trusted.
pub fn roles_on_target(
    id: &str,
    user: &UserFacts<'_>,
    spec_roles: &[String],
    standings: &BTreeMap<String, Standing>,
    teams: &[impl Borrow<ManagedTeam>],
    mappings: &[impl Borrow<RoleMapping>],
) -> Vec<String> {
    let user_trusted = trusted(standings, user.namespace);
    let mut out: Vec<String> = Vec::new();
    let mut add = |r: &String| {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(r)) {
            out.push(r.clone());
        }
    };
    if user_trusted {
        spec_roles.iter().for_each(&mut add);
    }
    // A `userName` member of another namespace counts only when the user's namespace is trusted
    // there, as the team's own sync adds such a member there only then.
    let teams_of_user: BTreeSet<&str> = mapped_teams(id, teams, mappings)
        .into_iter()
        .filter(|t| trusted(standings, &t.namespace().unwrap_or_default()) && is_member(t, user, user_trusted))
        .map(|t| t.spec.display_name.as_str())
        .collect();
    let mut mappings: Vec<&RoleMapping> = mappings
        .iter()
        .map(Borrow::borrow)
        .filter(|m: &&RoleMapping| m.metadata.deletion_timestamp.is_none())
        .collect();
    mappings.sort_by_key(|m| m.name_any());
    for m in mappings {
        if m.spec.teams.iter().any(|t| teams_of_user.contains(t.as_str())) {
            m.spec.roles.iter().for_each(&mut add);
        }
    }
    out
}

/// The namespaces whose standing on target `id` [`roles_on_target`] reads for `user`: the
/// namespaces of the mapped teams naming it that have the user as a member (by their spec, a
/// `userName` member of another namespace counting only when `user_trusted`, as there), less
/// the user's own (whose standing is known). Teams the user is no member of give no role
/// whatever their namespace's standing, so theirs is never asked.
pub fn namespaces_to_ask(
    id: &str,
    user: &UserFacts<'_>,
    user_trusted: bool,
    teams: &[impl Borrow<ManagedTeam>],
    mappings: &[impl Borrow<RoleMapping>],
) -> BTreeSet<String> {
    mapped_teams(id, teams, mappings)
        .into_iter()
        .filter(|t| is_member(t, user, user_trusted))
        .filter_map(|t| t.namespace())
        .filter(|ns| ns != user.namespace)
        .collect()
}

/// The roles `obj` should hold on the resolved `target`, from the ManagedTeams and RoleMappings
/// the operator watches; the standings of the namespaces of the mapped teams it is a member of
/// ([`namespaces_to_ask`]) are asked of [`super::targets::TargetStores::standings_of`] (the user's
/// own is the one it was resolved with).
pub async fn roles_for(ctx: &Context, obj: &ScimUser, target: &Resolved) -> Result<Vec<String>, ReconcileError> {
    let ns = obj.namespace().unwrap_or_default();
    let (teams, mappings) = (ctx.teams.state(), ctx.mappings.state());
    let name = obj.name_any();
    let user = UserFacts { namespace: &ns, name: &name, user_name: &obj.spec.user_name, labels: obj.labels() };
    let user_trusted = target.standing == Standing::Trusted;
    let namespaces = namespaces_to_ask(&target.id, &user, user_trusted, &teams, &mappings);
    let mut standings = ctx.targets.stores.standings_of(&target.target, &ns, &namespaces);
    standings.insert(ns.clone(), target.standing);
    Ok(roles_on_target(&target.id, &user, &obj.spec.roles, &standings, &teams, &mappings))
}

// ---- triggers: which ScimUsers a change of a team, a mapping or a target may concern

/// What of a ManagedTeam its members' roles on other targets read: name, members, selector,
/// targets, deletion (a filter of team changes; its status writes change none of these).
pub fn team_trigger(team: &ManagedTeam) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&team.spec).unwrap_or_default().hash(&mut h);
    team.metadata.deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}

/// A team as last seen by the triggers: its displayName and its members.
type TeamSeen = (String, HashSet<ObjectRef<CachedUser>>);

/// The ScimUsers whose roles on a target other than the default a change may concern, found in
/// the operator's stores. Membership is taken widely here (a `userName` member of any
/// namespace): a trigger only makes a user compute its roles again. The members and teams seen
/// last are remembered, so that a member removed or a team no longer mapped is reached too.
pub struct RoleTriggers {
    users: Store<CachedUser>,
    teams: Store<ManagedTeam>,
    mappings: Store<RoleMapping>,
    /// The users' syncs on targets other than the default: a trigger makes them due at once
    /// (the change shows in no generation of the user).
    work: Arc<TargetWork<Outcome>>,
    /// Per team uid: its displayName and members when last seen.
    members: Mutex<HashMap<String, TeamSeen>>,
    /// Per RoleMapping uid: its teams when last seen.
    mapped: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl RoleTriggers {
    pub fn new(
        users: Store<CachedUser>,
        teams: Store<ManagedTeam>,
        mappings: Store<RoleMapping>,
        work: Arc<TargetWork<Outcome>>,
    ) -> Self {
        Self { users, teams, mappings, work, members: Mutex::default(), mapped: Mutex::default() }
    }

    /// The users to reconcile, their syncs on other targets made due.
    pub fn wake(&self, users: impl IntoIterator<Item = ObjectRef<CachedUser>>) -> Vec<ObjectRef<CachedUser>> {
        users
            .into_iter()
            .inspect(|u| {
                if let Some(uid) = &u.extra.uid {
                    self.work.expire(uid);
                }
            })
            .collect()
    }

    /// The members of `team` by its spec, when it names a target other than the default.
    fn members_of(&self, team: &ManagedTeam, users: &[std::sync::Arc<CachedUser>]) -> HashSet<ObjectRef<CachedUser>> {
        if !effective_targets(&team.spec.targets).iter().any(|t| !t.is_default()) {
            return HashSet::new();
        }
        users
            .iter()
            .filter(|u| is_member(team, &UserFacts::of_cached(u), true))
            .map(|u| ObjectRef::from_obj(u.as_ref()))
            .collect()
    }

    /// A team changed: its members now and when last seen.
    pub fn of_team(&self, team: &ManagedTeam) -> Vec<ObjectRef<CachedUser>> {
        let now = self.members_of(team, &self.users.state());
        let uid = team.uid().unwrap_or_default();
        let name = team.spec.display_name.clone();
        let mut last = self.members.lock().unwrap_or_else(|e| e.into_inner());
        let (name_before, before) = last.insert(uid, (name.clone(), now.clone())).unwrap_or_default();
        drop(last);
        // Roles come through a team only where a RoleMapping names it: a team that no mapping
        // names, by its name now or when last seen, changes nobody's roles (and creating
        // thousands of teams wakes no user).
        let mapped = self.mappings.state().iter().any(|m| m.spec.teams.iter().any(|t| *t == name || *t == name_before));
        if !mapped {
            return Vec::new();
        }
        self.wake(now.union(&before).cloned())
    }

    /// A RoleMapping changed: the members of the teams it names now or named when last seen.
    pub fn of_mapping(&self, mapping: &RoleMapping) -> Vec<ObjectRef<CachedUser>> {
        let now: BTreeSet<String> = mapping.spec.teams.iter().cloned().collect();
        let before = {
            let mut last = self.mapped.lock().unwrap_or_else(|e| e.into_inner());
            last.insert(mapping.uid().unwrap_or_default(), now.clone()).unwrap_or_default()
        };
        let names: BTreeSet<&String> = now.union(&before).collect();
        let users = self.users.state();
        let mut out = HashSet::new();
        for team in self.teams.state().iter().filter(|t| names.contains(&t.spec.display_name)) {
            out.extend(self.members_of(team, &users));
        }
        self.wake(out)
    }

    /// A ClusterScimTarget changed (who it trusts): the users provisioned there.
    pub fn of_target(&self, name: &str) -> Vec<ObjectRef<CachedUser>> {
        let id = super::crd::TargetRef {
            kind: super::crd::TargetRefKind::ClusterScimTarget,
            name: name.to_string(),
            namespace: None,
        }
        .id("");
        let users = self.users.state();
        self.wake(
            users.iter().filter(|u| u.targets.iter().any(|t| t.target == id)).map(|u| ObjectRef::from_obj(u.as_ref())),
        )
    }
}

/// What to send and record for a user's roles on a target.
#[derive(Debug, PartialEq, Eq)]
pub struct TargetRolePlan {
    /// The user's whole `roles` as the document sends them: the roles the target holds less
    /// those this resource granted and no longer asks for, plus those it asks for. On a target
    /// that keeps no roles, the roles asked for (so that the plan reports `RolesUnsupported`).
    pub document: Vec<String>,
    /// What the record must say before anything is sent (`None`: it already covers the grant).
    pub intent: Option<Vec<String>>,
    /// What the record says once the target answered.
    pub granted: Vec<String>,
}

/// The role plan on a target: from what the target holds (`held`: the user's roles there, none
/// when it is created), what this resource granted there before (`granted`), what it asks for
/// now (`asked`), and whether the target keeps roles at all. The decision of what is withdrawn
/// is [`plan_roles`]'s, as on the default target.
pub fn target_role_plan(keeps_roles: bool, held: &[String], granted: &[String], asked: &[String]) -> TargetRolePlan {
    if !keeps_roles {
        // Nothing is sent, so nothing is granted; the roles asked for are shown as not sent.
        return TargetRolePlan { document: asked.to_vec(), intent: None, granted: granted.to_vec() };
    }
    let RolePlan { write, granted: after } = plan_roles(held, granted, asked);
    let mut intent = granted.to_vec();
    for r in &after {
        if !intent.iter().any(|g| g.eq_ignore_ascii_case(r)) {
            intent.push(r.clone());
        }
    }
    let intent = (intent.len() > granted.len()).then_some(intent);
    TargetRolePlan { document: write.unwrap_or_else(|| held.to_vec()), intent, granted: after }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn team(ns: &str, display_name: &str, targets: serde_json::Value, members: serde_json::Value) -> ManagedTeam {
        serde_json::from_value(json!({"apiVersion": "scim.dev/v1alpha1", "kind": "ManagedTeam",
            "metadata": {"name": display_name.to_lowercase(), "namespace": ns},
            "spec": {"displayName": display_name, "targets": targets, "members": members}}))
        .expect("a ManagedTeam")
    }

    fn mapping(name: &str, teams: &[&str], roles: &[&str]) -> RoleMapping {
        serde_json::from_value(json!({"apiVersion": "scim.dev/v1alpha1", "kind": "RoleMapping",
            "metadata": {"name": name}, "spec": {"teams": teams, "roles": roles}}))
        .expect("a RoleMapping")
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const T: &str = "ClusterScimTarget/kc";

    #[test]
    fn roles_come_from_trusted_spec_roles_and_trusted_mapped_teams_only() {
        let labels: BTreeMap<String, String> = [("team".to_string(), "sre".to_string())].into();
        let ada = UserFacts { namespace: "platform", name: "ada", user_name: "Ada@x.test", labels: &labels };
        let on_t = json!([{"name": "kc"}]);
        let by_ref = json!([{"scimUserRef": "ada"}]);
        let mappings = vec![mapping("ops-admin", &["ops"], &["admin"]), mapping("audit", &["auditors"], &["Auditor"])];
        let standing = |pairs: &[(&str, Standing)]| -> BTreeMap<String, Standing> {
            pairs.iter().map(|(n, s)| (n.to_string(), *s)).collect()
        };
        let both = standing(&[("platform", Standing::Trusted), ("dev", Standing::Trusted)]);
        let dev_untrusted = standing(&[("platform", Standing::Trusted), ("dev", Standing::Allowed)]);
        let platform_untrusted = standing(&[("platform", Standing::Allowed), ("dev", Standing::Trusted)]);
        type Row<'a> = (&'a str, Vec<ManagedTeam>, &'a BTreeMap<String, Standing>, &'a [&'a str], &'a [&'a str]);
        let rows: &[Row<'_>] = &[
            ("spec.roles, trusted", vec![], &both, &["Viewer"], &["Viewer"]),
            ("spec.roles, untrusted: none", vec![], &platform_untrusted, &["Viewer"], &[]),
            ("a standing that is missing is not trusted", vec![], &BTreeMap::new(), &["Viewer"], &[]),
            ("a trusted mapped team naming T", vec![team("platform", "ops", on_t.clone(), by_ref.clone())], &both, &[], &["admin"]),
            (
                "mapped team and spec.roles, each role once",
                vec![team("platform", "ops", on_t.clone(), by_ref.clone())],
                &both,
                &["ADMIN", "Viewer"],
                &["ADMIN", "Viewer"],
            ),
            ("the team names another target", vec![team("platform", "ops", json!([{"name": "other"}]), by_ref.clone())], &both, &[], &[]),
            ("the team names only the default target", vec![team("platform", "ops", json!([]), by_ref.clone())], &both, &[], &[]),
            ("a team name no mapping names", vec![team("platform", "sre", on_t.clone(), by_ref.clone())], &both, &[], &[]),
            ("team names match exactly", vec![team("platform", "OPS", on_t.clone(), by_ref.clone())], &both, &[], &[]),
            ("not a member", vec![team("platform", "ops", on_t.clone(), json!([{"scimUserRef": "bob"}]))], &both, &[], &[]),
            (
                "a member by selector",
                vec![serde_json::from_value(json!({"apiVersion": "scim.dev/v1alpha1", "kind": "ManagedTeam",
                    "metadata": {"name": "ops", "namespace": "platform"},
                    "spec": {"displayName": "ops", "targets": on_t, "memberSelector": {"matchLabels": {"team": "sre"}}}}))
                .unwrap()],
                &both,
                &[],
                &["admin"],
            ),
            (
                "a member by userName from a trusted namespace",
                vec![team("dev", "auditors", on_t.clone(), json!([{"userName": "ada@X.TEST"}]))],
                &both,
                &[],
                &["Auditor"],
            ),
            (
                "a scimUserRef names a user of the team's own namespace only",
                vec![team("dev", "ops", on_t.clone(), by_ref.clone())],
                &both,
                &[],
                &[],
            ),
            // Adversarial: an untrusted namespace names its team like a mapped one and lists
            // the user (or itself) in it.
            (
                "an untrusted namespace's team of a mapped name gives nothing",
                vec![team("dev", "ops", on_t.clone(), json!([{"userName": "ada@x.test"}]))],
                &dev_untrusted,
                &[],
                &[],
            ),
            (
                "a userName member of an untrusted namespace is not one",
                vec![team("dev", "ops", on_t.clone(), json!([{"userName": "ada@x.test"}]))],
                &platform_untrusted,
                &[],
                &[],
            ),
        ];
        for (what, teams, standings, spec_roles, want) in rows {
            let got = roles_on_target(T, &ada, &names(spec_roles), standings, teams.as_slice(), &mappings);
            assert_eq!(got, names(want), "{what}");
        }
        // The untrusted namespace's own users gain nothing from its team either.
        let eve = UserFacts { namespace: "dev", name: "eve", user_name: "eve@x.test", labels: &labels };
        let fake = vec![team("dev", "ops", on_t.clone(), json!([{"scimUserRef": "eve"}]))];
        assert!(roles_on_target(T, &eve, &names(&["admin"]), &dev_untrusted, &fake, &mappings).is_empty());
        // A team or a mapping being deleted gives nothing.
        let mut going = team("platform", "ops", on_t.clone(), by_ref.clone());
        going.metadata.deletion_timestamp = Some(crate::operator::now());
        assert!(roles_on_target(T, &ada, &[], &both, &[going], &mappings).is_empty());
        let mut gone = mapping("ops-admin", &["ops"], &["admin"]);
        gone.metadata.deletion_timestamp = Some(crate::operator::now());
        let teams = vec![team("platform", "ops", on_t, by_ref)];
        assert!(roles_on_target(T, &ada, &[], &both, &teams, &[gone]).is_empty());
    }

    #[test]
    fn only_the_namespaces_of_mapped_teams_the_user_is_a_member_of_are_asked() {
        let labels: BTreeMap<String, String> = [("team".to_string(), "sre".to_string())].into();
        let ada = UserFacts { namespace: "platform", name: "ada", user_name: "ada@x.test", labels: &labels };
        let on_t = json!([{"name": "kc"}]);
        let mappings = vec![mapping("m", &["ops", "auditors", "sre"], &["admin"])];
        // (what, teams, user trusted, namespaces asked)
        type Row<'a> = (&'a str, Vec<ManagedTeam>, bool, &'a [&'a str]);
        let rows: Vec<Row<'_>> = vec![
            ("no team", vec![], true, &[]),
            (
                "a member by scimUserRef elsewhere is none",
                vec![team("dev", "ops", on_t.clone(), json!([{"scimUserRef": "ada"}]))],
                true,
                &[],
            ),
            (
                "a member by userName elsewhere",
                vec![team("dev", "ops", on_t.clone(), json!([{"userName": "ADA@x.test"}]))],
                true,
                &["dev"],
            ),
            (
                "a userName member elsewhere counts only for a trusted user",
                vec![team("dev", "ops", on_t.clone(), json!([{"userName": "ada@x.test"}]))],
                false,
                &[],
            ),
            (
                "the user's own namespace is known already",
                vec![team("platform", "ops", on_t.clone(), json!([{"scimUserRef": "ada"}]))],
                true,
                &[],
            ),
            (
                "teams the user is no member of are not asked",
                vec![
                    team("dev", "ops", on_t.clone(), json!([{"userName": "bob@x.test"}])),
                    team("qa", "auditors", on_t.clone(), json!([{"userName": "ada@x.test"}])),
                    team("sales", "sre", on_t.clone(), json!([])),
                ],
                true,
                &["qa"],
            ),
            (
                "a team not mapped is not asked",
                vec![team("dev", "unmapped", on_t.clone(), json!([{"userName": "ada@x.test"}]))],
                true,
                &[],
            ),
            (
                "a team of another target is not asked",
                vec![team("dev", "ops", json!([{"name": "other"}]), json!([{"userName": "ada@x.test"}]))],
                true,
                &[],
            ),
        ];
        for (what, teams, user_trusted, want) in rows {
            let got = namespaces_to_ask(T, &ada, user_trusted, teams.as_slice(), &mappings);
            assert_eq!(got, want.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(), "{what}");
        }
    }

    #[test]
    fn only_what_this_resource_granted_is_withdrawn_and_the_intent_is_recorded_first() {
        // (keeps roles, target holds, granted before, asked) -> (document, intent, granted after)
        type Row<'a> =
            (bool, &'a [&'a str], &'a [&'a str], &'a [&'a str], &'a [&'a str], Option<&'a [&'a str]>, &'a [&'a str]);
        let rows: &[(&str, Row)] = &[
            (
                "first grant: recorded before it is sent",
                (true, &[], &[], &["admin"], &["admin"], Some(&["admin"]), &["admin"]),
            ),
            ("steady: nothing to record", (true, &["admin"], &["admin"], &["admin"], &["admin"], None, &["admin"])),
            ("emptied: withdrawn", (true, &["admin"], &["admin"], &[], &[], None, &[])),
            ("an administrator's role stays", (true, &["admin", "billing"], &["admin"], &[], &["billing"], None, &[])),
            (
                "asked, but the administrator's: kept, never recorded as granted",
                (true, &["billing"], &[], &["Billing"], &["billing"], None, &[]),
            ),
            (
                "replaced: the new one recorded with the old until the target answers",
                (true, &["admin"], &["admin"], &["viewer"], &["viewer"], Some(&["admin", "viewer"]), &["viewer"]),
            ),
            ("case does not matter", (true, &["ADMIN"], &["admin"], &["Admin"], &["ADMIN"], None, &["Admin"])),
            (
                "a target that keeps no roles: asked shown, nothing granted",
                (false, &[], &[], &["admin"], &["admin"], None, &[]),
            ),
        ];
        for (what, (keeps, held, granted, asked, document, intent, after)) in rows {
            let plan = target_role_plan(*keeps, &names(held), &names(granted), &names(asked));
            assert_eq!(plan.document, names(document), "{what}: document");
            assert_eq!(plan.intent, intent.map(names), "{what}: intent");
            assert_eq!(plan.granted, names(after), "{what}: granted after");
        }
    }
}
