//! Who owns a SCIM object, and what a resource may do with the one the server holds.
//!
//! The operator records ownership in the object's `externalId` as a marker it derives from what
//! no namespace can choose: the cluster's identity, the resource's namespace and its uid
//! (`k8s:<cluster>/<namespace>/<uid>`). A resource cannot set the server's `externalId` to a
//! marker (a spec's `externalId` may not start with `k8s:`, and is sent only to targets that
//! keep no marker), so no resource can produce another one's marker; knowing a marker
//! does not help either. Markers of the first releases (`k8s:<uid>`) are recognised when the
//! uid is this resource's and are rewritten to the current form.
//!
//! Every decision here is a pure function of what was fetched from the server, the resource and
//! whether its namespace is trusted, so it is tested as a table.

mod records;
pub use records::{Holder, ObjectKey, ObjectKind, Origin, OwnershipRecords, Record, RecordError, RecordOwner};

/// Prefix of every ownership marker: an `externalId` with it belongs to some Kubernetes resource.
pub const MARKER_PREFIX: &str = "k8s:";

/// The identity of one resource as an owner of SCIM objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    marker: String,
    legacy: String,
}

impl Owner {
    /// The owner for the resource `uid` in `namespace` (empty for cluster-scoped resources) of
    /// the cluster `cluster`.
    pub fn new(cluster: &str, namespace: &str, uid: &str) -> Self {
        Self { marker: format!("{MARKER_PREFIX}{cluster}/{namespace}/{uid}"), legacy: format!("{MARKER_PREFIX}{uid}") }
    }

    /// The marker the operator writes into `externalId`.
    pub fn marker(&self) -> &str {
        &self.marker
    }

    /// How an `externalId` read from the server relates to this owner.
    pub fn claim(&self, external_id: Option<&str>) -> Claim {
        match external_id {
            Some(e) if e == self.marker => Claim::Ours,
            Some(e) if e == self.legacy => Claim::OursLegacy,
            Some(e) if e.starts_with(MARKER_PREFIX) => Claim::OtherResource,
            _ => Claim::Unowned,
        }
    }
}

/// Whose a server object is, seen from one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Carries this resource's marker.
    Ours,
    /// Carries this resource's marker of the first releases (`k8s:<uid>`); to be migrated.
    OursLegacy,
    /// Carries another resource's marker (of this cluster or another).
    OtherResource,
    /// Created by someone else (an identity provider, an administrator, a script) and open to
    /// being taken over: a user no resource owns, or a team no one manages.
    Unowned,
    /// A team an identity provider manages (a linked SCIM group no resource owns): never
    /// taken over.
    IdentityProvider,
}

/// What the server holds for a resource, as far as ownership goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Nothing of that name (or id).
    Nothing,
    /// An object, with its claim.
    Object(Claim),
}

/// What a resource asks for beyond its own objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// Take over (adopt a user, link a team) an object nobody owns.
    pub take_over: bool,
    /// Whether the resource's namespace is trusted.
    pub trusted: bool,
}

/// The create-or-adopt decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is there: create it.
    Create,
    /// It is ours: bring it to the spec (and migrate a legacy marker).
    Update,
    /// Nobody owns it and the resource may take it over: do so.
    TakeOver,
    /// Write nothing, for this reason.
    Refuse(Refusal),
}

/// Why nothing is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Another resource owns the object.
    OwnedByAnotherResource,
    /// Nobody owns it, and the resource did not ask to take it over.
    NotTakenOver,
    /// Nobody owns it; the resource asked to take it over, but its namespace is not trusted.
    TakeOverNotAllowed,
    /// An identity provider manages it.
    ManagedByIdentityProvider,
}

/// Decides what a resource may do with what the server holds.
pub fn decide(held: Held, ask: Ask) -> Decision {
    match held {
        Held::Nothing => Decision::Create,
        Held::Object(Claim::Ours | Claim::OursLegacy) => Decision::Update,
        Held::Object(Claim::OtherResource) => Decision::Refuse(Refusal::OwnedByAnotherResource),
        Held::Object(Claim::IdentityProvider) => Decision::Refuse(Refusal::ManagedByIdentityProvider),
        Held::Object(Claim::Unowned) => match ask {
            Ask { take_over: false, .. } => Decision::Refuse(Refusal::NotTakenOver),
            Ask { take_over: true, trusted: false } => Decision::Refuse(Refusal::TakeOverNotAllowed),
            Ask { take_over: true, trusted: true } => Decision::TakeOver,
        },
    }
}

/// Who owns a server user, as its `externalId` says, seen from this cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserOwner<'a> {
    /// No resource: an identity provider, an administrator or a script made it.
    Unowned,
    /// A resource of this cluster, in this namespace.
    Namespace(&'a str),
    /// A resource of the first releases (`k8s:<uid>`), this uid; its namespace is not in the
    /// marker.
    Legacy(&'a str),
    /// A resource of another cluster, whose namespaces this one does not judge.
    OtherCluster,
}

/// Reads the owner of a user from its `externalId`.
pub fn user_owner<'a>(cluster: &str, external_id: Option<&'a str>) -> UserOwner<'a> {
    let Some(rest) = external_id.and_then(|e| e.strip_prefix(MARKER_PREFIX)) else {
        return UserOwner::Unowned;
    };
    let mut parts = rest.rsplitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_uid), Some(namespace), Some(c)) if c == cluster && !namespace.is_empty() => {
            UserOwner::Namespace(namespace)
        }
        (Some(uid), None, None) => UserOwner::Legacy(uid),
        _ => UserOwner::OtherCluster,
    }
}

/// Why a trusted team may not add a user by userName.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberRefusal {
    /// A ScimUser of a namespace that is not trusted owns it (and chose its e-mail).
    UntrustedNamespace(String),
    /// A resource of another cluster owns it.
    OtherCluster,
    /// A resource owns it whose namespace is unknown (an earlier release's marker, its
    /// ScimUser not seen).
    UnknownOwner,
}

/// Whether a trusted team may add a user it names by userName: only one nobody owns (an
/// identity provider's or an administrator's) or one a ScimUser of a trusted namespace owns.
pub fn member_allowed(owner: UserOwner<'_>, trusted: impl Fn(&str) -> bool) -> Result<(), MemberRefusal> {
    match owner {
        UserOwner::Unowned => Ok(()),
        UserOwner::Namespace(ns) if trusted(ns) => Ok(()),
        UserOwner::Namespace(ns) => Err(MemberRefusal::UntrustedNamespace(ns.to_string())),
        UserOwner::OtherCluster => Err(MemberRefusal::OtherCluster),
        UserOwner::Legacy(_) => Err(MemberRefusal::UnknownOwner),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_read_from_the_marker() {
        let me = Owner::new("c1", "platform", "u1");
        assert_eq!(me.marker(), "k8s:c1/platform/u1");
        assert_eq!(me.claim(Some("k8s:c1/platform/u1")), Claim::Ours);
        assert_eq!(me.claim(Some("k8s:u1")), Claim::OursLegacy);
        assert_eq!(me.claim(Some("k8s:u2")), Claim::OtherResource, "another resource's legacy marker");
        assert_eq!(me.claim(Some("k8s:c1/dev/u1")), Claim::OtherResource, "same uid, other namespace");
        assert_eq!(me.claim(Some("k8s:c2/platform/u1")), Claim::OtherResource, "another cluster");
        assert_eq!(me.claim(Some("00u1okta")), Claim::Unowned);
        assert_eq!(me.claim(None), Claim::Unowned);
    }

    #[test]
    fn the_decision_table() {
        use Claim::*;
        use Decision::*;
        use Refusal::*;
        let cases = [
            // (held, take_over, trusted) -> decision
            (Held::Nothing, false, false, Create),
            (Held::Nothing, true, false, Create),
            (Held::Nothing, true, true, Create),
            (Held::Object(Ours), false, false, Update),
            (Held::Object(OursLegacy), false, false, Update),
            (Held::Object(Ours), true, true, Update),
            (Held::Object(OtherResource), false, false, Refuse(OwnedByAnotherResource)),
            (Held::Object(OtherResource), true, true, Refuse(OwnedByAnotherResource)),
            (Held::Object(OtherResource), true, false, Refuse(OwnedByAnotherResource)),
            (Held::Object(Unowned), false, false, Refuse(NotTakenOver)),
            (Held::Object(Unowned), false, true, Refuse(NotTakenOver)),
            (Held::Object(Unowned), true, false, Refuse(TakeOverNotAllowed)),
            (Held::Object(Unowned), true, true, TakeOver),
            (Held::Object(IdentityProvider), false, false, Refuse(ManagedByIdentityProvider)),
            (Held::Object(IdentityProvider), true, true, Refuse(ManagedByIdentityProvider)),
        ];
        for (held, take_over, trusted, want) in cases {
            assert_eq!(
                decide(held, Ask { take_over, trusted }),
                want,
                "{held:?} take_over={take_over} trusted={trusted}"
            );
        }
    }

    #[test]
    fn who_owns_a_user() {
        use UserOwner::*;
        let cases = [
            (None, Unowned),
            (Some("00u-okta"), Unowned),
            (Some("K8S:c1/dev/u1"), Unowned),
            (Some("k8s:c1/dev/u1"), Namespace("dev")),
            (Some("k8s:c1/platform/u9"), Namespace("platform")),
            (Some("k8s:c2/platform/u9"), OtherCluster),
            (Some("k8s:c1//u9"), OtherCluster),
            (Some("k8s:x/c1/dev/u1"), OtherCluster),
            (Some("k8s:u1"), Legacy("u1")),
        ];
        for (external_id, want) in cases {
            assert_eq!(user_owner("c1", external_id), want, "{external_id:?}");
        }
    }

    #[test]
    fn which_users_a_trusted_team_may_add() {
        use MemberRefusal::*;
        let trusted = |ns: &str| ns == "platform";
        let cases = [
            (UserOwner::Unowned, Ok(())),
            (UserOwner::Namespace("platform"), Ok(())),
            (UserOwner::Namespace("dev"), Err(UntrustedNamespace("dev".into()))),
            (UserOwner::OtherCluster, Err(OtherCluster)),
            (UserOwner::Legacy("u1"), Err(UnknownOwner)),
        ];
        for (owner, want) in cases {
            assert_eq!(member_allowed(owner, trusted), want, "{owner:?}");
        }
    }
}
