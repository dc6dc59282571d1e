//! Rows as the rest of the program sees them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A user row. `data` is the normalised SCIM document without `id`, `meta` and `groups`.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: String,
    pub user_name: String,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub active: bool,
    pub data: Map<String, Value>,
    /// RFC 3339 timestamps (see [`crate::clock::format_time`]).
    pub created: String,
    pub last_modified: String,
    /// Incremented on every change; the ETag is derived from it.
    pub version: i64,
}

/// A team row. A team is a SCIM Group while `scim_id` is set (managed by an identity provider).
#[derive(Debug, Clone, PartialEq)]
pub struct TeamRecord {
    pub id: String,
    pub name: String,
    pub handle: String,
    pub scim_id: Option<String>,
    pub external_id: Option<String>,
    /// `namespace/name` of the ManagedTeam that declares the team, as the operator told the
    /// server (only kept while `external_id` is an operator marker).
    pub declared_by: Option<String>,
    /// Group document without `id`, `meta` and `members`.
    pub data: Map<String, Value>,
    pub created: String,
    pub last_modified: String,
    pub version: i64,
}

/// Who controls an application key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyOwner {
    /// A service account: survives any user's offboarding (recommended for SCIM).
    ServiceAccount,
    /// A user: revoked when that user is deactivated or deleted.
    User,
}

impl KeyOwner {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyOwner::ServiceAccount => "service_account",
            KeyOwner::User => "user",
        }
    }
    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "service_account" => Some(KeyOwner::ServiceAccount),
            "user" => Some(KeyOwner::User),
            _ => None,
        }
    }
}

/// An application key. Only the SHA-256 of the secret is kept.
#[derive(Clone, PartialEq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    pub owner: KeyOwner,
    pub owner_user_id: Option<String>,
    pub secret_hash: String,
    /// The first characters of the secret, enough to recognise it, too few to use it.
    pub hint: String,
    pub permissions: Vec<String>,
    pub created: String,
    pub revoked_at: Option<String>,
    pub revoked_reason: Option<String>,
    /// When a request last authenticated with the key (recorded at most once a minute; `None`
    /// when never used since use was recorded).
    pub last_used_at: Option<String>,
}

impl std::fmt::Debug for ApiKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash is not the secret, but it is what an attacker with the log would match against.
        f.debug_struct("ApiKeyRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("owner", &self.owner)
            .field("owner_user_id", &self.owner_user_id)
            .field("secret_hash", &"<redacted>")
            .field("hint", &self.hint)
            .field("permissions", &self.permissions)
            .field("created", &self.created)
            .field("revoked_at", &self.revoked_at)
            .finish()
    }
}

/// One append-only audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: String,
    pub time: String,
    /// The key id that acted, or `cli:<user>` / `system`.
    pub actor: String,
    /// Dotted action name, e.g. `user.create`, `role.unmatched`.
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub request_id: Option<String>,
    /// What changed.
    pub details: Value,
}

/// Filters for reading the audit trail.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only events at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Only events strictly before this RFC 3339 time.
    pub until: Option<String>,
    pub action: Option<String>,
    /// Only events by this actor (a key id, `cli:<user>`, `console:<userName>`, `system`).
    pub actor: Option<String>,
    pub target_id: Option<String>,
    pub limit: Option<u64>,
}

/// A role mapping rule: members of `teams` (team names) receive `role_ids`.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleMappingRecord {
    pub id: String,
    pub display_name: String,
    pub external_id: Option<String>,
    /// The SCIM document without id, meta, roles and teams.
    pub data: Map<String, Value>,
    pub role_ids: Vec<String>,
    pub teams: Vec<String>,
    pub created: String,
    pub last_modified: String,
    pub version: i64,
}

/// State of an invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Cancelled,
}

impl InvitationStatus {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            InvitationStatus::Pending => "pending",
            InvitationStatus::Accepted => "accepted",
            InvitationStatus::Cancelled => "cancelled",
        }
    }
    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(InvitationStatus::Pending),
            "accepted" => Some(InvitationStatus::Accepted),
            "cancelled" => Some(InvitationStatus::Cancelled),
            _ => None,
        }
    }
}

/// An invitation to sign in for the first time.
#[derive(Clone, PartialEq)]
pub struct InvitationRecord {
    pub id: String,
    pub user_id: String,
    pub token_hash: String,
    pub email: String,
    pub created: String,
    pub expires_at: String,
    pub status: InvitationStatus,
    pub status_at: Option<String>,
}

impl std::fmt::Debug for InvitationRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvitationRecord")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("token_hash", &"<redacted>")
            .field("email", &self.email)
            .field("expires_at", &self.expires_at)
            .field("status", &self.status)
            .finish()
    }
}

/// What a message body holds in place of its invitation link (see [`OutboxMessage::link`]).
pub const LINK_PLACEHOLDER: &str = "{invitation-link}";

/// A message in the outbox.
#[derive(Clone, PartialEq)]
pub struct OutboxMessage {
    pub id: String,
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    /// The text, with [`LINK_PLACEHOLDER`] where the link goes.
    pub body: String,
    pub created: String,
    /// Delivery attempts made (failed ones, plus the one that succeeded).
    pub attempts: i64,
    pub last_error: Option<String>,
    pub sent_at: Option<String>,
    /// The invitation the message carries, if any.
    pub invitation_id: Option<String>,
    /// The invitation link, kept only until the message is sent, parked or withdrawn.
    pub link: Option<String>,
    /// Not before this time (set after a failed attempt).
    pub next_attempt_at: Option<String>,
    /// Set after the last allowed attempt failed: the message is not retried.
    pub parked_at: Option<String>,
    /// Set when its invitation was cancelled before it was sent: the message is not sent.
    pub cancelled_at: Option<String>,
}

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxState {
    /// Waiting for its (next) attempt.
    Pending,
    Sent,
    /// Every allowed attempt failed; `last_error` says why.
    Parked,
    /// Withdrawn: its invitation was cancelled first.
    Cancelled,
}

impl OutboxState {
    /// Display spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Sent => "sent",
            OutboxState::Parked => "parked",
            OutboxState::Cancelled => "cancelled",
        }
    }
}

impl OutboxMessage {
    /// The message's state, from its timestamps.
    pub fn state(&self) -> OutboxState {
        if self.sent_at.is_some() {
            OutboxState::Sent
        } else if self.parked_at.is_some() {
            OutboxState::Parked
        } else if self.cancelled_at.is_some() {
            OutboxState::Cancelled
        } else {
            OutboxState::Pending
        }
    }

    /// The text to send: the body with its link in place.
    pub fn rendered_body(&self) -> String {
        match &self.link {
            Some(link) => self.body.replace(LINK_PLACEHOLDER, link),
            None => self.body.clone(),
        }
    }
}

impl std::fmt::Debug for OutboxMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The link is a credential until it is used: never in logs.
        f.debug_struct("OutboxMessage")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("recipient", &self.recipient)
            .field("subject", &self.subject)
            .field("created", &self.created)
            .field("attempts", &self.attempts)
            .field("last_error", &self.last_error)
            .field("state", &self.state())
            .field("invitation_id", &self.invitation_id)
            .field("link", &self.link.as_ref().map(|_| "<redacted>"))
            .field("next_attempt_at", &self.next_attempt_at)
            .finish()
    }
}

/// A role of the catalog: a built-in one (Admin, Standard, Read Only) or one an administrator
/// added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// Stable id (built-in roles have fixed ones).
    pub id: String,
    /// Name, unique without regard to case.
    pub name: String,
    /// Whether the role is built in (built-in roles cannot be deleted).
    pub builtin: bool,
    /// What the role allows, for people.
    pub description: String,
}

/// A grant written with a user's effective roles: the role, why the user holds it, and when and
/// by whom it was granted (`None` for grants made before these were recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleGrant {
    pub role_id: String,
    /// `scim`, `mapping` or `default`.
    pub source: String,
    pub granted_at: Option<String>,
    /// The audit actor of the request that granted it.
    pub granted_by: Option<String>,
}

/// A role a user holds, with its grant (see [`RoleGrant`]).
#[derive(Debug, Clone, PartialEq)]
pub struct UserRoleGrant {
    pub user_id: String,
    pub role: Role,
    pub grant: RoleGrant,
}

/// A user's membership of a team, with when and by whom it was added (`None` for memberships
/// added before these were recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub team_id: String,
    pub user_id: String,
    pub added_at: Option<String>,
    pub added_by: Option<String>,
}

/// A user row, deleted or not, as the access review reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountRecord {
    pub user: UserRecord,
    /// When the user was deleted over SCIM (the row stays, disabled).
    pub deleted_at: Option<String>,
}
