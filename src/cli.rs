//! Command line: `scim-operator <subcommand>`. Every flag can also be set by an environment
//! variable (named in `--help`).

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock, format_time};
use crate::provisioning::keys::{SCIM_PERMISSIONS, Secret, new_key_record};
use crate::provisioning::{Directory, RequestContext};
use crate::server::{AppState, ServerConfig, metrics::Metrics};
use crate::store::{AuditEvent, AuditQuery, KeyOwner, SharedStore};

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
    Serve(ServeArgs),
    /// Manage application keys (bearer tokens for the SCIM API).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print the audit trail as JSON lines.
    Audit(AuditArgs),
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
    /// Seconds after which a request is abandoned and rolled back.
    #[arg(long, env = "SCIM_OPERATOR_REQUEST_TIMEOUT", default_value_t = 30)]
    pub request_timeout_secs: u64,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret as the last line of stdout (shown once).
    Create {
        #[command(flatten)]
        db: DbArgs,
        /// A name to recognise the key by.
        #[arg(long)]
        name: String,
        /// Tie the key to a user (id or userName) instead of a service account. Not recommended
        /// for SCIM: deactivating that user revokes the key and stops provisioning.
        #[arg(long)]
        user: Option<String>,
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
    #[arg(long)]
    pub since: Option<String>,
    /// Only events with this action (e.g. `user.create`, `role.unmatched`).
    #[arg(long)]
    pub action: Option<String>,
    /// Only events about this target id.
    #[arg(long)]
    pub target: Option<String>,
    /// At most this many events.
    #[arg(long)]
    pub limit: Option<u64>,
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
        Command::Serve(args) => serve(args).await,
        Command::Keys(cmd) => keys(cmd).await,
        Command::Audit(args) => audit(args).await,
    }
}

async fn open(db: &DbArgs) -> Result<SharedStore> {
    crate::store::open(&db.db).await.with_context(|| format!("opening the database {}", redact_url(&db.db)))
}

/// Hides a password in a database URL.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let store = open(&args.db).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let directory = Directory::new(store.clone(), clock);
    let state = AppState {
        directory,
        metrics: Arc::new(Metrics::default()),
        config: Arc::new(ServerConfig {
            base_url: args.base_url,
            default_count: args.default_count,
            max_count: args.max_count,
            max_body_bytes: args.max_body_bytes,
            request_timeout: Duration::from_secs(args.request_timeout_secs),
        }),
    };
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, "SCIM server listening on /scim/v2");
    crate::server::serve(listener, state, shutdown_signal()).await.context("serving HTTP")?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
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
    RequestContext { actor: format!("cli:{user}"), request_id: None, base_url: String::new() }
}

async fn keys(cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::Create { db, name, user } => {
            let store = open(&db).await?;
            let now = format_time(SystemClock.now());
            let mut tx = store.begin_write().await?;
            let owner_user_id = match &user {
                Some(u) => {
                    let rec = match tx.user(u).await? {
                        Some(r) => Some(r),
                        None => tx.user_by_name(u).await?,
                    };
                    Some(rec.with_context(|| format!("no user with id or userName '{u}'"))?.id)
                }
                None => None,
            };
            let owner = if owner_user_id.is_some() { KeyOwner::User } else { KeyOwner::ServiceAccount };
            let secret = Secret::generate();
            let perms = SCIM_PERMISSIONS.iter().map(|p| p.to_string()).collect();
            let record = new_key_record(&secret, &name, owner, owner_user_id, perms, &now);
            tx.insert_key(&record).await?;
            let ctx = cli_context();
            tx.append_audit(&AuditEvent {
                id: uuid::Uuid::new_v4().to_string(),
                time: now,
                actor: ctx.actor,
                action: "key.create".into(),
                target_type: "key".into(),
                target_id: record.id.clone(),
                request_id: None,
                details: serde_json::json!({"name": name, "owner": owner.as_str(), "ownerUserId": record.owner_user_id}),
            })
            .await?;
            tx.commit().await?;
            if owner == KeyOwner::User {
                eprintln!(
                    "warning: this key belongs to a user; if that user is deactivated the key is revoked and provisioning stops. Prefer a service-account key."
                );
            }
            println!("created key {} ({}) for {}", record.id, name, owner.as_str());
            println!("{}", secret.expose());
            Ok(())
        }
        KeysCommand::List { db } => {
            let store = open(&db).await?;
            let keys = store.begin_read().await?.list_keys().await?;
            for k in keys {
                let line = serde_json::json!({
                    "id": k.id, "name": k.name, "owner": k.owner.as_str(), "ownerUserId": k.owner_user_id,
                    "hint": format!("{}…", k.hint), "permissions": k.permissions, "created": k.created,
                    "revoked": k.revoked_at, "revokedReason": k.revoked_reason,
                });
                println!("{line}");
            }
            Ok(())
        }
        KeysCommand::Revoke { db, key } => {
            let store = open(&db).await?;
            let now = format_time(SystemClock.now());
            let mut tx = store.begin_write().await?;
            if !tx.revoke_key(&key, &now, "revoked by administrator").await? {
                bail!("no unrevoked key with id or name '{key}'");
            }
            tx.append_audit(&AuditEvent {
                id: uuid::Uuid::new_v4().to_string(),
                time: now,
                actor: cli_context().actor,
                action: "key.revoke".into(),
                target_type: "key".into(),
                target_id: key.clone(),
                request_id: None,
                details: serde_json::json!({}),
            })
            .await?;
            tx.commit().await?;
            println!("revoked {key}");
            Ok(())
        }
    }
}

async fn audit(args: AuditArgs) -> Result<()> {
    let store = open(&args.db).await?;
    let query = AuditQuery { since: args.since, action: args.action, target_id: args.target, limit: args.limit };
    let events = store.begin_read().await?.list_audit(&query).await?;
    for e in events {
        println!("{}", serde_json::to_string(&e)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_hidden() {
        assert_eq!(redact_url("postgres://scim:s3cret@db:5432/scim"), "postgres://scim:***@db:5432/scim");
        assert_eq!(redact_url("/var/lib/scim.db"), "/var/lib/scim.db");
    }
}
