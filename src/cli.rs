//! Command line: `scim-operator <subcommand>`. Every flag can also be set by an environment
//! variable (named in `--help`).

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock, format_time};
use crate::provisioning::access::{Permissions, Preset};
use crate::provisioning::{Directory, RequestContext};
use crate::redact::redact_url;
use crate::server::{AppState, ServerConfig, metrics::Metrics};
use crate::store::{AuditQuery, KeyOwner, SharedStore};

/// A SCIM 2.0 service provider and the Kubernetes operator that provisions into it.
#[derive(Debug, Parser)]
#[command(name = "scim-operator", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "SCIM_OPERATOR_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// Output format of logs.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the SCIM 2.0 API.
    Serve(Box<ServeArgs>),
    /// Manage application keys (bearer tokens for the SCIM API), each with its permissions.
    #[command(subcommand, after_long_help = KEYS_HELP)]
    Keys(KeysCommand),
    /// Print the audit trail as JSON lines.
    Audit(AuditArgs),
    /// Print the access review as of a date: every account (people and keys), each role it
    /// held and why, since when and granted by whom, status, created and deactivated dates.
    #[command(after_long_help = ACCESS_REVIEW_HELP)]
    AccessReview(AccessReviewArgs),
    /// Manage the role catalog and the default role.
    #[command(subcommand)]
    Roles(RolesCommand),
    /// Manage teams that no identity provider manages (yet).
    #[command(subcommand)]
    Teams(TeamsCommand),
    /// List and resend invitations.
    #[command(subcommand)]
    Invites(InvitesCommand),
    /// The web console: sign-in links for the first administrator.
    #[command(subcommand)]
    Console(ConsoleCommand),
    /// Write the CustomResourceDefinitions, one YAML file per kind.
    Crds {
        /// Directory to write into (created if missing).
        #[arg(long, env = "SCIM_OPERATOR_CRDS_OUT", default_value = "crds")]
        out: std::path::PathBuf,
    },
    /// Run the Kubernetes controllers that reconcile ScimUser, ManagedTeam and RoleMapping.
    Controller(crate::operator::ControllerArgs),
    /// Copy a SQLite database into an empty PostgreSQL database (one transaction, counts checked).
    Migrate {
        /// The SQLite database file (or `sqlite://` URL).
        #[arg(long, env = "SCIM_OPERATOR_MIGRATE_FROM")]
        from: String,
        /// The PostgreSQL URL.
        #[arg(long, env = "SCIM_OPERATOR_MIGRATE_TO")]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RolesCommand {
    /// Add a custom role.
    Create {
        #[command(flatten)]
        db: DbArgs,
        /// Role name (matched by identity providers without regard to case).
        name: String,
        /// What the role is for.
        #[arg(long, env = "SCIM_OPERATOR_ROLE_DESCRIPTION", default_value = "")]
        description: String,
    },
    /// List roles as JSON lines; the default role is marked.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Delete a custom role.
    Delete {
        #[command(flatten)]
        db: DbArgs,
        /// Role id or name.
        role: String,
    },
    /// Set the default role given when no requested role matches, or `--none`.
    Default {
        #[command(flatten)]
        db: DbArgs,
        /// Role id or name.
        #[arg(required_unless_present = "none")]
        role: Option<String>,
        /// No default role: a user to whom no explicit or mapped role applies has no role (roles it
        /// had are revoked and the revocation audited).
        #[arg(long, env = "SCIM_OPERATOR_NO_DEFAULT_ROLE", conflicts_with = "role")]
        none: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TeamsCommand {
    /// Create an unmanaged team.
    Create {
        #[command(flatten)]
        db: DbArgs,
        /// Team name (an identity provider group of exactly this name links it).
        name: String,
    },
    /// List teams as JSON lines.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Add a user to an unmanaged team.
    AddMember {
        #[command(flatten)]
        db: DbArgs,
        /// Team id, name or handle.
        team: String,
        /// User id or userName.
        user: String,
    },
    /// Remove a user from an unmanaged team.
    RemoveMember {
        #[command(flatten)]
        db: DbArgs,
        /// Team id, name or handle.
        team: String,
        /// User id or userName.
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum InvitesCommand {
    /// List invitations and the outbox (state, attempts, last error; never a usable link) as
    /// JSON lines.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Cancel a user's pending invitation and issue a fresh link.
    Resend {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        invitations: InvitationArgs,
        /// User id or userName.
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// Print a single-use sign-in link to the console for a provisioned, active user with a
    /// role (how the first administrator signs in before single sign-on is set up). Audited.
    LoginLink {
        #[command(flatten)]
        db: DbArgs,
        /// User id or userName.
        #[arg(long, env = "SCIM_OPERATOR_CONSOLE_LINK_USER")]
        user: String,
        /// The console's public URL (as given to `serve --console-url`).
        #[arg(long, env = "SCIM_OPERATOR_CONSOLE_URL")]
        console_url: String,
        /// Minutes the link stays valid.
        #[arg(long, env = "SCIM_OPERATOR_CONSOLE_LINK_TTL_MINUTES", default_value_t = 15, value_parser = clap::value_parser!(i64).range(1..=1440))]
        ttl_minutes: i64,
    },
}

/// The web console (served under `/console` when `--console-url` is set).
#[derive(Debug, Args, Clone)]
pub struct ConsoleArgs {
    /// The console's public URL, e.g. `https://scim.example.com/console`; serves the console.
    /// The OpenID Connect redirect URI to register is this plus `/callback`.
    #[arg(long, env = "SCIM_OPERATOR_CONSOLE_URL")]
    pub console_url: Option<String>,
    /// Issuer URL of the identity provider for single sign-on (discovery at
    /// `<issuer>/.well-known/openid-configuration`).
    #[arg(long, env = "SCIM_OPERATOR_CONSOLE_OIDC_ISSUER", requires_all = ["console_url", "console_oidc_client_id"])]
    pub console_oidc_issuer: Option<String>,
    /// The console's client id at the identity provider.
    #[arg(long, env = "SCIM_OPERATOR_CONSOLE_OIDC_CLIENT_ID")]
    pub console_oidc_client_id: Option<String>,
    /// File holding the client secret (a confidential client; PKCE is used either way).
    #[arg(long, env = "SCIM_OPERATOR_CONSOLE_OIDC_CLIENT_SECRET_FILE")]
    pub console_oidc_client_secret_file: Option<std::path::PathBuf>,
    /// The ID token claim matched against `userName` (folded as the server folds text).
    #[arg(long, env = "SCIM_OPERATOR_CONSOLE_OIDC_CLAIM", value_enum, default_value = "email")]
    pub console_oidc_claim: crate::console::oidc::SubjectClaim,
    /// Send cookies without `Secure` (only for a console on http://127.0.0.1 or http://localhost).
    #[arg(long, env = "SCIM_OPERATOR_CONSOLE_INSECURE_COOKIES")]
    pub console_insecure_cookies: bool,
    /// Minutes of inactivity after which a console session ends.
    #[arg(long, env = "SCIM_OPERATOR_CONSOLE_IDLE_MINUTES", default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..))]
    pub console_idle_minutes: i64,
    /// Hours after sign-in at which a console session ends however busy.
    #[arg(long, env = "SCIM_OPERATOR_CONSOLE_SESSION_HOURS", default_value_t = 12, value_parser = clap::value_parser!(i64).range(1..))]
    pub console_session_hours: i64,
}

impl ConsoleArgs {
    /// The console's settings, or `None` without `--console-url`.
    fn config(&self) -> Result<Option<crate::console::ConsoleConfig>> {
        let Some(url) = &self.console_url else { return Ok(None) };
        let oidc = match (&self.console_oidc_issuer, &self.console_oidc_client_id) {
            (Some(issuer), Some(client_id)) => {
                let client_secret = match &self.console_oidc_client_secret_file {
                    Some(path) => Some(
                        std::fs::read_to_string(path)
                            .with_context(|| format!("reading the OIDC client secret {}", path.display()))?
                            .trim()
                            .to_string(),
                    ),
                    None => None,
                };
                Some(crate::console::oidc::OidcConfig {
                    issuer: issuer.clone(),
                    client_id: client_id.clone(),
                    client_secret,
                    redirect_uri: crate::console::redirect_uri(url),
                    claim: self.console_oidc_claim,
                })
            }
            _ => None,
        };
        let policy = crate::provisioning::console::SessionPolicy {
            idle: chrono::Duration::minutes(self.console_idle_minutes),
            absolute: chrono::Duration::hours(self.console_session_hours),
            ..Default::default()
        };
        Ok(Some(crate::console::ConsoleConfig {
            public_url: url.clone(),
            oidc,
            secure_cookies: !self.console_insecure_cookies,
            policy,
        }))
    }
}

/// How the outbox is delivered (with `--smtp-url`).
#[derive(Debug, Args, Clone)]
pub struct DeliveryArgs {
    /// Milliseconds between reads of the outbox.
    #[arg(long, env = "SCIM_OPERATOR_SMTP_POLL_MILLIS", default_value_t = 5000)]
    pub smtp_poll_millis: u64,
    /// Delivery attempts after which a message is parked with its last error (`invites list`
    /// shows it; `invites resend USER` issues a fresh one).
    #[arg(long, env = "SCIM_OPERATOR_SMTP_MAX_ATTEMPTS", default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..))]
    pub smtp_max_attempts: u32,
    /// Milliseconds before the second attempt; doubled for each further one.
    #[arg(long, env = "SCIM_OPERATOR_SMTP_RETRY_BASE_MILLIS", default_value_t = 60_000)]
    pub smtp_retry_base_millis: u64,
    /// Longest wait between two attempts, in milliseconds.
    #[arg(long, env = "SCIM_OPERATOR_SMTP_RETRY_MAX_MILLIS", default_value_t = 3_600_000)]
    pub smtp_retry_max_millis: u64,
}

impl DeliveryArgs {
    fn policy(&self) -> crate::delivery::DeliveryPolicy {
        crate::delivery::DeliveryPolicy {
            poll_interval: Duration::from_millis(self.smtp_poll_millis),
            max_attempts: self.smtp_max_attempts,
            retry_base: Duration::from_millis(self.smtp_retry_base_millis),
            retry_max: Duration::from_millis(self.smtp_retry_max_millis),
            ..Default::default()
        }
    }
}

/// Invitation settings.
#[derive(Debug, Args, Clone)]
pub struct InvitationArgs {
    /// Hours an invitation link stays valid.
    #[arg(long, env = "SCIM_OPERATOR_INVITATION_TTL_HOURS", default_value_t = 48)]
    pub invitation_ttl_hours: i64,
    /// Base URL of invitation links (the server answers them at `/invitations/<token>`).
    #[arg(long, env = "SCIM_OPERATOR_INVITATION_URL", default_value = "http://localhost:8080/invitations")]
    pub invitation_url: String,
}

impl InvitationArgs {
    fn settings(&self) -> crate::provisioning::Settings {
        crate::provisioning::Settings {
            invitation_ttl: chrono::Duration::hours(self.invitation_ttl_hours.max(1)),
            invitation_url: self.invitation_url.clone(),
        }
    }
}

/// The database to use.
#[derive(Debug, Args, Clone)]
pub struct DbArgs {
    /// SQLite file path (or `sqlite://...`), or a `postgres://` URL. Created and migrated on start.
    #[arg(long, env = "SCIM_OPERATOR_DB", default_value = "scim-operator.db")]
    pub db: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Address to listen on.
    #[arg(long, env = "SCIM_OPERATOR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Public base URL of the SCIM API, e.g. `https://scim.example.com/scim/v2` (default: from
    /// the request's Host header).
    #[arg(long, env = "SCIM_OPERATOR_BASE_URL")]
    pub base_url: Option<String>,
    /// Page size of list responses when the client names none.
    #[arg(long, env = "SCIM_OPERATOR_DEFAULT_COUNT", default_value_t = 100)]
    pub default_count: u64,
    /// Largest page size served.
    #[arg(long, env = "SCIM_OPERATOR_MAX_COUNT", default_value_t = 1000)]
    pub max_count: u64,
    /// Largest request body, in bytes.
    #[arg(long, env = "SCIM_OPERATOR_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Most values of one multi-valued attribute (and elements of any array) in one request
    /// body; more is refused with 400 `invalidValue` naming the limit.
    #[arg(long, env = "SCIM_OPERATOR_MAX_VALUES", default_value_t = 10_000)]
    pub max_values: usize,
    /// Most operations in one PATCH request; more is refused with 400 `invalidValue`.
    #[arg(long, env = "SCIM_OPERATOR_MAX_PATCH_OPERATIONS", default_value_t = 1_000)]
    pub max_patch_operations: usize,
    /// Seconds after which a request is abandoned and rolled back.
    #[arg(long, env = "SCIM_OPERATOR_REQUEST_TIMEOUT", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// Milliseconds a verified API key is trusted before the key table is read again (0: read
    /// it on every request). A key revoked through this server stops working at once; one
    /// revoked elsewhere (the `keys revoke` command, another replica) within this time.
    #[arg(long, env = "SCIM_OPERATOR_KEY_CACHE_MILLIS", default_value_t = 1000)]
    pub key_cache_millis: u64,
    /// How many recent requests to `/scim/v2` and `/api/v1` the database keeps for the console's
    /// "Recent provisioning requests" page (every replica's together; 0: record none). Method,
    /// path, status, key name and latency only: never a body, a query string or a secret.
    #[arg(long, env = "SCIM_OPERATOR_REQUEST_LOG_SIZE", default_value_t = 1000)]
    pub request_log_size: u64,
    #[command(flatten)]
    pub invitations: InvitationArgs,
    #[command(flatten)]
    pub console: ConsoleArgs,
    /// SMTP server for invitation e-mails, e.g. `smtp://relay:25` or `smtps://user:pass@host`.
    /// Without it, invitations wait in the outbox (`scim-operator invites list`).
    #[arg(long, env = "SCIM_OPERATOR_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// Sender of invitation e-mails.
    #[arg(long, env = "SCIM_OPERATOR_SMTP_FROM", default_value = "scim-operator <noreply@localhost>")]
    pub smtp_from: String,
    #[command(flatten)]
    pub delivery: DeliveryArgs,
    /// Serve `/metrics` (and `/healthz`) on this address instead of beside the API, so the
    /// public port does not expose them (e.g. `0.0.0.0:9090`).
    #[arg(long, env = "SCIM_OPERATOR_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// StatsD address (`host:port`) for role provisioning events.
    #[arg(long, env = "SCIM_OPERATOR_STATSD")]
    pub statsd: Option<String>,
    /// File holding a secret to accept as a service-account key (registered on start if new),
    /// so a deployment can hand the same secret to the operator without running `keys create`.
    /// The file is read again every `--bootstrap-key-check-seconds`: a new secret in it (a
    /// rotated Secret) works at once, and the bootstrap keys it replaced are revoked after
    /// `--bootstrap-key-grace-seconds`. A file that does not exist yet (a Secret the operator
    /// has still to make) is waited for.
    #[arg(long, env = "SCIM_OPERATOR_BOOTSTRAP_KEY_FILE")]
    pub bootstrap_key_file: Option<std::path::PathBuf>,
    /// Seconds an earlier bootstrap key keeps working after a new secret appeared in the
    /// bootstrap key file, for whoever still holds it (a pod whose mounted Secret is not updated
    /// yet, an identity provider configured with it). Counted from the new key's registration,
    /// so a restart does not extend it.
    #[arg(long, env = "SCIM_OPERATOR_BOOTSTRAP_KEY_GRACE_SECONDS", default_value_t = 3600)]
    pub bootstrap_key_grace_seconds: u64,
    /// Seconds between reads of the bootstrap key file (a mounted Secret changes in place).
    #[arg(long, env = "SCIM_OPERATOR_BOOTSTRAP_KEY_CHECK_SECONDS", default_value_t = 10)]
    pub bootstrap_key_check_seconds: u64,
}

/// What `keys --help` and `keys create --help` say about permissions; a test checks that it
/// names every permission and preset.
const KEYS_HELP: &str = "\
Permissions (a request outside a key's permissions is answered 403 with a SCIM error):
  user_access_invite       create users (sends their invitation); read users
  user_access_manage       read, change (attributes, roles, active) and delete users; read a user's access
  teams_manage             read, create, link, change and unlink teams (SCIM groups) and members
  role_mappings_manage     read and change RoleMappings (roles granted to the members of teams)
  roles_manage             change the role catalog and the default role
  kubernetes_owned_manage  delete users and teams the operator owns (externalId k8s:...),
                           change such an externalId, or write one
  keys_manage              create, list and revoke keys
  audit_logs_read          read the audit trail
  directory_read           read users, their access, teams, RoleMappings and keys; change nothing

Presets:
  identity-provider  user_access_invite, user_access_manage, teams_manage (the default)
  operator           identity-provider + role_mappings_manage, kubernetes_owned_manage
                     (what the Kubernetes operator calls; the bootstrap key gets these)
  admin              every permission

Examples:
  scim-operator keys create --name okta
  scim-operator keys create --name operator --preset operator
  scim-operator keys create --name audit --permission audit_logs_read,directory_read";

/// A preset of `keys create` (see [`crate::provisioning::access::Preset`]).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyPreset {
    /// user_access_invite, user_access_manage, teams_manage.
    IdentityProvider,
    /// identity-provider + role_mappings_manage, kubernetes_owned_manage.
    Operator,
    /// Every permission.
    Admin,
}

impl KeyPreset {
    fn preset(self) -> Preset {
        match self {
            KeyPreset::IdentityProvider => Preset::IdentityProvider,
            KeyPreset::Operator => Preset::Operator,
            KeyPreset::Admin => Preset::Admin,
        }
    }
}

/// The permissions `keys create` gives: the preset's and the listed ones together; the
/// `identity-provider` preset when neither is given.
fn key_permissions(preset: Option<KeyPreset>, listed: &[String]) -> Result<Permissions> {
    let listed = Permissions::parse(listed).map_err(|e| anyhow::anyhow!(e.detail))?;
    Ok(match preset {
        Some(p) => p.preset().permissions().union(&listed),
        None if listed.is_empty() => Preset::IdentityProvider.permissions(),
        None => listed,
    })
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret as the last line of stdout (shown once). Without
    /// --preset or --permission the key gets the identity-provider preset.
    #[command(after_long_help = KEYS_HELP)]
    Create {
        #[command(flatten)]
        db: DbArgs,
        /// A name to recognise the key by.
        #[arg(long, env = "SCIM_OPERATOR_KEY_NAME")]
        name: String,
        /// Tie the key to a user (id or userName) instead of a service account. Not recommended
        /// for SCIM: deactivating that user revokes the key and stops provisioning.
        #[arg(long, env = "SCIM_OPERATOR_KEY_USER")]
        user: Option<String>,
        /// A preset of permissions for the key's use.
        #[arg(long, env = "SCIM_OPERATOR_KEY_PRESET", value_enum)]
        preset: Option<KeyPreset>,
        /// A permission to give (repeat it, or separate names with commas), on top of the preset.
        #[arg(long = "permission", env = "SCIM_OPERATOR_KEY_PERMISSIONS", value_delimiter = ',')]
        permissions: Vec<String>,
    },
    /// List keys (never their secrets).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a key by id or name.
    Revoke {
        #[command(flatten)]
        db: DbArgs,
        /// Key id or name.
        key: String,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Only events at or after this RFC 3339 time.
    #[arg(long, env = "SCIM_OPERATOR_AUDIT_SINCE")]
    pub since: Option<String>,
    /// Only events before this RFC 3339 time.
    #[arg(long, env = "SCIM_OPERATOR_AUDIT_UNTIL")]
    pub until: Option<String>,
    /// Only events with this action (e.g. `user.create`, `role.unmatched`).
    #[arg(long, env = "SCIM_OPERATOR_AUDIT_ACTION")]
    pub action: Option<String>,
    /// Only events by this actor (a key id, `cli:<user>`, `console:<userName>`, `system`).
    #[arg(long, env = "SCIM_OPERATOR_AUDIT_ACTOR")]
    pub actor: Option<String>,
    /// Only events about this target id.
    #[arg(long, env = "SCIM_OPERATOR_AUDIT_TARGET")]
    pub target: Option<String>,
    /// At most this many events.
    #[arg(long, env = "SCIM_OPERATOR_AUDIT_LIMIT")]
    pub limit: Option<u64>,
    /// Output: JSON lines, or CSV (the columns of the console's export).
    #[arg(long, env = "SCIM_OPERATOR_AUDIT_FORMAT", value_enum, default_value = "json")]
    pub format: AuditFormat,
}

#[derive(Debug, Args)]
pub struct AccessReviewArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The date the review is of: an RFC 3339 time (2026-03-31T17:00:00Z), or a day
    /// (2026-03-31: the end of that day in UTC; today: now). Default: now. Not in the future.
    #[arg(long, env = "SCIM_OPERATOR_ACCESS_REVIEW_AS_OF")]
    pub as_of: Option<String>,
    /// Output: JSON (`{"asOf": ..., "accounts": [...]}`, as `GET /api/v1/access-review`), or
    /// CSV (Vanta's access-file columns first, then this server's).
    #[arg(long, env = "SCIM_OPERATOR_ACCESS_REVIEW_FORMAT", value_enum, default_value = "json")]
    pub format: AuditFormat,
}

const ACCESS_REVIEW_HELP: &str = "\
One line per role a person held (a person without a role: one line with none) and one per key.
The review rolls today's rows back through the audit trail's events after the date: roles,
their paths (explicit SCIM role, RoleMapping through which team, default role), memberships,
deactivations, deletions, keys. Grants made before the server recorded grant times show an
empty granted_at/granted_by (unknown); a key's last_used_at is its latest recorded use, shown
only when it is not after the date.

CSV columns: Account name, Account owner, Role, Status, Date created (UTC), Date deactivated
(UTC) (as in Vanta's access file), then account_type, account_id, display_name, source, via,
granted_at, granted_by, teams, created_at, deactivated_at, last_used_at.

Examples:
  scim-operator access-review --db /var/lib/scim-operator/scim.db --as-of 2026-03-31 --format csv
  scim-operator access-review --db postgres://... --as-of 2026-03-31T17:00:00Z";

/// Output format of `audit`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AuditFormat {
    Json,
    Csv,
}

/// Sets up logging to stderr.
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Keys(cmd) => keys(cmd).await,
        Command::Audit(args) => audit(args).await,
        Command::AccessReview(args) => access_review(args).await,
        Command::Roles(cmd) => roles(cmd).await,
        Command::Teams(cmd) => teams(cmd).await,
        Command::Invites(cmd) => invites(cmd).await,
        Command::Console(cmd) => console(cmd).await,
        Command::Crds { out } => write_crds(&out),
        Command::Controller(args) => crate::operator::run(args, shutdown_signal()).await,
        Command::Migrate { from, to } => migrate(&from, &to).await,
    }
}

/// `migrate`: copies a SQLite database into an empty PostgreSQL database and prints a summary.
async fn migrate(from: &str, to: &str) -> Result<()> {
    let report = crate::store::copy::copy_sqlite_to_postgres(from, to)
        .await
        .with_context(|| format!("copying {} into {}", redact_url(from), redact_url(to)))?;
    for (table, rows) in &report.tables {
        println!("{table}: {rows} rows");
    }
    println!(
        "copied {} rows in {} tables from {} into {} in {:.1}s; row counts verified",
        report.total_rows(),
        report.tables.len(),
        redact_url(from),
        redact_url(to),
        report.elapsed.as_secs_f64()
    );
    Ok(())
}

async fn open(db: &DbArgs) -> Result<SharedStore> {
    crate::store::open(&db.db).await.with_context(|| format!("opening the database {}", redact_url(&db.db)))
}

async fn serve(args: ServeArgs) -> Result<()> {
    let store = open(&args.db).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let metrics = Arc::new(Metrics::default());
    let statsd = match &args.statsd {
        Some(addr) => {
            Some(crate::server::metrics::statsd_client(addr).with_context(|| format!("StatsD address {addr}"))?)
        }
        None => None,
    };
    let observer = Arc::new(crate::server::metrics::MetricsObserver { metrics: metrics.clone(), statsd });
    let directory =
        Directory::new(store.clone(), clock.clone()).with_settings(args.invitations.settings()).with_observer(observer);
    let ctx = RequestContext::trusted("system");
    if args.smtp_url.is_some()
        && let Some(warning) = directory.settings().invitation_link_warning()
    {
        tracing::warn!(invitation_url = %args.invitations.invitation_url, "{warning}");
    }
    let grace = chrono::Duration::seconds(i64::try_from(args.bootstrap_key_grace_seconds).unwrap_or(i64::MAX / 1000));
    if let Some(path) = &args.bootstrap_key_file {
        if path.exists() {
            sync_bootstrap_key(&directory, &ctx, path, grace).await?;
        } else {
            // The chart mounts the Secret the operator makes on its first start: until the
            // kubelet delivers it, the server runs without it and keeps looking.
            tracing::warn!(path = %path.display(), "no bootstrap key yet; it is registered once the file appears");
        }
    }
    for warning in directory.key_warnings().await? {
        tracing::warn!("{warning}");
        directory.record_warning(&ctx, &warning).await?;
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let bootstrap = args.bootstrap_key_file.clone().map(|path| {
        let every = Duration::from_secs(args.bootstrap_key_check_seconds.max(1));
        tokio::spawn(watch_bootstrap_key(directory.clone(), ctx.clone(), path, grace, every, stop_rx.clone()))
    });
    let delivery = match &args.smtp_url {
        Some(url) => {
            let config = crate::delivery::SmtpConfig { url: url.clone(), from: args.smtp_from.clone() };
            let deliverer = crate::delivery::Deliverer::new(&config, store.clone(), clock.clone())?
                .with_policy(args.delivery.policy())
                .with_metrics(metrics.clone());
            Some(tokio::spawn(deliverer.run(stop_rx.clone())))
        }
        None => None,
    };
    let console = match args.console.config()? {
        Some(config) => {
            let url = config.public_url.clone();
            let sso = config.oidc.is_some();
            let console =
                crate::console::ConsoleState::new(directory.clone(), config).context("setting up the console")?;
            tracing::info!(url = %url, single_sign_on = sso, "serving the console");
            Some(console)
        }
        None => None,
    };
    let state = AppState::new(
        directory,
        metrics,
        ServerConfig {
            base_url: args.base_url,
            default_count: args.default_count,
            max_count: args.max_count,
            max_body_bytes: args.max_body_bytes,
            max_values: args.max_values,
            max_patch_operations: args.max_patch_operations,
            request_timeout: Duration::from_secs(args.request_timeout_secs),
            key_cache_ttl: Duration::from_millis(args.key_cache_millis),
            metrics_on_api_port: args.metrics_listen.is_none(),
            sends_invitation_email: args.smtp_url.is_some(),
            request_log_size: args.request_log_size,
        },
    );
    let state = match console {
        Some(console) => state.with_console(console),
        None => state,
    };
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let metrics_server = match args.metrics_listen {
        Some(addr) => {
            let metrics_listener =
                tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr} for metrics"))?;
            tracing::info!(address = %metrics_listener.local_addr()?, "metrics listening on /metrics");
            let mut stop = stop_rx.clone();
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            Some(tokio::spawn(crate::server::serve_metrics(metrics_listener, state.clone(), shutdown)))
        }
        None => None,
    };
    tracing::info!(address = %listener.local_addr()?, "SCIM server listening on /scim/v2");
    crate::server::serve(listener, state, shutdown_signal()).await.context("serving HTTP")?;
    let _ = stop_tx.send(true);
    if let Some(m) = metrics_server {
        let _ = m.await;
    }
    if let Some(d) = delivery {
        let _ = d.await;
    }
    if let Some(b) = bootstrap {
        let _ = b.await;
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Registers the secret in `path` if it is new and revokes the bootstrap keys it superseded
/// once their grace has passed (see [`Directory::sync_bootstrap_key`]).
async fn sync_bootstrap_key(
    directory: &Directory,
    ctx: &RequestContext,
    path: &std::path::Path,
    grace: chrono::Duration,
) -> Result<()> {
    let secret =
        std::fs::read_to_string(path).with_context(|| format!("reading the bootstrap key {}", path.display()))?;
    let done = directory
        .sync_bootstrap_key(ctx, &secret, grace)
        .await
        .with_context(|| format!("registering the bootstrap key in {}", path.display()))?;
    if let Some(id) = &done.registered {
        tracing::info!(key = %id, "registered the bootstrap key");
    }
    for id in &done.revoked {
        tracing::info!(key = %id, "revoked a superseded bootstrap key (grace period over)");
    }
    if let Some(at) = done.next_revocation.filter(|_| done.registered.is_some()) {
        tracing::info!(at = %format_time(at), "earlier bootstrap keys work until then");
    }
    Ok(())
}

/// Reads the bootstrap key file every `every` until `stop`: a mounted Secret is replaced in
/// place, and a grace period ends whether or not the server restarts. Failures are logged and
/// change nothing; the next read tries again.
async fn watch_bootstrap_key(
    directory: Directory,
    ctx: RequestContext,
    path: std::path::PathBuf,
    grace: chrono::Duration,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Err(e) = sync_bootstrap_key(&directory, &ctx, &path, grace).await {
            tracing::warn!(error = format!("{e:#}"), "bootstrap key not synchronised; keeping the keys as they are");
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

fn cli_context() -> RequestContext {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    RequestContext::trusted(format!("cli:{user}"))
}

async fn keys(cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::Create { db, name, user, preset, permissions } => {
            let permissions = key_permissions(preset, &permissions)?;
            let directory = directory_for(&db).await?;
            let (record, secret) = directory.create_key(&cli_context(), &name, user.as_deref(), &permissions).await?;
            if record.owner == KeyOwner::User {
                eprintln!(
                    "warning: this key belongs to a user; if that user is deactivated the key is revoked and provisioning stops. Prefer a service-account key."
                );
            }
            println!(
                "created key {} ({}) for {} with {}",
                record.id,
                name,
                record.owner.as_str(),
                record.permissions.join(",")
            );
            println!("{}", secret.expose());
            Ok(())
        }
        KeysCommand::List { db } => {
            let keys = directory_for(&db).await?.keys().await?;
            for k in keys {
                let line = serde_json::json!({
                    "id": k.id, "name": k.name, "owner": k.owner.as_str(), "ownerUserId": k.owner_user_id,
                    "hint": format!("{}…", k.hint), "permissions": k.permissions, "created": k.created,
                    "revoked": k.revoked_at, "revokedReason": k.revoked_reason, "lastUsed": k.last_used_at,
                });
                println!("{line}");
            }
            Ok(())
        }
        KeysCommand::Revoke { db, key } => {
            directory_for(&db).await?.revoke_key(&cli_context(), &key).await?;
            println!("revoked {key}");
            Ok(())
        }
    }
}

async fn audit(args: AuditArgs) -> Result<()> {
    let query = AuditQuery {
        since: args.since,
        until: args.until,
        action: args.action,
        actor: args.actor,
        target_id: args.target,
        limit: args.limit,
    };
    let events = directory_for(&args.db).await?.audit_events(&query).await?;
    match args.format {
        AuditFormat::Json => {
            for e in events {
                println!("{}", serde_json::to_string(&e)?);
            }
        }
        AuditFormat::Csv => print!("{}", crate::provisioning::console_views::audit_csv(&events)?),
    }
    Ok(())
}

async fn access_review(args: AccessReviewArgs) -> Result<()> {
    let directory = directory_for(&args.db).await?;
    let (at, rows) = directory.access_review(&cli_context(), args.as_of.as_deref()).await?;
    use crate::provisioning::access_review::{access_review_csv, access_review_json};
    match args.format {
        AuditFormat::Json => println!("{}", access_review_json(&at, &rows)),
        AuditFormat::Csv => print!("{}", access_review_csv(&rows)?),
    }
    Ok(())
}

async fn console(cmd: ConsoleCommand) -> Result<()> {
    match cmd {
        ConsoleCommand::LoginLink { db, user, console_url, ttl_minutes } => {
            let directory = directory_for(&db).await?;
            let ttl = chrono::Duration::minutes(ttl_minutes);
            let (link, token) = directory.create_login_link(&cli_context(), &user, ttl).await?;
            eprintln!("single-use sign-in link for {user}, valid until {} (UTC):", link.expires_at);
            println!("{}", crate::console::login_link_url(&console_url, token.expose()));
            Ok(())
        }
    }
}

fn write_crds(out: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, yaml) in crate::operator::crd::crd_documents()? {
        let path = out.join(name);
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

fn print_json(v: serde_json::Value) {
    println!("{v}");
}

async fn directory_for(db: &DbArgs) -> Result<Directory> {
    Ok(Directory::new(open(db).await?, Arc::new(SystemClock)))
}

async fn roles(cmd: RolesCommand) -> Result<()> {
    let ctx = cli_context();
    match cmd {
        RolesCommand::Create { db, name, description } => {
            let role = directory_for(&db).await?.create_role(&ctx, &name, &description).await?;
            println!("created role {} ({})", role.name, role.id);
        }
        RolesCommand::List { db } => {
            let (roles, default) = directory_for(&db).await?.role_catalog().await?;
            for r in roles {
                print_json(serde_json::json!({"id": r.id, "name": r.name, "builtin": r.builtin,
                    "default": default.as_deref() == Some(r.id.as_str()), "description": r.description}));
            }
        }
        RolesCommand::Delete { db, role } => {
            directory_for(&db).await?.delete_role(&ctx, &role).await?;
            println!("deleted role {role}");
        }
        RolesCommand::Default { db, role, none } => {
            let wanted = if none { None } else { role.as_deref() };
            match directory_for(&db).await?.set_default_role(&ctx, wanted).await? {
                Some(r) => println!("default role: {}", r.name),
                None => println!("no default role"),
            }
        }
    }
    Ok(())
}

async fn teams(cmd: TeamsCommand) -> Result<()> {
    let ctx = cli_context();
    match cmd {
        TeamsCommand::Create { db, name } => {
            let team = directory_for(&db).await?.create_team(&ctx, &name).await?;
            println!("created team {} (handle {}, id {})", team.name, team.handle, team.id);
        }
        TeamsCommand::List { db } => {
            for (t, members) in directory_for(&db).await?.teams().await? {
                print_json(serde_json::json!({"id": t.id, "name": t.name, "handle": t.handle,
                    "managed": t.scim_id.is_some(), "groupId": t.scim_id, "members": members}));
            }
        }
        TeamsCommand::AddMember { db, team, user } => {
            directory_for(&db).await?.change_team_member(&ctx, &team, &user, true).await?;
            println!("added {user} to {team}");
        }
        TeamsCommand::RemoveMember { db, team, user } => {
            directory_for(&db).await?.change_team_member(&ctx, &team, &user, false).await?;
            println!("removed {user} from {team}");
        }
    }
    Ok(())
}

async fn invites(cmd: InvitesCommand) -> Result<()> {
    match cmd {
        InvitesCommand::List { db } => {
            let (invitations, messages) = directory_for(&db).await?.invitations_and_outbox(1000).await?;
            for i in invitations {
                print_json(serde_json::json!({"invitation": i.id, "user": i.user_id, "email": i.email,
                    "created": i.created, "expiresAt": i.expires_at, "status": i.status.as_str()}));
            }
            for m in messages {
                print_json(
                    serde_json::json!({"message": m.id, "kind": m.kind, "to": m.recipient, "subject": m.subject,
                    "created": m.created, "state": m.state().as_str(), "invitation": m.invitation_id, "sent": m.sent_at,
                    "attempts": m.attempts, "lastError": m.last_error, "nextAttemptAt": m.next_attempt_at,
                    "parked": m.parked_at, "cancelled": m.cancelled_at, "body": m.body}),
                );
            }
        }
        InvitesCommand::Resend { db, invitations, user } => {
            let directory = directory_for(&db).await?.with_settings(invitations.settings());
            match directory.resend_invitation(&cli_context(), &user).await? {
                Some(id) => println!("issued invitation {id} to {user}"),
                None => bail!("user {user} has no e-mail address to invite"),
            }
        }
    }
    Ok(())
}
