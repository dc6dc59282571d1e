//! What the console's pages show, read in one place: users with their invitations, keys and the
//! path of each effective role; teams with their provenance, members and role mappings; the
//! audit trail and its CSV export (the same CSV as `scim-operator audit --format csv`).

use serde_json::Value;

use super::roles::Role;
use super::*;
use crate::operator::ownership::MARKER_PREFIX;
use crate::scim::list::SortOrder;
use crate::store::{
    ApiKeyRecord, InvitationRecord, ListSpec, OutboxMessage, RoleMappingRecord, TeamRecord, UserRecord,
};

/// Where a team comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// Pushed by an identity provider over SCIM: "managed externally", changed only there.
    IdentityProvider,
    /// Declared by a ManagedTeam resource in Kubernetes (the operator's ownership marker).
    Kubernetes {
        cluster: String,
        namespace: String,
        /// The resource's uid (markers of the first releases carry only this).
        uid: String,
        /// `namespace/name` of the ManagedTeam, when the operator told the server (the marker
        /// does not carry the name).
        declared_by: Option<String>,
    },
    /// Made by an administrator (command line or console); no identity provider manages it.
    Administrator,
}

/// The provenance of `team`, from whether it is a SCIM Group and who marked its `externalId`.
pub fn provenance(team: &TeamRecord) -> Provenance {
    if team.scim_id.is_none() {
        return Provenance::Administrator;
    }
    match team.external_id.as_deref().and_then(|e| e.strip_prefix(MARKER_PREFIX)) {
        Some(marker) => {
            // `<cluster>/<namespace>/<uid>`; the cluster's name may itself hold slashes.
            let mut parts = marker.rsplitn(3, '/');
            let uid = parts.next().unwrap_or_default().to_string();
            let namespace = parts.next().unwrap_or_default().to_string();
            let cluster = parts.next().unwrap_or_default().to_string();
            Provenance::Kubernetes { cluster, namespace, uid, declared_by: team.declared_by.clone() }
        }
        None => Provenance::IdentityProvider,
    }
}

/// One effective role of a user and why the user holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolePath {
    pub role: Role,
    /// `scim` (sent by the identity provider), `mapping` or `default`.
    pub source: String,
    /// For a mapped role: each (role mapping, team) through which it applies.
    pub via: Vec<(String, String)>,
}

/// A user's invitation and the delivery of its message.
#[derive(Debug, Clone)]
pub struct InvitationView {
    pub invitation: InvitationRecord,
    /// Whether it is still pending but past its expiry.
    pub expired: bool,
    /// The message that carries it, if one was queued (link removed).
    pub message: Option<OutboxMessage>,
}

/// Everything the user page shows.
#[derive(Debug, Clone)]
pub struct UserDetail {
    pub user: UserRecord,
    pub roles: Vec<RolePath>,
    pub teams: Vec<TeamRecord>,
    /// Newest first.
    pub invitations: Vec<InvitationView>,
    pub keys: Vec<ApiKeyRecord>,
}

/// Everything the team page shows.
#[derive(Debug, Clone)]
pub struct TeamDetail {
    pub team: TeamRecord,
    pub provenance: Provenance,
    pub members: Vec<UserRecord>,
    /// Role mappings naming this team, with the names of the roles they grant.
    pub mappings: Vec<(RoleMappingRecord, Vec<String>)>,
}

/// Messages read to find the delivery state of a user's invitations.
const OUTBOX_WINDOW: u64 = 5000;

/// The paths of the roles in `roles` (from `RoleReads::user_roles`), given the mappings and the
/// names of the teams the user belongs to. Pure, so the rule is tested without a store.
pub fn role_paths(roles: &[(Role, String)], mappings: &[RoleMappingRecord], user_teams: &[String]) -> Vec<RolePath> {
    roles
        .iter()
        .map(|(role, source)| {
            let via = if source == "mapping" {
                mappings
                    .iter()
                    .filter(|m| m.role_ids.contains(&role.id))
                    .flat_map(|m| {
                        m.teams
                            .iter()
                            .filter(|t| user_teams.contains(t))
                            .map(move |t| (m.display_name.clone(), t.clone()))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            RolePath { role: role.clone(), source: source.clone(), via }
        })
        .collect()
}

impl Directory {
    /// Users whose userName, display name or e-mail contains `search` (all users when it is
    /// empty), by userName, at most `limit`; with the total that matched.
    pub async fn search_users(&self, search: &str, limit: u64) -> Result<(u64, Vec<UserRecord>), ScimError> {
        let search = search.trim();
        let filter = if search.is_empty() {
            None
        } else {
            // A JSON string is exactly a SCIM filter's string literal.
            let lit = Value::String(search.to_string()).to_string();
            Some(crate::scim::filter::parse_filter(&format!(
                "userName co {lit} or displayName co {lit} or emails.value co {lit}"
            ))?)
        };
        let sort = crate::scim::filter::parse_attr_path("userName")?;
        let spec = ListSpec {
            resource_type: &self.types.user,
            filter: filter.as_ref(),
            sort_by: Some(&sort),
            sort_order: SortOrder::Ascending,
            offset: 0,
            limit,
        };
        Ok(self.store.read().await?.list_users(&spec).await?)
    }

    /// A user with the path of each role, teams, invitations and keys (by id).
    pub async fn user_detail(&self, id: &str) -> Result<UserDetail, ScimError> {
        let mut tx = self.store.begin_read().await?;
        let user = tx.user(id).await?.ok_or_else(|| ScimError::not_found(format!("User {id} not found")))?;
        let mut teams = Vec::new();
        for team in tx.list_teams().await? {
            if tx.team_members(&team.id).await?.contains(&user.id) {
                teams.push(team);
            }
        }
        let names: Vec<String> = teams.iter().map(|t| t.name.clone()).collect();
        let roles = role_paths(&tx.user_roles(&user.id).await?, &tx.role_mappings().await?, &names);
        let outbox = tx.outbox(OUTBOX_WINDOW).await?;
        let now = self.clock.now();
        let invitations = tx
            .invitations(Some(&user.id))
            .await?
            .into_iter()
            .map(|inv| {
                let message = outbox
                    .iter()
                    .find(|m| m.invitation_id.as_deref() == Some(inv.id.as_str()))
                    .map(|m| OutboxMessage { link: None, body: String::new(), ..m.clone() });
                let expired = inv.status == crate::store::InvitationStatus::Pending
                    && crate::clock::parse_time(&inv.expires_at).is_none_or(|t| now >= t);
                InvitationView { invitation: inv, expired, message }
            })
            .collect();
        let keys = tx
            .list_keys()
            .await?
            .into_iter()
            .filter(|k| k.owner_user_id.as_deref() == Some(user.id.as_str()))
            .collect();
        Ok(UserDetail { user, roles, teams, invitations, keys })
    }

    /// A team (by id) with its provenance, members and the role mappings naming it.
    pub async fn team_detail(&self, id: &str) -> Result<TeamDetail, ScimError> {
        let mut tx = self.store.begin_read().await?;
        let team = tx.team(id).await?.ok_or_else(|| ScimError::not_found(format!("no team {id}")))?;
        let mut members = Vec::new();
        for uid in tx.team_members(&team.id).await? {
            if let Some(u) = tx.user(&uid).await? {
                members.push(u);
            }
        }
        members.sort_by(|a, b| a.user_name.cmp(&b.user_name));
        let catalog = tx.roles().await?;
        let mappings = tx
            .role_mappings()
            .await?
            .into_iter()
            .filter(|m| m.teams.contains(&team.name))
            .map(|m| {
                let roles = m
                    .role_ids
                    .iter()
                    .map(|id| catalog.iter().find(|r| &r.id == id).map_or_else(|| id.clone(), |r| r.name.clone()))
                    .collect();
                (m, roles)
            })
            .collect();
        Ok(TeamDetail { provenance: provenance(&team), team, members, mappings })
    }
}

/// The columns of the audit CSV, in order.
pub const AUDIT_CSV_HEADER: [&str; 8] =
    ["time", "id", "actor", "action", "targetType", "targetId", "requestId", "details"];

/// The audit trail as CSV (RFC 4180): one row per event, `details` as compact JSON. The console's
/// export and `scim-operator audit --format csv` both write this.
pub fn audit_csv(events: &[crate::store::AuditEvent]) -> Result<String, ScimError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| ScimError::new(500, None, format!("writing the audit CSV: {e}"));
    w.write_record(AUDIT_CSV_HEADER).map_err(fail)?;
    for e in events {
        let details = e.details.to_string();
        w.write_record([
            e.time.as_str(),
            e.id.as_str(),
            e.actor.as_str(),
            e.action.as_str(),
            e.target_type.as_str(),
            e.target_id.as_str(),
            e.request_id.as_deref().unwrap_or(""),
            details.as_str(),
        ])
        .map_err(fail)?;
    }
    let bytes = w.into_inner().map_err(|e| ScimError::new(500, None, format!("writing the audit CSV: {e}")))?;
    String::from_utf8(bytes).map_err(|e| ScimError::new(500, None, format!("writing the audit CSV: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    fn team(scim_id: Option<&str>, external_id: Option<&str>) -> TeamRecord {
        TeamRecord {
            id: "t".into(),
            name: "Team".into(),
            handle: "team".into(),
            scim_id: scim_id.map(str::to_string),
            external_id: external_id.map(str::to_string),
            declared_by: None,
            data: Map::new(),
            created: String::new(),
            last_modified: String::new(),
            version: 1,
        }
    }

    #[test]
    fn provenance_follows_the_group_and_the_ownership_marker() {
        assert_eq!(provenance(&team(None, None)), Provenance::Administrator);
        assert_eq!(provenance(&team(Some("g"), None)), Provenance::IdentityProvider);
        assert_eq!(provenance(&team(Some("g"), Some("00gokta123"))), Provenance::IdentityProvider);
        assert_eq!(
            provenance(&team(Some("g"), Some("k8s:prod/eu/west/payments/1234-uid"))),
            Provenance::Kubernetes {
                cluster: "prod/eu/west".into(),
                namespace: "payments".into(),
                uid: "1234-uid".into(),
                declared_by: None
            }
        );
        assert_eq!(
            provenance(&team(Some("g"), Some("k8s:1234-uid"))),
            Provenance::Kubernetes {
                cluster: String::new(),
                namespace: String::new(),
                uid: "1234-uid".into(),
                declared_by: None
            }
        );
        let declared = TeamRecord {
            declared_by: Some("payments/billing".into()),
            ..team(Some("g"), Some("k8s:prod/payments/1234-uid"))
        };
        assert_eq!(
            provenance(&declared),
            Provenance::Kubernetes {
                cluster: "prod".into(),
                namespace: "payments".into(),
                uid: "1234-uid".into(),
                declared_by: Some("payments/billing".into())
            }
        );
    }

    fn mapping(name: &str, roles: &[&str], teams: &[&str]) -> RoleMappingRecord {
        RoleMappingRecord {
            id: name.into(),
            display_name: name.into(),
            external_id: None,
            data: Map::new(),
            role_ids: roles.iter().map(|s| s.to_string()).collect(),
            teams: teams.iter().map(|s| s.to_string()).collect(),
            created: String::new(),
            last_modified: String::new(),
            version: 1,
        }
    }

    #[test]
    fn mapped_roles_name_each_mapping_and_team_they_come_through() {
        let admin = Role { id: "a".into(), name: "Admin".into(), builtin: true, description: String::new() };
        let std = Role { id: "s".into(), name: "Standard".into(), builtin: true, description: String::new() };
        let mappings = [
            mapping("sre-admins", &["a"], &["SRE", "Ops"]),
            mapping("oncall", &["a", "s"], &["Oncall"]),
            mapping("other", &["a"], &["Finance"]),
        ];
        let teams = ["SRE".to_string(), "Oncall".to_string()];
        let paths =
            role_paths(&[(admin.clone(), "mapping".into()), (std.clone(), "default".into())], &mappings, &teams);
        assert_eq!(paths[0].via, [("sre-admins".into(), "SRE".into()), ("oncall".into(), "Oncall".into())]);
        assert_eq!(paths[1].source, "default");
        assert!(paths[1].via.is_empty(), "a default role comes through no team");
    }

    #[test]
    fn the_audit_csv_quotes_what_needs_quoting() {
        let e = crate::store::AuditEvent {
            id: "e1".into(),
            time: "2026-01-01T00:00:00.000Z".into(),
            actor: "console:ann@example.com".into(),
            action: "key.create".into(),
            target_type: "key".into(),
            target_id: "k1".into(),
            request_id: None,
            details: json!({"name": "okta, prod", "q": "\"x\""}),
        };
        let csv = audit_csv(&[e]).expect("csv");
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("time,id,actor,action,targetType,targetId,requestId,details"));
        let row = lines.next().expect("a row");
        assert!(row.starts_with("2026-01-01T00:00:00.000Z,e1,console:ann@example.com,key.create,key,k1,,\"{"), "{row}");
        assert_eq!(lines.next(), None);
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let record = reader.records().next().expect("one record").expect("valid CSV");
        assert_eq!(record.len(), AUDIT_CSV_HEADER.len());
        assert_eq!(&record[7], r#"{"name":"okta, prod","q":"\"x\""}"#, "the details read back intact");
        assert_eq!(&record[6], "", "no request id");
    }
}
