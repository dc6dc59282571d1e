//! The console's handlers: read through `crate::provisioning`, render a template; a change
//! arrives as a [`Change`] (signed-in person, form, CSRF token checked) and passes
//! [`Change::require`] (the person's role) and is made by provisioning with the
//! signed-in person as the audit actor.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::ConsoleState;
use super::session::{self, Change, CsrfField, Signed, request_id, require, require_on_user};
use super::templates::*;
use crate::provisioning::access::{Action, Permission, Permissions, Preset};
use crate::provisioning::access_review as review;
use crate::provisioning::console::ConsoleUser;
use crate::provisioning::console_views::{Provenance, audit_csv as render_audit_csv, provenance};
use crate::provisioning::request_log::StatusClass;
use crate::scim::ScimError;
use crate::store::{AuditQuery, KeyOwner, RequestQuery};

/// Users listed on one page at most.
const USERS_SHOWN: u64 = 200;
/// Audit events shown on the page at most (the CSV has them all).
const AUDIT_SHOWN: usize = 500;
/// Recent provisioning requests shown at most.
const REQUESTS_SHOWN: u64 = 300;

/// Renders a template, or a plain 500 if it cannot be (a bug: templates are compile-checked).
fn render(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a console page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

/// A page saying what went wrong.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let heading = match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::BAD_REQUEST => "Not accepted",
        _ => "Something went wrong",
    };
    render(status, &ErrorPage { nav: None, section: "", notice: None, heading, message })
}

/// A provisioning error as a page, with the status provisioning gave it.
fn scim_error_page(e: ScimError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::warn!(error = %e.detail, "a console request failed");
    }
    error_page(status, &e.detail)
}

/// After a change: on to the page `to` names (post/redirect/get), or the page of the error.
fn redirect_or_error<T>(result: Result<T, ScimError>, to: impl FnOnce(T) -> String) -> Response {
    match result {
        Ok(done) => Redirect::to(&to(done)).into_response(),
        Err(e) => scim_error_page(e),
    }
}

/// A CSV export, downloaded as `filename`.
fn csv_download(filename: &str, csv: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        ],
        csv,
    )
        .into_response()
}

fn nav(person: &ConsoleUser) -> Option<Nav> {
    Some(Nav {
        user_name: person.user_name.clone(),
        roles: person.roles.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", "),
        read_only: !person.may_change_anything(),
        csrf: person.csrf_token.clone(),
        user_id: person.user_id.clone(),
        users: person.may(Action::ReadUsers),
        teams: person.may(Action::ReadTeams),
        keys: person.may(Action::ManageKeys),
        audit: person.may(Action::ReadAuditTrail),
        access_review: person.may(Action::ReadUserAccess) && person.may(Action::ReadKeys),
        requests: person.may(Action::ReadAuditTrail),
        connect: person.may(Action::ReadKeys),
    })
}

/// The fixed messages a redirect after a change may ask the next page to show (never text
/// from the query string itself).
#[derive(Debug, Deserialize)]
pub struct NoticeQuery {
    #[serde(default)]
    notice: Option<String>,
}

impl NoticeQuery {
    fn message(&self) -> Option<String> {
        let text = match self.notice.as_deref()? {
            "resent" => "A new invitation was issued; the earlier link no longer works.",
            "no-address" => "The user has no e-mail address to invite.",
            "revoked" => "The key was revoked.",
            "team-created" => "The team was made; no identity provider manages it.",
            "member-added" => "The member was added.",
            "member-removed" => "The member was removed.",
            _ => return None,
        };
        Some(text.to_string())
    }
}

/// A form that carries only its CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Each change form hands its `csrf` field to [`Change`].
macro_rules! csrf_field {
    ($($form:ty),+) => {$(
        impl CsrfField for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        }
    )+};
}

csrf_field!(CsrfForm, TeamForm, MemberForm, ConnectTestForm, CreateKeyForm);

/// The first page a person may see: the users, or else their own page.
pub async fn home(Signed(person): Signed) -> Redirect {
    if person.may(Action::ReadUsers) {
        Redirect::to("/console/users")
    } else {
        Redirect::to(&format!("/console/users/{}", person.user_id))
    }
}

pub async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("console.css"),
    )
        .into_response()
}

/// htmx, embedded (`vendor/README.md` says where it comes from).
pub(crate) const HTMX_JS: &[u8] = include_bytes!("vendor/htmx.min.js");

/// The embedded htmx: its path names its version, so it may be cached for a year.
pub async fn htmx() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        HTMX_JS,
    )
        .into_response()
}

pub async fn not_found() -> Response {
    error_page(StatusCode::NOT_FOUND, "There is no such console page.")
}

// ---------------------------------------------------------------- signing in and out

#[derive(Debug, Deserialize)]
pub struct SigninQuery {
    #[serde(default)]
    reason: Option<String>,
}

pub async fn signin(State(s): State<ConsoleState>, Query(q): Query<SigninQuery>) -> Response {
    let message = match q.reason.as_deref() {
        Some("expired") => Some("Your session ended; sign in again.".to_string()),
        Some("signed-out") => Some("You are signed out.".to_string()),
        _ => None,
    };
    signin_page(&s, StatusCode::OK, message)
}

fn signin_page(s: &ConsoleState, status: StatusCode, message: Option<String>) -> Response {
    render(status, &SigninPage { nav: None, section: "", notice: None, oidc: s.oidc.is_some(), message })
}

/// Starts single sign-on: a flow bound to this browser by a cookie, then off to the provider.
pub async fn login(State(s): State<ConsoleState>) -> Response {
    let Some(oidc) = &s.oidc else {
        return signin_page(&s, StatusCode::NOT_FOUND, Some("Single sign-on is not configured.".into()));
    };
    let started = match oidc.start().await {
        Ok(started) => started,
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "starting a console sign-in failed");
            return signin_page(
                &s,
                StatusCode::SERVICE_UNAVAILABLE,
                Some("The identity provider cannot be reached; try again later.".into()),
            );
        }
    };
    let policy = &s.config.policy;
    match s.directory.save_signin_flow(&started.state, &started.nonce, &started.pkce_verifier, policy).await {
        Ok(flow) => (
            [(header::SET_COOKIE, session::set_flow(s.config.secure_cookies, flow.expose(), policy.flow))],
            Redirect::to(&started.url),
        )
            .into_response(),
        Err(e) => scim_error_page(e),
    }
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// Finishes single sign-on: the flow of this browser, the state it was given, the code
/// exchanged and the ID token verified; then the person must be provisioned, active and hold a
/// role.
pub async fn callback(State(s): State<ConsoleState>, headers: HeaderMap, Query(q): Query<CallbackQuery>) -> Response {
    let secure = s.config.secure_cookies;
    let refuse = |status: StatusCode, message: String| {
        let mut resp = signin_page(&s, status, Some(message));
        resp.headers_mut().append(header::SET_COOKIE, session::clear_flow(secure));
        resp
    };
    let Some(oidc) = &s.oidc else {
        return refuse(StatusCode::NOT_FOUND, "Single sign-on is not configured.".into());
    };
    if let Some(error) = q.error {
        return refuse(StatusCode::FORBIDDEN, format!("The identity provider did not sign you in ({error})."));
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return refuse(StatusCode::BAD_REQUEST, "The identity provider's answer lacks its code or state.".into());
    };
    let Some(flow_id) = session::flow_cookie(&headers, secure) else {
        return refuse(StatusCode::BAD_REQUEST, "This sign-in was not started in this browser; start again.".into());
    };
    let flow = match s.directory.take_signin_flow(&flow_id).await {
        Ok(flow) => flow,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if !session::same_secret(&flow.state, &state) {
        return refuse(StatusCode::BAD_REQUEST, "The sign-in's state does not match; start again.".into());
    }
    let subject = match oidc.finish(&code, &flow.pkce_verifier, &flow.nonce).await {
        Ok(subject) => subject,
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "a console sign-in was refused");
            return refuse(StatusCode::FORBIDDEN, format!("The sign-in was refused: {e}"));
        }
    };
    match s.directory.console_sign_in(&subject, &s.config.policy, request_id(&headers)).await {
        Ok((session_id, _)) => signed_in(&s, session_id.expose()),
        Err(e) => refuse(StatusCode::FORBIDDEN, e.to_string()),
    }
}

/// The response to a successful sign-in: the session cookie, the flow cookie gone, and on to
/// the first page the person may see.
fn signed_in(s: &ConsoleState, session_id: &str) -> Response {
    let secure = s.config.secure_cookies;
    let mut resp = Redirect::to("/console").into_response();
    let h = resp.headers_mut();
    h.append(header::SET_COOKIE, session::set_session(secure, session_id, s.config.policy.absolute));
    h.append(header::SET_COOKIE, session::clear_flow(secure));
    resp
}

/// A sign-in link's page: opening it consumes nothing (scanners open links); its button does.
pub async fn link_page(State(s): State<ConsoleState>, Path(token): Path<String>) -> Response {
    match s.directory.check_login_link(&token).await {
        Ok(link) => render(
            StatusCode::OK,
            &LinkPage { nav: None, section: "", notice: None, token: &token, expires_at: &link.expires_at },
        ),
        Err(e) => signin_page(&s, StatusCode::GONE, Some(e.to_string())),
    }
}

pub async fn link_redeem(State(s): State<ConsoleState>, headers: HeaderMap, Path(token): Path<String>) -> Response {
    match s.directory.redeem_login_link(&token, &s.config.policy, request_id(&headers)).await {
        Ok((session_id, _)) => signed_in(&s, session_id.expose()),
        Err(e) => signin_page(&s, StatusCode::FORBIDDEN, Some(e.to_string())),
    }
}

pub async fn signout(State(s): State<ConsoleState>, change: Change<CsrfForm>) -> Response {
    if let Err(e) = s.directory.end_console_session(&change.person, change.request_id()).await {
        return scim_error_page(e);
    }
    (
        [(header::SET_COOKIE, session::clear_session(s.config.secure_cookies))],
        Redirect::to("/console/signin?reason=signed-out"),
    )
        .into_response()
}

// ---------------------------------------------------------------- users

#[derive(Debug, Deserialize)]
pub struct UsersQuery {
    #[serde(default)]
    q: String,
}

pub async fn users(State(s): State<ConsoleState>, Signed(person): Signed, Query(q): Query<UsersQuery>) -> Response {
    if let Some(refused) = require(&person, Action::ReadUsers) {
        return refused;
    }
    match s.directory.search_users(&q.q, USERS_SHOWN).await {
        Ok((total, rows)) => render(
            StatusCode::OK,
            &UsersPage {
                nav: nav(&person),
                section: "users",
                notice: None,
                q: &q.q,
                total,
                shown: rows.len() as u64,
                rows,
            },
        ),
        Err(e) if e.status == 400 => {
            error_page(StatusCode::BAD_REQUEST, &format!("The search was not understood: {}", e.detail))
        }
        Err(e) => scim_error_page(e),
    }
}

pub async fn user(
    State(s): State<ConsoleState>,
    Signed(person): Signed,
    Path(id): Path<String>,
    Query(n): Query<NoticeQuery>,
) -> Response {
    if let Some(refused) = require_on_user(&person, Action::ReadUserAccess, &id) {
        return refused;
    }
    match s.directory.user_detail(&id).await {
        Ok(d) => {
            let display_name = d.user.display_name.clone().unwrap_or_default();
            let external_id = d.user.external_id.clone().unwrap_or_default();
            let can_change = person.may(Action::InviteUsers);
            render(
                StatusCode::OK,
                &UserPage {
                    nav: nav(&person),
                    section: "users",
                    notice: n.message(),
                    d,
                    display_name,
                    external_id,
                    can_change,
                    csrf: &person.csrf_token,
                },
            )
        }
        Err(e) => scim_error_page(e),
    }
}

/// Resend: a new invitation link; the pending one is cancelled (and refused from then on).
pub async fn resend(State(s): State<ConsoleState>, Path(id): Path<String>, change: Change<CsrfForm>) -> Response {
    if let Some(refused) = change.require(Action::InviteUsers) {
        return refused;
    }
    let sent = s.directory.resend_invitation(&change.context(), &id).await;
    redirect_or_error(sent, |link| {
        let notice = if link.is_some() { "resent" } else { "no-address" };
        format!("/console/users/{id}?notice={notice}")
    })
}

// ---------------------------------------------------------------- teams

/// How a provenance reads on the pages.
fn provenance_text(p: &Provenance) -> String {
    match p {
        Provenance::IdentityProvider => "Managed externally (pushed by an identity provider)".into(),
        Provenance::Kubernetes { cluster, declared_by: Some(declared), .. } if cluster.is_empty() => {
            format!("Declared in Kubernetes: {declared}")
        }
        Provenance::Kubernetes { cluster, declared_by: Some(declared), .. } => {
            format!("Declared in Kubernetes: {declared} (cluster {cluster})")
        }
        Provenance::Kubernetes { namespace, uid, .. } if namespace.is_empty() => {
            format!("Declared in Kubernetes (ManagedTeam uid {uid})")
        }
        Provenance::Kubernetes { cluster, namespace, uid, .. } => {
            format!("Declared in Kubernetes: namespace {namespace} (cluster {cluster}, ManagedTeam uid {uid})")
        }
        Provenance::Administrator => "Made by an administrator".into(),
    }
}

pub async fn teams(State(s): State<ConsoleState>, Signed(person): Signed, Query(n): Query<NoticeQuery>) -> Response {
    if let Some(refused) = require(&person, Action::ReadTeams) {
        return refused;
    }
    match s.directory.teams().await {
        Ok(teams) => {
            let rows = teams
                .into_iter()
                .map(|(t, members)| TeamRow {
                    provenance: provenance_text(&provenance(&t)),
                    id: t.id,
                    name: t.name,
                    members,
                })
                .collect();
            let can_change = person.may(Action::ChangeTeams);
            render(
                StatusCode::OK,
                &TeamsPage {
                    nav: nav(&person),
                    section: "teams",
                    notice: n.message(),
                    rows,
                    can_change,
                    csrf: &person.csrf_token,
                },
            )
        }
        Err(e) => scim_error_page(e),
    }
}

pub async fn team(
    State(s): State<ConsoleState>,
    Signed(person): Signed,
    Path(id): Path<String>,
    Query(n): Query<NoticeQuery>,
) -> Response {
    if let Some(refused) = require(&person, Action::ReadTeams) {
        return refused;
    }
    match s.directory.team_detail(&id).await {
        Ok(d) => {
            // Only teams no identity provider manages change here (provisioning refuses the
            // others too): the identity provider stays the source of truth.
            let can_change = person.may(Action::ChangeTeams) && d.provenance == Provenance::Administrator;
            let provenance = provenance_text(&d.provenance);
            render(
                StatusCode::OK,
                &TeamPage {
                    nav: nav(&person),
                    section: "teams",
                    notice: n.message(),
                    d,
                    provenance,
                    can_change,
                    csrf: &person.csrf_token,
                },
            )
        }
        Err(e) => scim_error_page(e),
    }
}

/// The form that makes a team: its CSRF token and name.
#[derive(Debug, Deserialize)]
pub struct TeamForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

/// Makes a team no identity provider manages.
pub async fn create_team(State(s): State<ConsoleState>, change: Change<TeamForm>) -> Response {
    if let Some(refused) = change.require(Action::ChangeTeams) {
        return refused;
    }
    let made = s.directory.create_team(&change.context(), &change.form.name).await;
    redirect_or_error(made, |team| format!("/console/teams/{}?notice=team-created", team.id))
}

/// The form that adds (`op=add`) or removes (`op=remove`) a member (`user`: id or userName).
#[derive(Debug, Deserialize)]
pub struct MemberForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    op: String,
}

/// Adds or removes a member of a team no identity provider manages.
pub async fn team_member(
    State(s): State<ConsoleState>,
    Path(id): Path<String>,
    change: Change<MemberForm>,
) -> Response {
    if let Some(refused) = change.require(Action::ChangeTeams) {
        return refused;
    }
    let form = &change.form;
    let (add, notice) = match form.op.as_str() {
        "add" => (true, "member-added"),
        "remove" => (false, "member-removed"),
        other => return error_page(StatusCode::BAD_REQUEST, &format!("Unknown change '{other}': add or remove.")),
    };
    let user = form.user.trim();
    if user.is_empty() {
        return error_page(StatusCode::BAD_REQUEST, "Name the user (userName) to add or remove.");
    }
    let changed = s.directory.change_team_member(&change.context(), &id, user, add).await;
    redirect_or_error(changed, |()| format!("/console/teams/{id}?notice={notice}"))
}

// ---------------------------------------------------------------- audit trail

/// A time typed into the filter: RFC 3339, or `YYYY-MM-DDTHH:MM[:SS]` / `YYYY-MM-DD` read as UTC.
fn filter_time(field: &str, text: &str) -> Result<Option<String>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Some(t) = crate::clock::parse_time(text) {
        return Ok(Some(crate::clock::format_time(t)));
    }
    for format in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(Some(crate::clock::format_time(t.and_utc())));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).map(|t| crate::clock::format_time(t.and_utc())));
    }
    Err(format!("{field}: '{text}' is not a time; write e.g. 2026-01-31T09:00:00Z or 2026-01-31"))
}

/// The store query of a filter: the same fields `scim-operator audit` takes.
fn audit_query(f: &AuditFilter) -> Result<AuditQuery, String> {
    let text = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    Ok(AuditQuery {
        since: filter_time("From", &f.since)?,
        until: filter_time("Until", &f.until)?,
        action: text(&f.action),
        actor: text(&f.actor),
        target_id: text(&f.target),
        limit: None,
    })
}

pub async fn audit(State(s): State<ConsoleState>, Signed(person): Signed, Query(f): Query<AuditFilter>) -> Response {
    if let Some(refused) = require(&person, Action::ReadAuditTrail) {
        return refused;
    }
    let csv_query = match serde_urlencoded::to_string(&f) {
        Ok(q) => format!("?{q}"),
        Err(_) => String::new(),
    };
    let (events, error) = match audit_query(&f) {
        Ok(query) => match s.directory.audit_events(&query).await {
            Ok(events) => (events, None),
            Err(e) => return scim_error_page(e),
        },
        Err(message) => (Vec::new(), Some(message)),
    };
    let total = events.len() as u64;
    // The latest events, newest first.
    let rows: Vec<_> = events.into_iter().rev().take(AUDIT_SHOWN).collect();
    let shown = rows.len() as u64;
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    render(
        status,
        &AuditPage { nav: nav(&person), section: "audit", notice: None, f, error, total, shown, rows, csv_query },
    )
}

/// Every event the filter matches, oldest first, as `scim-operator audit --format csv` prints it.
pub async fn audit_csv(
    State(s): State<ConsoleState>,
    Signed(person): Signed,
    Query(f): Query<AuditFilter>,
) -> Response {
    if let Some(refused) = require(&person, Action::ReadAuditTrail) {
        return refused;
    }
    let query = match audit_query(&f) {
        Ok(q) => q,
        Err(message) => return error_page(StatusCode::BAD_REQUEST, &message),
    };
    let csv = match s.directory.audit_events(&query).await.and_then(|events| render_audit_csv(&events)) {
        Ok(csv) => csv,
        Err(e) => return scim_error_page(e),
    };
    csv_download("audit.csv", csv)
}

// ---------------------------------------------------------------- recent provisioning requests

/// The requests filter as chosen: a status class ([`StatusClass`]) and a key (its id, `none`
/// for requests no valid key made, empty for any).
#[derive(Debug, Default, Deserialize)]
pub struct RequestsFilter {
    #[serde(default)]
    status: String,
    #[serde(default)]
    key: String,
}

/// A latency in words: milliseconds with one decimal.
fn latency_text(duration_us: i64) -> String {
    format!("{:.1} ms", duration_us as f64 / 1000.0)
}

/// The newest requests to the provisioning APIs, filtered; read like the audit trail.
pub async fn requests(
    State(s): State<ConsoleState>,
    Signed(person): Signed,
    Query(f): Query<RequestsFilter>,
) -> Response {
    if let Some(refused) = require(&person, Action::ReadAuditTrail) {
        return refused;
    }
    let Some(class) = StatusClass::parse(&f.status) else {
        return error_page(StatusCode::BAD_REQUEST, &format!("There is no status filter '{}'.", f.status));
    };
    let key = f.key.trim();
    let key_id = match key {
        "" => None,
        "none" => Some(None),
        id => Some(Some(id.to_string())),
    };
    let query = RequestQuery { status: class.range(), key_id, limit: REQUESTS_SHOWN };
    let (records, keys) = match s.directory.recent_requests(&query).await {
        Ok(found) => found,
        Err(e) => return scim_error_page(e),
    };
    let rows = records
        .into_iter()
        .map(|r| RequestRow {
            latency: latency_text(r.duration_us),
            time: r.time,
            method: r.method,
            path: r.path,
            status: r.status,
            key_name: r.key_id.map(|id| r.key_name.filter(|n| !n.is_empty()).unwrap_or(id)),
        })
        .collect();
    let classes = StatusClass::ALL.iter().map(|c| (c.as_str(), c.describe())).collect();
    render(
        StatusCode::OK,
        &RequestsPage {
            nav: nav(&person),
            section: "requests",
            notice: None,
            rows,
            status: class.as_str(),
            classes,
            key,
            keys,
            limit: REQUESTS_SHOWN,
        },
    )
}

// ---------------------------------------------------------------- connect an identity provider

/// How long the discovery test waits for each endpoint.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn connect_page(s: &ConsoleState, person: &ConsoleUser, probe: Option<ProbeResult>) -> Response {
    render(
        StatusCode::OK,
        &ConnectPage {
            nav: nav(person),
            section: "connect",
            notice: None,
            scim_url: &s.scim_url.url,
            configured: s.scim_url.configured,
            preset_permissions: Preset::IdentityProvider.permissions().names().join(", "),
            can_make_keys: person.may(Action::ManageKeys),
            csrf: &person.csrf_token,
            probe,
        },
    )
}

/// The SCIM base URL, how to make a key, hints per identity provider, and the discovery test.
pub async fn connect(State(s): State<ConsoleState>, Signed(person): Signed) -> Response {
    if let Some(refused) = require(&person, Action::ReadKeys) {
        return refused;
    }
    connect_page(&s, &person, None)
}

/// The discovery test's form: its CSRF token and, optionally, the key to test with.
#[derive(Debug, Deserialize)]
pub struct ConnectTestForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    key: String,
}

/// Runs discovery against this server through its public base URL (never a URL from the form)
/// and shows what answered. The key is sent there and nowhere else, and is not stored or shown.
pub async fn connect_test(State(s): State<ConsoleState>, change: Change<ConnectTestForm>) -> Response {
    if let Some(refused) = change.require(Action::ReadKeys) {
        return refused;
    }
    let key = Some(change.form.key.trim()).filter(|k| !k.is_empty());
    let steps = crate::client::probe::probe(&s.scim_url.url, key, PROBE_TIMEOUT).await;
    let probe = ProbeResult {
        with_key: key.is_some(),
        all_ok: steps.iter().all(|step| step.ok),
        reachable: steps.iter().any(|step| step.status.is_some()),
        steps,
    };
    connect_page(&s, &change.person, Some(probe))
}

// ---------------------------------------------------------------- access review

/// The access review's date, as the page's GET form sends it (empty: now).
#[derive(Debug, Default, Deserialize)]
pub struct ReviewQuery {
    #[serde(default, rename = "asOf")]
    as_of: String,
}

impl ReviewQuery {
    fn as_of(&self) -> Option<&str> {
        Some(self.as_of.trim()).filter(|t| !t.is_empty())
    }
}

/// The access review of `person`'s request as of the date asked, or the page that refuses it.
async fn review_rows(
    s: &ConsoleState,
    person: &ConsoleUser,
    headers: &HeaderMap,
    q: &ReviewQuery,
) -> Result<Result<(String, Vec<review::AccessRow>), ScimError>, Response> {
    for action in [Action::ReadUserAccess, Action::ReadKeys] {
        if let Some(refused) = require(person, action) {
            return Err(refused);
        }
    }
    Ok(s.directory.access_review(&person.context(request_id(headers)), q.as_of()).await)
}

/// Every account with each role (or a key's permissions), why, and since when, as of the date
/// the form asks (now by default). A date that is not one is said on the page (400).
pub async fn access_review(
    State(s): State<ConsoleState>,
    Signed(person): Signed,
    headers: HeaderMap,
    Query(q): Query<ReviewQuery>,
) -> Response {
    let (status, error, at, rows) = match review_rows(&s, &person, &headers, &q).await {
        Err(refused) => return refused,
        Ok(Ok((at, rows))) => (StatusCode::OK, None, at, rows),
        Ok(Err(e)) if e.status == 400 => (StatusCode::BAD_REQUEST, Some(e.detail), String::new(), Vec::new()),
        Ok(Err(e)) => return scim_error_page(e),
    };
    let csv_query = match q.as_of() {
        Some(t) => format!("?{}", serde_urlencoded::to_string([("asOf", t)]).unwrap_or_default()),
        None => String::new(),
    };
    let page = AccessReviewPage {
        nav: nav(&person),
        section: "access-review",
        notice: None,
        as_of_input: q.as_of.trim().to_string(),
        as_of: at,
        error,
        csv_query,
        rows,
    };
    render(status, &page)
}

/// The access review as CSV as of the date asked, one line per role of a person and per key.
pub async fn access_review_csv(
    State(s): State<ConsoleState>,
    Signed(person): Signed,
    headers: HeaderMap,
    Query(q): Query<ReviewQuery>,
) -> Response {
    let review = match review_rows(&s, &person, &headers, &q).await {
        Err(refused) => return refused,
        Ok(review) => review,
    };
    match review.and_then(|(at, rows)| Ok((at, review::access_review_csv(&rows)?))) {
        Ok((at, csv)) => csv_download(&format!("access-review-{}.csv", at.get(..10).unwrap_or(&at)), csv),
        Err(e) => scim_error_page(e),
    }
}

// ---------------------------------------------------------------- keys

async fn keys_page(
    s: &ConsoleState,
    person: &ConsoleUser,
    status: StatusCode,
    notice: Option<String>,
    created: Option<CreatedKey>,
) -> Response {
    let keys = match s.directory.keys().await {
        Ok(keys) => keys,
        Err(e) => return scim_error_page(e),
    };
    let warnings = match s.directory.key_warnings().await {
        Ok(w) => w,
        Err(e) => return scim_error_page(e),
    };
    let rows = keys
        .into_iter()
        .rev()
        .map(|k| KeyRow {
            owner: match k.owner {
                KeyOwner::ServiceAccount => "service account".to_string(),
                KeyOwner::User => format!("person ({})", k.owner_user_id.as_deref().unwrap_or("?")),
            },
            permissions: k.permissions.join(", "),
            id: k.id,
            name: k.name,
            hint: k.hint,
            created: k.created,
            last_used: k.last_used_at.unwrap_or_else(|| "never".to_string()),
            revoked: k.revoked_at,
        })
        .collect();
    let presets = Preset::ALL.iter().map(|p| (p.as_str(), p.permissions().names().join(", "))).collect();
    let permissions = Permission::ALL.iter().map(|p| p.as_str()).collect();
    render(
        status,
        &KeysPage {
            nav: nav(person),
            section: "keys",
            notice,
            rows,
            warnings,
            created,
            presets,
            permissions,
            csrf: &person.csrf_token,
        },
    )
}

pub async fn keys(State(s): State<ConsoleState>, Signed(person): Signed, Query(n): Query<NoticeQuery>) -> Response {
    if let Some(refused) = require(&person, Action::ManageKeys) {
        return refused;
    }
    keys_page(&s, &person, StatusCode::OK, n.message(), None).await
}

/// The key form: `csrf`, `name`, `user` (a userName to tie the key to; empty for a service
/// account), `preset` (a preset's name, or empty) and any number of `permission` fields. The
/// preset and the ticked permissions add up, as `keys create --preset --permission` do.
#[derive(Debug, Default, Deserialize)]
#[serde(from = "Vec<(String, String)>")]
pub struct CreateKeyForm {
    csrf: String,
    name: String,
    user: String,
    preset: String,
    permissions: Vec<String>,
}

impl From<Vec<(String, String)>> for CreateKeyForm {
    /// The fields as posted (`permission` repeated once per ticked box).
    fn from(fields: Vec<(String, String)>) -> Self {
        let mut form = Self::default();
        for (k, v) in fields {
            match k.as_str() {
                "csrf" => form.csrf = v,
                "name" => form.name = v,
                "user" => form.user = v,
                "preset" => form.preset = v,
                "permission" => form.permissions.push(v),
                _ => {}
            }
        }
        form
    }
}

impl CreateKeyForm {
    /// The permissions chosen: at least one, every name known. The message is a form error.
    fn chosen(&self) -> Result<Permissions, String> {
        let preset = match self.preset.trim() {
            "" => Permissions::none(),
            name => Preset::parse(name).ok_or_else(|| format!("There is no preset '{name}'."))?.permissions(),
        };
        let ticked = Permissions::parse(&self.permissions).map_err(|e| e.detail)?;
        let chosen = preset.union(&ticked);
        if chosen.is_empty() {
            return Err("Choose a preset or at least one permission for the key.".into());
        }
        Ok(chosen)
    }
}

/// Creates a key. The secret is in this response only (never stored, never redirected to).
pub async fn create_key(State(s): State<ConsoleState>, change: Change<CreateKeyForm>) -> Response {
    if let Some(refused) = change.require(Action::ManageKeys) {
        return refused;
    }
    let (person, form) = (&change.person, &change.form);
    let name = form.name.trim();
    if name.is_empty() {
        return keys_page(&s, person, StatusCode::BAD_REQUEST, Some("A key needs a name.".into()), None).await;
    }
    let permissions = match form.chosen() {
        Ok(p) => p,
        Err(message) => return keys_page(&s, person, StatusCode::BAD_REQUEST, Some(message), None).await,
    };
    let user = Some(form.user.trim()).filter(|u| !u.is_empty());
    match s.directory.create_key(&change.context(), name, user, &permissions).await {
        Ok((record, secret)) => {
            let created = CreatedKey {
                permissions: record.permissions.join(", "),
                name: record.name.clone(),
                secret: secret.expose().to_string(),
                personal: record.owner == KeyOwner::User,
            };
            keys_page(&s, person, StatusCode::CREATED, None, Some(created)).await
        }
        Err(e) if e.status < 500 => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            keys_page(&s, person, status, Some(e.detail), None).await
        }
        Err(e) => scim_error_page(e),
    }
}

pub async fn revoke_key(State(s): State<ConsoleState>, Path(id): Path<String>, change: Change<CsrfForm>) -> Response {
    if let Some(refused) = change.require(Action::ManageKeys) {
        return refused;
    }
    let revoked = s.directory.revoke_key(&change.context(), &id).await;
    redirect_or_error(revoked, |()| "/console/keys?notice=revoked".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_times_read_as_utc_and_refuse_other_text() {
        assert_eq!(filter_time("From", "").unwrap(), None);
        assert_eq!(filter_time("From", "2026-01-31").unwrap().as_deref(), Some("2026-01-31T00:00:00.000Z"));
        assert_eq!(filter_time("From", "2026-01-31T09:30").unwrap().as_deref(), Some("2026-01-31T09:30:00.000Z"));
        assert_eq!(
            filter_time("From", "2026-01-31T09:30:00+02:00").unwrap().as_deref(),
            Some("2026-01-31T07:30:00.000Z")
        );
        assert!(filter_time("Until", "yesterday").unwrap_err().starts_with("Until:"));
    }

    #[test]
    fn a_key_form_adds_up_its_preset_and_ticked_permissions_and_refuses_none() {
        let form = |fields: &[(&str, &str)]| {
            CreateKeyForm::from(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>())
        };
        let f = form(&[("preset", "identity-provider"), ("permission", "audit_logs_read")]);
        let mut expected = Preset::IdentityProvider.permissions().names();
        expected.push("audit_logs_read".into());
        assert_eq!(f.chosen().unwrap().names(), expected);
        let f = form(&[("permission", "directory_read"), ("permission", "audit_logs_read")]);
        assert_eq!(f.chosen().unwrap().names(), ["audit_logs_read", "directory_read"]);
        assert!(form(&[("preset", "")]).chosen().unwrap_err().contains("Choose"));
        assert!(form(&[("preset", "root")]).chosen().unwrap_err().contains("no preset 'root'"));
        assert!(form(&[("permission", "everything")]).chosen().unwrap_err().contains("unknown permission"));
    }

    #[test]
    fn notices_are_fixed_texts_only() {
        let n = |s: &str| NoticeQuery { notice: Some(s.into()) }.message();
        assert!(n("resent").is_some());
        assert_eq!(n("<script>alert(1)</script>"), None);
    }
}
