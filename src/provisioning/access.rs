//! Who may do what: the permissions a key carries, the actions of the provisioning layer, and
//! [`allowed`], the one place that decides whether a set of permissions allows an action.
//!
//! The names follow the seeds (Datadog's SCIM application key needs `user_access_invite` and
//! `user_access_manage`) and split the rest so that each use gets only what it needs: an
//! identity provider provisions users and teams, the Kubernetes operator also maintains
//! RoleMappings and the objects it owns, an administrator may do everything.

use std::collections::BTreeSet;

use crate::scim::ScimError;

/// One permission a key (or, later, a signed-in person) may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// `user_access_invite`: create users, which sends their invitation; read users (to find
    /// whether one exists before creating it).
    UserAccessInvite,
    /// `user_access_manage`: read, change (attributes, explicit SCIM `roles`, `active`) and
    /// delete users, and read a user's effective access (`/api/v1/users/{id}/access`).
    UserAccessManage,
    /// `teams_manage`: read, create, link, change and unlink teams (SCIM groups) and their
    /// members, and teams no identity provider manages.
    TeamsManage,
    /// `role_mappings_manage`: read and change RoleMappings (roles granted to the members of
    /// named teams).
    RoleMappingsManage,
    /// `roles_manage`: change the role catalog and the default role.
    RolesManage,
    /// `kubernetes_owned_manage`: delete users and teams that carry the operator's ownership
    /// marker in `externalId` (`k8s:...`), change such an `externalId`, or write one.
    KubernetesOwnedManage,
    /// `keys_manage`: create, list and revoke application keys.
    KeysManage,
    /// `audit_logs_read`: read the audit trail.
    AuditLogsRead,
    /// `directory_read`: read users, their effective access, teams, RoleMappings and keys (never
    /// a secret), and change nothing (an auditor's key, or the console's `Read Only` role).
    DirectoryRead,
}

impl Permission {
    /// Every permission, in the order they are documented.
    pub const ALL: [Permission; 9] = [
        Permission::UserAccessInvite,
        Permission::UserAccessManage,
        Permission::TeamsManage,
        Permission::RoleMappingsManage,
        Permission::RolesManage,
        Permission::KubernetesOwnedManage,
        Permission::KeysManage,
        Permission::AuditLogsRead,
        Permission::DirectoryRead,
    ];

    /// The stored and documented name.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::UserAccessInvite => "user_access_invite",
            Permission::UserAccessManage => "user_access_manage",
            Permission::TeamsManage => "teams_manage",
            Permission::RoleMappingsManage => "role_mappings_manage",
            Permission::RolesManage => "roles_manage",
            Permission::KubernetesOwnedManage => "kubernetes_owned_manage",
            Permission::KeysManage => "keys_manage",
            Permission::AuditLogsRead => "audit_logs_read",
            Permission::DirectoryRead => "directory_read",
        }
    }

    /// The permission of this name (exact, lower case).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions(BTreeSet<Permission>);

impl Permissions {
    /// No permission at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// Every permission: the command line (whoever can open the database) and the server itself.
    pub fn all() -> Self {
        Self::of(&Permission::ALL)
    }

    /// Exactly these.
    pub fn of(permissions: &[Permission]) -> Self {
        Self(permissions.iter().copied().collect())
    }

    /// Parses names given by a person (`keys create --permission`): unknown names are an error
    /// that lists the known ones.
    pub fn parse<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Result<Self, ScimError> {
        let mut set = BTreeSet::new();
        for name in names {
            let name = name.as_ref().trim();
            let p = Permission::parse(name).ok_or_else(|| {
                let known: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
                ScimError::invalid_value(format!("unknown permission '{name}'; known: {}", known.join(", ")))
            })?;
            set.insert(p);
        }
        Ok(Self(set))
    }

    /// Reads the names stored with a key. A name this release does not know (written by a newer
    /// one) grants nothing here rather than failing every request of the key.
    pub fn from_stored(names: &[String]) -> Self {
        Self(names.iter().filter_map(|n| Permission::parse(n)).collect())
    }

    /// Whether the set holds `p`.
    pub fn contains(&self, p: Permission) -> bool {
        self.0.contains(&p)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every permission of this set is in `other`.
    pub fn is_subset(&self, other: &Permissions) -> bool {
        self.0.is_subset(&other.0)
    }

    /// The permissions of this set that `other` lacks.
    pub fn without(&self, other: &Permissions) -> Self {
        Self(self.0.difference(&other.0).copied().collect())
    }

    /// Both sets together.
    pub fn union(&self, other: &Permissions) -> Self {
        Self(self.0.union(&other.0).copied().collect())
    }

    /// The permissions, in documented order.
    pub fn iter(&self) -> impl Iterator<Item = Permission> + '_ {
        self.0.iter().copied()
    }

    /// The names, in documented order, as stored.
    pub fn names(&self) -> Vec<String> {
        self.iter().map(|p| p.as_str().to_string()).collect()
    }
}

/// Permission sets for the usual kinds of key (`keys create --preset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// `identity-provider`: what Okta and Microsoft Entra ID need to provision users, their
    /// roles and groups: `user_access_invite`, `user_access_manage`, `teams_manage`. The
    /// default of `keys create`.
    IdentityProvider,
    /// `operator`: exactly what the Kubernetes operator calls: the identity provider's
    /// permissions, `role_mappings_manage` and `kubernetes_owned_manage`. The bootstrap key
    /// (the chart's operator key) gets these.
    Operator,
    /// `admin`: every permission.
    Admin,
}

impl Preset {
    /// Every preset.
    pub const ALL: [Preset; 3] = [Preset::IdentityProvider, Preset::Operator, Preset::Admin];

    /// The documented name.
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::IdentityProvider => "identity-provider",
            Preset::Operator => "operator",
            Preset::Admin => "admin",
        }
    }

    /// The preset of this name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// Its permissions.
    pub fn permissions(self) -> Permissions {
        use Permission::*;
        match self {
            Preset::IdentityProvider => Permissions::of(&[UserAccessInvite, UserAccessManage, TeamsManage]),
            Preset::Operator => Permissions::of(&[
                UserAccessInvite,
                UserAccessManage,
                TeamsManage,
                RoleMappingsManage,
                KubernetesOwnedManage,
            ]),
            Preset::Admin => Permissions::all(),
        }
    }
}

/// What a request asks the provisioning layer to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read and list users.
    ReadUsers,
    /// Create a user (and send its invitation), or issue a fresh invitation.
    InviteUsers,
    /// Replace or patch a user, deactivate or reactivate it, set its explicit roles.
    ChangeUsers,
    /// Delete a user.
    DeleteUsers,
    /// Read a user's effective roles and teams.
    ReadUserAccess,
    /// Read and list teams.
    ReadTeams,
    /// Create, link, change or unlink teams and their members.
    ChangeTeams,
    /// Read and list RoleMappings.
    ReadRoleMappings,
    /// Create, change or delete RoleMappings.
    ChangeRoleMappings,
    /// Change the role catalog or the default role.
    ChangeRoleCatalog,
    /// Delete, re-mark or mark an object with the operator's ownership marker.
    ChangeKubernetesOwned,
    /// Create, list or revoke keys.
    ManageKeys,
    /// Read the audit trail.
    ReadAuditTrail,
    /// Read keys: names, owners, permissions and dates, never a secret (the access review).
    ReadKeys,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 14] = [
        Action::ReadUsers,
        Action::InviteUsers,
        Action::ChangeUsers,
        Action::DeleteUsers,
        Action::ReadUserAccess,
        Action::ReadTeams,
        Action::ChangeTeams,
        Action::ReadRoleMappings,
        Action::ChangeRoleMappings,
        Action::ChangeRoleCatalog,
        Action::ChangeKubernetesOwned,
        Action::ManageKeys,
        Action::ReadAuditTrail,
        Action::ReadKeys,
    ];

    /// The permissions any one of which allows the action.
    pub fn granted_by(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            // Creating needs to look first (a userName filter), so inviting includes reading.
            Action::ReadUsers => &[UserAccessInvite, UserAccessManage, DirectoryRead],
            Action::InviteUsers => &[UserAccessInvite],
            Action::ChangeUsers | Action::DeleteUsers => &[UserAccessManage],
            Action::ReadUserAccess => &[UserAccessManage, DirectoryRead],
            Action::ReadTeams => &[TeamsManage, DirectoryRead],
            Action::ChangeTeams => &[TeamsManage],
            Action::ReadRoleMappings => &[RoleMappingsManage, DirectoryRead],
            Action::ChangeRoleMappings => &[RoleMappingsManage],
            Action::ChangeRoleCatalog => &[RolesManage],
            Action::ChangeKubernetesOwned => &[KubernetesOwnedManage],
            Action::ManageKeys => &[KeysManage],
            Action::ReadAuditTrail => &[AuditLogsRead],
            Action::ReadKeys => &[KeysManage, DirectoryRead],
        }
    }

    /// What the action does, in words ("change teams").
    pub fn describe(self) -> &'static str {
        match self {
            Action::ReadUsers => "read users",
            Action::InviteUsers => "create (invite) users",
            Action::ChangeUsers => "change users",
            Action::DeleteUsers => "delete users",
            Action::ReadUserAccess => "read a user's access",
            Action::ReadTeams => "read teams",
            Action::ChangeTeams => "change teams",
            Action::ReadRoleMappings => "read RoleMappings",
            Action::ChangeRoleMappings => "change RoleMappings",
            Action::ChangeRoleCatalog => "change the role catalog",
            Action::ChangeKubernetesOwned => {
                "delete, re-mark or mark objects owned by Kubernetes resources (externalId 'k8s:...')"
            }
            Action::ManageKeys => "manage keys",
            Action::ReadAuditTrail => "read the audit trail",
            Action::ReadKeys => "read keys",
        }
    }
}

/// Whether `permissions` allow `action`: the one place this is decided.
pub fn allowed(permissions: &Permissions, action: Action) -> bool {
    action.granted_by().iter().any(|p| permissions.contains(*p))
}

/// Whether `permissions`, held by the user `acting_user` (a person signed in to the console;
/// `None` for a key), allow `action` on the user `target_user`: as [`allowed`], except that a
/// person may always read their own user and access (their own page in the console).
pub fn allowed_on_user(
    permissions: &Permissions,
    action: Action,
    acting_user: Option<&str>,
    target_user: &str,
) -> bool {
    let own = acting_user == Some(target_user) && matches!(action, Action::ReadUsers | Action::ReadUserAccess);
    own || allowed(permissions, action)
}

/// The permissions of a person signed in to the console, from the ids of their effective roles
/// (README: *The console*). A person never holds more than the union of their roles':
///
/// | effective role | permissions |
/// |---|---|
/// | `Admin` | the `admin` preset (every permission) |
/// | `Standard`, `Read Only` | `directory_read`, `audit_logs_read`: every page but keys, no change |
/// | a custom role | none: only their own page ([`allowed_on_user`]); the console cannot know what a
/// | | role it did not define means (map such people to Read Only for more) |
pub fn role_permissions<'a>(role_ids: impl IntoIterator<Item = &'a str>) -> Permissions {
    use super::roles::{ADMIN_ROLE_ID, READ_ONLY_ROLE_ID, STANDARD_ROLE_ID};
    role_ids.into_iter().fold(Permissions::none(), |held, role| {
        let of_role = match role {
            ADMIN_ROLE_ID => Preset::Admin.permissions(),
            // Admin changes, the others read.
            READ_ONLY_ROLE_ID | STANDARD_ROLE_ID => {
                Permissions::of(&[Permission::DirectoryRead, Permission::AuditLogsRead])
            }
            _ => Permissions::none(),
        };
        held.union(&of_role)
    })
}

/// `Ok` when `permissions` allow `action`, else the 403 SCIM error that names what is missing.
pub fn check(permissions: &Permissions, action: Action) -> Result<(), ScimError> {
    if allowed(permissions, action) {
        return Ok(());
    }
    let needed: Vec<&str> = action.granted_by().iter().map(|p| p.as_str()).collect();
    Err(ScimError::forbidden(format!(
        "this key may not {}: that needs the permission {} (`scim-operator keys list` shows a key's permissions)",
        action.describe(),
        needed.join(" or ")
    )))
}

/// `Ok` when a holder of `held` may hand out `granted` (to a key it creates): never a
/// permission it lacks itself, else 403 naming those.
pub fn check_grant(held: &Permissions, granted: &Permissions) -> Result<(), ScimError> {
    if granted.is_subset(held) {
        return Ok(());
    }
    Err(ScimError::forbidden(format!(
        "a key may not get permissions its creator lacks: {}",
        granted.without(held).names().join(", ")
    )))
}

/// Prefix of the operator's ownership markers in `externalId` (see the operator's ownership
/// module): objects carrying one belong to a Kubernetes resource.
pub const KUBERNETES_MARKER_PREFIX: &str = "k8s:";

/// Whether an `externalId` is an operator ownership marker.
pub fn is_kubernetes_owned(external_id: Option<&str>) -> bool {
    external_id.is_some_and(|e| e.starts_with(KUBERNETES_MARKER_PREFIX))
}

/// Who is asking: the authenticated key (or, later, person) with its permissions. What
/// [`super::Directory::authenticate`] returns, and what a [`super::RequestContext`] is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The actor recorded in the audit trail (a key id, `cli:<user>`, `system`).
    pub actor: String,
    /// A human-readable name (the key's name).
    pub name: String,
    /// What it may do.
    pub permissions: Permissions,
}

impl Principal {
    /// The principal of an unrevoked key.
    pub fn from_key(key: &crate::store::ApiKeyRecord) -> Self {
        Self { actor: key.id.clone(), name: key.name.clone(), permissions: Permissions::from_stored(&key.permissions) }
    }

    /// A principal with every permission (the command line, the server's own tasks).
    pub fn trusted(actor: impl Into<String>) -> Self {
        let actor = actor.into();
        Self { name: actor.clone(), actor, permissions: Permissions::all() }
    }

    /// Whether it may do `action` ([`allowed`]).
    pub fn may(&self, action: Action) -> bool {
        allowed(&self.permissions, action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;
    use Permission::*;

    /// permission -> allowed, for every action: the table the README's security model states.
    #[test]
    fn each_permission_allows_exactly_its_actions() {
        let table: &[(Permission, &[Action])] = &[
            (UserAccessInvite, &[ReadUsers, InviteUsers]),
            (DirectoryRead, &[ReadUsers, ReadUserAccess, ReadTeams, ReadRoleMappings, ReadKeys]),
            (UserAccessManage, &[ReadUsers, ChangeUsers, DeleteUsers, ReadUserAccess]),
            (TeamsManage, &[ReadTeams, ChangeTeams]),
            (RoleMappingsManage, &[ReadRoleMappings, ChangeRoleMappings]),
            (RolesManage, &[ChangeRoleCatalog]),
            (KubernetesOwnedManage, &[ChangeKubernetesOwned]),
            (KeysManage, &[ManageKeys, ReadKeys]),
            (AuditLogsRead, &[ReadAuditTrail]),
        ];
        assert_eq!(table.len(), Permission::ALL.len(), "every permission is in the table");
        for (permission, actions) in table {
            let only = Permissions::of(&[*permission]);
            for action in Action::ALL {
                assert_eq!(allowed(&only, action), actions.contains(&action), "{permission} alone and {action:?}");
            }
        }
        for action in Action::ALL {
            assert!(!allowed(&Permissions::none(), action), "no permission allows {action:?}");
            assert!(allowed(&Permissions::all(), action), "every permission allows {action:?}");
        }
    }

    #[test]
    fn an_identity_providers_preset_provisions_but_grants_no_roles_through_mappings() {
        let idp = Preset::IdentityProvider.permissions();
        for a in [ReadUsers, InviteUsers, ChangeUsers, DeleteUsers, ReadUserAccess, ReadTeams, ChangeTeams] {
            assert!(allowed(&idp, a), "{a:?}");
        }
        for a in
            [ReadRoleMappings, ChangeRoleMappings, ChangeRoleCatalog, ChangeKubernetesOwned, ManageKeys, ReadAuditTrail]
        {
            assert!(!allowed(&idp, a), "{a:?}");
        }
        let operator = Preset::Operator.permissions();
        for a in [ChangeRoleMappings, ChangeKubernetesOwned, ReadUserAccess] {
            assert!(allowed(&operator, a), "{a:?}");
        }
        for a in [ChangeRoleCatalog, ManageKeys, ReadAuditTrail] {
            assert!(!allowed(&operator, a), "the operator never calls {a:?}");
        }
        assert_eq!(Preset::Admin.permissions(), Permissions::all());
    }

    #[test]
    fn roles_map_to_console_permissions() {
        use crate::provisioning::roles::{ADMIN_ROLE_ID, READ_ONLY_ROLE_ID, STANDARD_ROLE_ID};
        assert_eq!(role_permissions([ADMIN_ROLE_ID]), Permissions::all());
        assert_eq!(role_permissions([STANDARD_ROLE_ID, ADMIN_ROLE_ID]), Permissions::all());
        for role in [READ_ONLY_ROLE_ID, STANDARD_ROLE_ID] {
            let reader = role_permissions([role]);
            for a in Action::ALL {
                let reads =
                    matches!(a, ReadUsers | ReadUserAccess | ReadTeams | ReadRoleMappings | ReadAuditTrail | ReadKeys);
                assert_eq!(allowed(&reader, a), reads, "{role} and {a:?}: Admin changes, the others read");
            }
        }
        for plain in [role_permissions(["a-custom-role"]), role_permissions([])] {
            assert!(plain.is_empty());
            assert!(allowed_on_user(&plain, ReadUsers, Some("u1"), "u1"), "their own page");
            assert!(allowed_on_user(&plain, ReadUserAccess, Some("u1"), "u1"));
            assert!(!allowed_on_user(&plain, ReadUsers, Some("u1"), "u2"), "nobody else's");
            assert!(!allowed_on_user(&plain, InviteUsers, Some("u1"), "u1"), "not even a resend of their own");
            assert!(!allowed_on_user(&plain, ReadUsers, None, "u1"));
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_refused_or_ignored() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
        }
        for p in Preset::ALL {
            assert_eq!(Preset::parse(p.as_str()), Some(p));
        }
        let parsed = Permissions::parse(["teams_manage", " user_access_invite"]).unwrap();
        assert_eq!(parsed.names(), ["user_access_invite", "teams_manage"]);
        let err = Permissions::parse(["teams_manage", "everything"]).unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.detail.contains("unknown permission 'everything'") && err.detail.contains("keys_manage"));
        let stored = Permissions::from_stored(&["teams_manage".into(), "from_a_newer_release".into()]);
        assert_eq!(stored, Permissions::of(&[TeamsManage]));
    }

    #[test]
    fn a_refusal_is_a_403_naming_the_missing_permission() {
        let err = check(&Preset::IdentityProvider.permissions(), ChangeRoleMappings).unwrap_err();
        assert_eq!(err.status, 403);
        assert!(err.detail.contains("role_mappings_manage"), "{}", err.detail);
        assert!(check(&Preset::IdentityProvider.permissions(), InviteUsers).is_ok());
    }

    #[test]
    fn ownership_markers_are_recognised_by_their_prefix() {
        assert!(is_kubernetes_owned(Some("k8s:c/ns/uid")));
        assert!(is_kubernetes_owned(Some("k8s:uid")));
        assert!(!is_kubernetes_owned(Some("00u-okta")));
        assert!(!is_kubernetes_owned(None));
    }
}
