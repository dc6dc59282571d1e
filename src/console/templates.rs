//! The pages' templates (compile-checked by askama; HTML-escaped by default).

use askama::Template;

use crate::provisioning::console_views::{TeamDetail, UserDetail};
use crate::store::{AuditEvent, UserRecord};

/// The header of a signed-in page.
pub struct Nav {
    pub user_name: String,
    /// The person's effective roles, joined.
    pub roles: String,
    /// No change form is theirs to submit.
    pub read_only: bool,
    pub csrf: String,
    /// Their own user id (their own page is always theirs to read).
    pub user_id: String,
    /// Which sections they may open.
    pub users: bool,
    pub teams: bool,
    pub keys: bool,
    pub audit: bool,
    pub access_review: bool,
    /// The recent provisioning requests (read like the audit trail).
    pub requests: bool,
    /// Connecting an identity provider.
    pub connect: bool,
}

#[derive(Template)]
#[template(path = "console/error.html")]
pub struct ErrorPage<'a> {
    pub nav: Option<Nav>,
    pub section: &'a str,
    pub notice: Option<String>,
    pub heading: &'a str,
    pub message: &'a str,
}

#[derive(Template)]
#[template(path = "console/signin.html")]
pub struct SigninPage<'a> {
    pub nav: Option<Nav>,
    pub section: &'a str,
    pub notice: Option<String>,
    pub oidc: bool,
    pub message: Option<String>,
}

#[derive(Template)]
#[template(path = "console/link.html")]
pub struct LinkPage<'a> {
    pub nav: Option<Nav>,
    pub section: &'a str,
    pub notice: Option<String>,
    pub token: &'a str,
    pub expires_at: &'a str,
}

#[derive(Template)]
#[template(path = "console/users.html")]
pub struct UsersPage<'a> {
    pub nav: Option<Nav>,
    pub section: &'a str,
    pub notice: Option<String>,
    pub q: &'a str,
    pub total: u64,
    pub shown: u64,
    pub rows: Vec<UserRecord>,
}

#[derive(Template)]
#[template(path = "console/user.html")]
pub struct UserPage<'a> {
    pub nav: Option<Nav>,
    pub section: &'a str,
    pub notice: Option<String>,
    pub d: UserDetail,
    pub display_name: String,
    pub external_id: String,
    pub can_change: bool,
    pub csrf: &'a str,
}

/// One row of the teams page.
pub struct TeamRow {
    pub id: String,
    pub name: String,
    pub provenance: String,
    pub members: u64,
}

#[derive(Template)]
#[template(path = "console/teams.html")]
pub struct TeamsPage<'a> {
    pub nav: Option<Nav>,
    pub section: &'a str,
    pub notice: Option<String>,
    pub rows: Vec<TeamRow>,
    /// The person may make teams.
    pub can_change: bool,
    pub csrf: &'a str,
}

#[derive(Template)]
#[template(path = "console/team.html")]
pub struct TeamPage<'a> {
    pub nav: Option<Nav>,
    pub section: &'a str,
    pub notice: Option<String>,
    pub d: TeamDetail,
    pub provenance: String,
    /// The person may change this team's members (a team no identity provider manages).
    pub can_change: bool,
    pub csrf: &'a str,
}

/// The audit filter as typed (shown back in the form).
#[derive(Debug, Default, Clone, serde::Deserialize, serde::Serialize)]
pub struct AuditFilter {
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub actor: String,
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
pub struct AuditPage<'a> {
    pub nav: Option<Nav>,
    pub section: &'a str,
    pub notice: Option<String>,
    pub f: AuditFilter,
    pub error: Option<String>,
    pub total: u64,
    pub shown: u64,
    pub rows: Vec<AuditEvent>,
    /// `?action=...` of the filter, for the CSV link.
    pub csv_query: String,
}

/// One row of the keys page.
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub hint: String,
    pub permissions: String,
    pub created: String,
    /// When the key last authenticated (recorded at most once a minute), or "never".
    pub last_used: String,
    pub revoked: Option<String>,
}

/// A key just created: its secret, shown on this response only.
pub struct CreatedKey {
    pub name: String,
    /// Its permissions, joined.
    pub permissions: String,
    pub secret: String,
    pub personal: bool,
}

#[derive(Template)]
#[template(path = "console/keys.html")]
pub struct KeysPage<'a> {
    pub nav: Option<Nav>,
    pub section: &'a str,
    pub notice: Option<String>,
    pub rows: Vec<KeyRow>,
    pub warnings: Vec<String>,
    pub created: Option<CreatedKey>,
    /// Each preset's name and permissions, joined.
    pub presets: Vec<(&'static str, String)>,
    /// Every permission's name.
    pub permissions: Vec<&'static str>,
    pub csrf: &'a str,
}

#[derive(Template)]
#[template(path = "console/access_review.html")]
pub struct AccessReviewPage<'a> {
    pub nav: Option<Nav>,
    pub section: &'a str,
    pub notice: Option<String>,
    /// The date as typed in the form (empty: now).
    pub as_of_input: String,
    /// The time the review is of (empty when the date was refused).
    pub as_of: String,
    /// Why the date was refused.
    pub error: Option<String>,
    /// `?asOf=...` for the CSV link, or empty.
    pub csv_query: String,
    pub rows: Vec<crate::provisioning::access_review::AccessRow>,
}

/// One row of the recent provisioning requests.
pub struct RequestRow {
    pub time: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The key's name; `None` when no valid key made the request.
    pub key_name: Option<String>,
    /// The latency in words ("12.3 ms").
    pub latency: String,
}

#[derive(Template)]
#[template(path = "console/requests.html")]
pub struct RequestsPage<'a> {
    pub nav: Option<Nav>,
    pub section: &'a str,
    pub notice: Option<String>,
    pub rows: Vec<RequestRow>,
    /// The status class chosen, and every class with its label.
    pub status: &'a str,
    pub classes: Vec<(&'static str, &'static str)>,
    /// The key chosen (an id, `none`, or empty for any), and every key (id, name) seen.
    pub key: &'a str,
    pub keys: Vec<(String, String)>,
    /// Rows shown at most.
    pub limit: u64,
}

/// What a discovery test found.
pub struct ProbeResult {
    pub steps: Vec<crate::client::probe::ProbeStep>,
    /// A key was sent.
    pub with_key: bool,
    /// Every endpoint answered as a SCIM service provider does.
    pub all_ok: bool,
    /// Some endpoint answered at all.
    pub reachable: bool,
}

#[derive(Template)]
#[template(path = "console/connect.html")]
pub struct ConnectPage<'a> {
    pub nav: Option<Nav>,
    pub section: &'a str,
    pub notice: Option<String>,
    pub scim_url: &'a str,
    /// `--base-url` set it.
    pub configured: bool,
    /// The `identity-provider` preset's permissions, joined.
    pub preset_permissions: String,
    /// The person may make keys (a link to the keys page).
    pub can_make_keys: bool,
    pub csrf: &'a str,
    pub probe: Option<ProbeResult>,
}
