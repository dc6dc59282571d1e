//! The access review: every account, people and keys, with what it holds now and why (which
//! explicit SCIM role, which RoleMapping through which team, the default role; a key's
//! permissions), read in one snapshot for the console's page and its CSV export.

use std::collections::HashMap;

use super::access::Action;
use super::console_views::role_paths;
use super::*;
use crate::scim::list::SortOrder;
use crate::store::{KeyOwner, ListSpec};

/// Users read per statement while the review is built.
const PAGE: u64 = 500;

/// One line of the review: one role of a person (a person without a role has one line with
/// none), or one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRow {
    /// `person` or `key`.
    pub account_type: &'static str,
    /// The user's or the key's id.
    pub account_id: String,
    /// The userName, or the key's name.
    pub account: String,
    pub display_name: String,
    /// `active` or `deactivated` (a person), `active` or `revoked` (a key).
    pub status: &'static str,
    pub created: String,
    /// The role's name; a key's permissions (`;`-separated); empty for a person without a role.
    pub access: String,
    /// Why: `scim` (an explicit SCIM role), `mapping`, `default` (as
    /// `/api/v1/users/{id}/access` says), `key` (a key's own permissions) or `none`.
    pub source: String,
    /// For a mapped role, each `RoleMapping through team` (`;`-separated); for a person's key,
    /// `owned by <userName>`.
    pub via: String,
    /// The person's teams (`;`-separated).
    pub teams: String,
}

/// The CSV's header, in the order of [`AccessRow`]'s fields.
pub const CSV_HEADER: [&str; 10] =
    ["account_type", "account_id", "account", "display_name", "status", "created", "access", "source", "via", "teams"];

impl AccessRow {
    fn fields(&self) -> [&str; 10] {
        [
            self.account_type,
            &self.account_id,
            &self.account,
            &self.display_name,
            self.status,
            &self.created,
            &self.access,
            &self.source,
            &self.via,
            &self.teams,
        ]
    }
}

/// The review as CSV (RFC 4180), one line per [`AccessRow`] under [`CSV_HEADER`].
pub fn access_review_csv(rows: &[AccessRow]) -> Result<String, ScimError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| ScimError::new(500, None, format!("writing the access review CSV failed: {e}"));
    w.write_record(CSV_HEADER).map_err(fail)?;
    for row in rows {
        w.write_record(row.fields()).map_err(fail)?;
    }
    let bytes = w.into_inner().map_err(|e| fail(e.into_error().into()))?;
    String::from_utf8(bytes).map_err(|e| ScimError::new(500, None, format!("the access review CSV is not UTF-8: {e}")))
}

impl Directory {
    /// Every account with what it holds now and why: people by userName (each effective role
    /// and its path), then keys (their permissions). Needs both
    /// [`Action::ReadUserAccess`] and [`Action::ReadKeys`].
    pub async fn access_review(&self, ctx: &RequestContext) -> Result<Vec<AccessRow>, ScimError> {
        ctx.authorize(Action::ReadUserAccess)?;
        ctx.authorize(Action::ReadKeys)?;
        let mut tx = self.store.begin_read().await?;
        let mappings = tx.role_mappings().await?;
        let mut teams_of: HashMap<String, Vec<String>> = HashMap::new();
        for team in tx.list_teams().await? {
            for user in tx.team_members(&team.id).await? {
                teams_of.entry(user).or_default().push(team.name.clone());
            }
        }
        let sort = crate::scim::filter::parse_attr_path("userName")?;
        let mut rows = Vec::new();
        let mut names = HashMap::new();
        let mut offset = 0;
        loop {
            let spec = ListSpec {
                resource_type: &self.types.user,
                filter: None,
                sort_by: Some(&sort),
                sort_order: SortOrder::Ascending,
                offset,
                limit: PAGE,
            };
            let (total, users) = tx.list_users(&spec).await?;
            for user in &users {
                let teams = teams_of.get(&user.id).cloned().unwrap_or_default();
                let paths = role_paths(&tx.user_roles(&user.id).await?, &mappings, &teams);
                let person = |access: String, source: String, via: String| AccessRow {
                    account_type: "person",
                    account_id: user.id.clone(),
                    account: user.user_name.clone(),
                    display_name: user.display_name.clone().unwrap_or_default(),
                    status: if user.active { "active" } else { "deactivated" },
                    created: user.created.clone(),
                    access,
                    source,
                    via,
                    teams: teams.join(";"),
                };
                if paths.is_empty() {
                    rows.push(person(String::new(), "none".into(), String::new()));
                }
                for p in paths {
                    let via: Vec<String> = p.via.iter().map(|(m, t)| format!("{m} through {t}")).collect();
                    rows.push(person(p.role.name, p.source, via.join(";")));
                }
                names.insert(user.id.clone(), user.user_name.clone());
            }
            offset += users.len() as u64;
            if users.is_empty() || offset >= total {
                break;
            }
        }
        for key in tx.list_keys().await? {
            let via = match (&key.owner, &key.owner_user_id) {
                (KeyOwner::User, Some(id)) => format!("owned by {}", names.get(id).unwrap_or(id)),
                _ => String::new(),
            };
            rows.push(AccessRow {
                account_type: "key",
                status: if key.revoked_at.is_some() { "revoked" } else { "active" },
                account_id: key.id,
                account: key.name,
                display_name: String::new(),
                created: key.created,
                access: key.permissions.join(";"),
                source: "key".into(),
                via,
                teams: String::new(),
            });
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csv_quotes_what_needs_quoting_under_its_header() {
        let row = AccessRow {
            account_type: "person",
            account_id: "u1".into(),
            account: "ann@example.com".into(),
            display_name: "Ann, \"the admin\"".into(),
            status: "active",
            created: "2026-01-01T00:00:00.000Z".into(),
            access: "Read Only".into(),
            source: "mapping".into(),
            via: "ops through Ops;audit through Ops".into(),
            teams: "Ops".into(),
        };
        let csv = access_review_csv(&[row]).unwrap();
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some(CSV_HEADER.join(",").as_str()));
        assert_eq!(
            lines.next(),
            Some(
                "person,u1,ann@example.com,\"Ann, \"\"the admin\"\"\",active,2026-01-01T00:00:00.000Z,Read Only,mapping,ops through Ops;audit through Ops,Ops"
            )
        );
        assert_eq!(lines.next(), None);
    }
}
