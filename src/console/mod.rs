//! The web console under `/console`: server-rendered pages for identity administrators and
//! auditors, behind single sign-on (OpenID Connect) or a single-use sign-in link.
//!
//! The pages only read and call `crate::provisioning`: who may sign in, what a role may do,
//! sessions, and every change (audited with the signed-in person as actor) are decided there.
//! Every page and form works without JavaScript. With it, htmx (embedded in the binary, served
//! from `/console/static/`, never a CDN) narrows the users table as one types and swaps a row
//! after Resend or Revoke instead of loading the page again; the Content-Security-Policy allows
//! the console's own script and no other, inline or `eval`.

pub mod oidc;
mod pages;
mod session;
mod templates;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use std::sync::Arc;

use crate::provisioning::Directory;
use crate::provisioning::console::SessionPolicy;

/// Settings of the console.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// The console's public URL, e.g. `https://scim.example.com/console` (the OIDC redirect URI
    /// is this plus `/callback`; sign-in links start with it).
    pub public_url: String,
    /// Single sign-on; without it only sign-in links work.
    pub oidc: Option<oidc::OidcConfig>,
    /// Whether cookies carry `Secure` (and the `__Host-` prefix). Only a console on
    /// `http://127.0.0.1` or `http://localhost` may turn it off.
    pub secure_cookies: bool,
    /// Timeouts.
    pub policy: SessionPolicy,
}

impl ConsoleConfig {
    /// Checks the settings: cookies go without `Secure` only on a loopback `http://` URL.
    pub fn validate(&self) -> anyhow::Result<()> {
        let url = self.public_url.trim_end_matches('/');
        if !url.starts_with("https://") && !url.starts_with("http://") {
            anyhow::bail!("the console URL {url} must start with https:// or http://");
        }
        let loopback = ["http://127.0.0.1:", "http://127.0.0.1/", "http://localhost:", "http://localhost/"]
            .iter()
            .any(|p| format!("{url}/").starts_with(p));
        if !self.secure_cookies && !loopback {
            anyhow::bail!(
                "insecure console cookies are allowed only for a console on http://127.0.0.1 or http://localhost"
            );
        }
        if self.secure_cookies && url.starts_with("http://") && !loopback {
            anyhow::bail!("the console URL {url} must use https:// (its cookies are Secure)");
        }
        Ok(())
    }
}

/// What the console's handlers share.
#[derive(Clone)]
pub struct ConsoleState {
    pub(crate) directory: Directory,
    pub(crate) config: Arc<ConsoleConfig>,
    pub(crate) oidc: Option<Arc<oidc::Oidc>>,
    /// The SCIM API's public base URL, for the *Connect an identity provider* page.
    pub(crate) scim_url: ScimUrl,
}

/// The SCIM API's public base URL and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimUrl {
    pub url: String,
    /// Set by `--base-url`; otherwise derived from the console's URL (same host, `/scim/v2`).
    pub configured: bool,
}

impl ScimUrl {
    /// The base URL beside a console at `public_url`: the same origin, path `/scim/v2`.
    pub fn beside_console(public_url: &str) -> Self {
        let url = public_url.trim_end_matches('/');
        let origin = match url.strip_suffix("/console") {
            Some(origin) => origin,
            None => {
                let after_scheme = url.find("://").map_or(0, |i| i + 3);
                url[after_scheme..].find('/').map_or(url, |slash| &url[..after_scheme + slash])
            }
        };
        Self { url: format!("{origin}/scim/v2"), configured: false }
    }
}

impl ConsoleState {
    /// The console over `directory`.
    pub fn new(directory: Directory, mut config: ConsoleConfig) -> anyhow::Result<Self> {
        config.public_url = config.public_url.trim_end_matches('/').to_string();
        config.validate()?;
        let oidc = config.oidc.clone().map(oidc::Oidc::new).transpose()?.map(Arc::new);
        let scim_url = ScimUrl::beside_console(&config.public_url);
        Ok(Self { directory, config: Arc::new(config), oidc, scim_url })
    }

    /// Uses the SCIM API's configured public base URL (`--base-url`).
    pub fn with_scim_url(mut self, url: &str) -> Self {
        self.scim_url = ScimUrl { url: url.trim_end_matches('/').to_string(), configured: true };
        self
    }
}

/// The redirect URI to register with the identity provider for a console at `public_url`.
pub fn redirect_uri(public_url: &str) -> String {
    format!("{}/callback", public_url.trim_end_matches('/'))
}

/// The sign-in link for a token, for a console at `public_url`.
pub fn login_link_url(public_url: &str, token: &str) -> String {
    format!("{}/link/{token}", public_url.trim_end_matches('/'))
}

/// The policy every console response carries: scripts and styles from the console itself only
/// (htmx, embedded; no inline script or style, no `eval`), no framing, nothing from elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The version of the embedded htmx (`src/console/vendor/`), part of its path so that a new
/// version is never served from a browser's cache of the old one.
pub const HTMX_VERSION: &str = "2.0.11";

/// Where the embedded htmx is served.
pub const HTMX_PATH: &str = "/console/static/htmx-2.0.11.min.js";

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Sign-in links and authorization codes travel in URLs: never in a Referer.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// The console's routes, to be nested under `/console`.
pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/static/console.css", get(pages::stylesheet))
        .route(HTMX_PATH.trim_start_matches("/console"), get(pages::htmx))
        .route("/signin", get(pages::signin))
        .route("/login", get(pages::login))
        .route("/callback", get(pages::callback))
        .route("/link/{token}", get(pages::link_page).post(pages::link_redeem))
        .route("/signout", post(pages::signout))
        .route("/users", get(pages::users))
        .route("/users/{id}", get(pages::user))
        .route("/users/{id}/resend", post(pages::resend))
        .route("/teams", get(pages::teams).post(pages::create_team))
        .route("/teams/{id}", get(pages::team))
        .route("/teams/{id}/members", post(pages::team_member))
        .route("/audit", get(pages::audit))
        .route("/audit.csv", get(pages::audit_csv))
        .route("/requests", get(pages::requests))
        .route("/connect", get(pages::connect))
        .route("/connect/test", post(pages::connect_test))
        .route("/access-review", get(pages::access_review))
        .route("/access-review.csv", get(pages::access_review_csv))
        .route("/keys", get(pages::keys).post(pages::create_key))
        .route("/keys/{id}/revoke", post(pages::revoke_key))
        .fallback(pages::not_found)
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, secure: bool) -> ConsoleConfig {
        ConsoleConfig { public_url: url.into(), oidc: None, secure_cookies: secure, policy: SessionPolicy::default() }
    }

    #[test]
    fn insecure_cookies_only_on_loopback_http() {
        assert!(config("https://scim.example.com/console", true).validate().is_ok());
        assert!(config("http://127.0.0.1:8080/console", false).validate().is_ok());
        assert!(config("http://localhost:8080/console", false).validate().is_ok());
        assert!(config("https://scim.example.com/console", false).validate().is_err());
        assert!(config("http://scim.example.com/console", false).validate().is_err());
        assert!(config("http://127.0.0.1.example.com/console", false).validate().is_err());
        assert!(config("http://scim.example.com/console", true).validate().is_err(), "Secure cookies need https");
        assert!(config("ftp://x/console", true).validate().is_err());
    }

    #[test]
    fn the_embedded_htmx_is_the_version_its_path_names() {
        let js = std::str::from_utf8(pages::HTMX_JS).expect("utf-8");
        assert!(js.contains(&format!("version:\"{HTMX_VERSION}\"")), "the vendored file is htmx {HTMX_VERSION}");
        assert_eq!(HTMX_PATH, format!("/console/static/htmx-{HTMX_VERSION}.min.js"));
    }

    #[test]
    fn the_scim_url_beside_the_console_is_on_the_same_origin() {
        let at = |u: &str| ScimUrl::beside_console(u).url;
        assert_eq!(at("https://scim.example.com/console"), "https://scim.example.com/scim/v2");
        assert_eq!(at("http://127.0.0.1:8080/console/"), "http://127.0.0.1:8080/scim/v2");
        assert_eq!(at("https://x.test/admin/ui"), "https://x.test/scim/v2");
        assert_eq!(at("https://x.test"), "https://x.test/scim/v2");
    }

    #[test]
    fn the_redirect_uri_and_links_hang_off_the_console_url() {
        assert_eq!(redirect_uri("https://x.test/console/"), "https://x.test/console/callback");
        assert_eq!(login_link_url("https://x.test/console", "scimop_abc"), "https://x.test/console/link/scimop_abc");
    }
}
