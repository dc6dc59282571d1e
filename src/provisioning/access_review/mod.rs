//! The access review: every account, people and keys, as of a date (now by default), with what
//! it held then and why (which explicit SCIM role, which RoleMapping through which team, the
//! default role; a key's permissions), since when and granted by whom. Built from the current
//! rows and the audit trail ([`as_of`]); served by the console's page, its CSV,
//! `GET /api/v1/access-review` and `scim-operator access-review`, all through
//! [`Directory::access_review`].

pub mod as_of;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::access::Action;
use super::*;
use crate::clock::{format_time, parse_time};
use crate::store::{AuditQuery, UserRoleGrant};

pub use as_of::{ReviewInput, review_as_of};

/// One line of the review: one role of a person (a person without a role has one line with
/// none), or one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessRow {
    /// `person` or `key`.
    pub account_type: &'static str,
    /// The user's or the key's id.
    pub account_id: String,
    /// The userName, or the key's name.
    pub account: String,
    pub display_name: String,
    /// Whose account it is: a person's (primary) e-mail address or else userName; for a key,
    /// its owner's userName, or `Not a person` for a service account's.
    pub owner: String,
    /// `active` or `deactivated` (a person), `active` or `revoked` (a key), as of the date.
    pub status: &'static str,
    pub created: String,
    /// When a deactivated person was deactivated (`None` if no deactivation is recorded, e.g.
    /// a user created inactive), when a revoked key was revoked.
    pub deactivated: Option<String>,
    /// The role's name; a key's permissions (`;`-separated); empty for a person without a role.
    pub access: String,
    /// Why: `scim` (an explicit SCIM role), `mapping`, `default` (as
    /// `/api/v1/users/{id}/access` says), `key` (a key's own permissions), `none`, or
    /// `unknown` (a role the audit trail names without its path, see [`as_of`]).
    pub source: String,
    /// For a mapped role, each `RoleMapping through team` (`;`-separated); for a person's key,
    /// `owned by <userName>`.
    pub via: String,
    /// Since when the role is held through this path (a key: its creation); `None` when it was
    /// granted before grant times were recorded.
    pub granted_at: Option<String>,
    /// Who granted it: the audit actor (a key id, `cli:<user>`, `console:<userName>`,
    /// `system`); `None` when unknown.
    pub granted_by: Option<String>,
    /// The person's teams as of the date (`;`-separated).
    pub teams: String,
    /// A key's last recorded use, if at or before the date (only the latest use is kept, so a
    /// key used since shows none).
    pub last_used: Option<String>,
}

/// A role grant as audit events record it (`grantsBefore` of `role.provision` and
/// `role.revoke`, `holders` of `role.delete`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantDetail {
    /// The user holding it.
    #[serde(default)]
    pub user: Option<String>,
    pub role_id: String,
    /// The role's name.
    pub role: String,
    pub source: String,
    pub granted_at: Option<String>,
    pub granted_by: Option<String>,
}

impl From<&UserRoleGrant> for GrantDetail {
    fn from(g: &UserRoleGrant) -> Self {
        Self {
            user: Some(g.user_id.clone()),
            role_id: g.role.id.clone(),
            role: g.role.name.clone(),
            source: g.grant.source.clone(),
            granted_at: g.grant.granted_at.clone(),
            granted_by: g.grant.granted_by.clone(),
        }
    }
}

/// The CSV's header: the columns of Vanta's access file first (one line per role, so an
/// account with two roles has two lines), then this server's own.
pub const CSV_HEADER: [&str; 17] = [
    "Account name",
    "Account owner",
    "Role",
    "Status",
    "Date created (UTC)",
    "Date deactivated (UTC)",
    "account_type",
    "account_id",
    "display_name",
    "source",
    "via",
    "granted_at",
    "granted_by",
    "teams",
    "created_at",
    "deactivated_at",
    "last_used_at",
];

/// The date part of a stored timestamp (`YYYY-MM-DD`), as Vanta's date columns take it.
fn day(t: &str) -> &str {
    t.get(..10).unwrap_or(t)
}

impl AccessRow {
    /// Vanta's status words: a revoked key is a deactivated account.
    pub fn vanta_status(&self) -> &'static str {
        if self.status == "active" { "Active" } else { "Deactivated" }
    }

    fn fields(&self) -> [&str; 17] {
        fn opt(v: &Option<String>) -> &str {
            v.as_deref().unwrap_or("")
        }
        [
            &self.account,
            &self.owner,
            &self.access,
            self.vanta_status(),
            day(&self.created),
            self.deactivated.as_deref().map(day).unwrap_or(""),
            self.account_type,
            &self.account_id,
            &self.display_name,
            &self.source,
            &self.via,
            opt(&self.granted_at),
            opt(&self.granted_by),
            &self.teams,
            &self.created,
            opt(&self.deactivated),
            opt(&self.last_used),
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

/// The review as JSON: `{"asOf": ..., "accounts": [...]}`, each account an [`AccessRow`] with
/// camelCase names.
pub fn access_review_json(as_of: &str, rows: &[AccessRow]) -> Value {
    json!({"asOf": as_of, "accounts": rows})
}

/// How a review is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewFormat {
    Json,
    Csv,
}

impl ReviewFormat {
    /// `json` or `csv`; anything else is a 400 `invalidValue`.
    pub fn parse(s: &str) -> Result<Self, ScimError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "csv" => Ok(Self::Csv),
            other => Err(ScimError::invalid_value(format!("format must be json or csv, not '{other}'"))),
        }
    }
}

/// Parses the date of a review: an RFC 3339 time, or a day `YYYY-MM-DD` meaning the end of that
/// day in UTC (today: now). A date in the future, or text that is neither, is a 400
/// `invalidValue` saying so. Returns the time in the stored form.
pub fn parse_as_of(text: &str, now: DateTime<Utc>) -> Result<String, ScimError> {
    let text = text.trim();
    let at = if let Some(t) = parse_time(text) {
        t
    } else if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        if d == now.date_naive() {
            now
        } else {
            let end = d
                .and_hms_milli_opt(23, 59, 59, 999)
                .ok_or_else(|| ScimError::invalid_value(format!("asOf '{text}' has no end of day (out of range)")))?;
            end.and_utc()
        }
    } else {
        return Err(ScimError::invalid_value(format!(
            "asOf '{text}' is neither an RFC 3339 time (2026-03-31T23:59:59Z) nor a date (2026-03-31)"
        )));
    };
    if at > now {
        return Err(ScimError::invalid_value(format!(
            "asOf '{text}' is in the future (now is {}): the review reports what was, not what will be",
            format_time(now)
        )));
    }
    Ok(format_time(at))
}

impl Directory {
    /// The access review as of `as_of` (see [`parse_as_of`]; `None`: now), with the time it is
    /// of in the stored form. Needs both [`Action::ReadUserAccess`] and [`Action::ReadKeys`]
    /// (`directory_read`, or `user_access_manage` with `keys_manage`).
    pub async fn access_review(
        &self,
        ctx: &RequestContext,
        as_of: Option<&str>,
    ) -> Result<(String, Vec<AccessRow>), ScimError> {
        ctx.authorize(Action::ReadUserAccess)?;
        ctx.authorize(Action::ReadKeys)?;
        let now = self.clock.now();
        let at = match as_of {
            Some(text) => parse_as_of(text, now)?,
            None => format_time(now),
        };
        // One snapshot: the rows and the events that lead to them.
        let mut tx = self.store.begin_read().await?;
        let after = AuditQuery { since: Some(at.clone()), ..AuditQuery::default() };
        let mut events = tx.list_audit_of(&after, &as_of::UNDONE).await?;
        let before = AuditQuery { until: Some(at.clone()), ..AuditQuery::default() };
        events.extend(tx.list_audit_of(&before, &as_of::ALWAYS_READ).await?);
        // Oldest first, as the rollback needs; ties keep the store's (commit) order.
        events.sort_by(|a, b| a.time.cmp(&b.time));
        let input = ReviewInput {
            accounts: tx.all_accounts().await?,
            grants: tx.role_grants(None).await?,
            memberships: tx.memberships().await?,
            teams: tx.list_teams().await?,
            mappings: tx.role_mappings().await?,
            roles: tx.roles().await?,
            keys: tx.list_keys().await?,
            events,
        };
        let rows = review_as_of(&input, &at);
        Ok((at, rows))
    }
}

#[cfg(test)]
mod tests;
