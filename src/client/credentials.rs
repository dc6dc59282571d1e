//! The credentials a client presents to a SCIM target: a bearer token read where it lives now
//! (a file, a Kubernetes Secret's key), or an OAuth 2.0 client-credentials grant (RFC 6749
//! §4.4) through the `oauth2` crate, fetched again before the token expires and once more when
//! the target answers 401. Token values never appear in `Debug` output, errors or logs.

use oauth2::basic::BasicClient;
use oauth2::{ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::{ClientError, ClientResult};

/// A secret value read where it lives now, on every call (so a rotated Secret or file takes
/// effect without a restart). Errors say what is missing, never the value.
pub trait SecretSource: Send + Sync {
    /// The current value.
    fn read(&self) -> Result<String, String>;
}

impl<F: Fn() -> Result<String, String> + Send + Sync> SecretSource for F {
    fn read(&self) -> Result<String, String> {
        self()
    }
}

/// A secret in a file (a mounted Secret), read again when the file changes.
pub struct FileSecret {
    path: PathBuf,
    cached: std::sync::Mutex<(String, Option<SystemTime>)>,
}

impl FileSecret {
    /// The secret in `path`, trimmed.
    pub fn new(path: PathBuf) -> Self {
        Self { path, cached: std::sync::Mutex::new((String::new(), None)) }
    }
}

impl SecretSource for FileSecret {
    fn read(&self) -> Result<String, String> {
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if cached.0.is_empty() || cached.1 != modified {
            let text = std::fs::read_to_string(&self.path)
                .map_err(|e| format!("cannot read the token file {}: {e}", self.path.display()))?;
            *cached = (text.trim().to_string(), modified);
        }
        Ok(cached.0.clone())
    }
}

/// An access token. Its `Debug` form hides the value; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    /// The value, for the `Authorization` header only.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(***)")
    }
}

/// An OAuth 2.0 client-credentials grant.
pub struct ClientCredentialsGrant {
    /// The authorization server's token endpoint.
    pub token_url: String,
    /// The client id (read on each fetch, so a rotated Secret applies).
    pub client_id: Arc<dyn SecretSource>,
    /// The client secret.
    pub client_secret: Arc<dyn SecretSource>,
    /// Scopes to ask for.
    pub scopes: Vec<String>,
    /// An `audience` parameter (RFC 8707-style resource indicator some servers require).
    pub audience: Option<String>,
}

/// A token issued by the grant, and when to fetch the next one.
struct Issued {
    token: AccessToken,
    renew_at: Option<Instant>,
    /// The client id and secret it was fetched with: a rotated Secret fetches anew.
    with: (String, String),
}

enum Kind {
    Bearer(Arc<dyn SecretSource>),
    Grant { grant: Box<ClientCredentialsGrant>, issued: tokio::sync::Mutex<Option<Issued>> },
}

/// What a client presents as `Authorization: Bearer`.
pub struct Credentials {
    kind: Kind,
    fetches: AtomicU64,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Bearer(_) => f.write_str("Credentials::Bearer(***)"),
            Kind::Grant { grant, .. } => write!(f, "Credentials::ClientCredentials({})", grant.token_url),
        }
    }
}

/// How long before expiry a token is renewed: a quarter of its life, at most 30 s.
fn renewal_margin(lifetime: Duration) -> Duration {
    (lifetime / 4).min(Duration::from_secs(30))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TokenHttpError(String);

impl Credentials {
    /// A bearer token read from `source` on every request.
    pub fn bearer(source: Arc<dyn SecretSource>) -> Self {
        Self { kind: Kind::Bearer(source), fetches: AtomicU64::new(0) }
    }

    /// A bearer token in a file, read again when the file changes.
    pub fn token_file(path: PathBuf) -> Self {
        Self::bearer(Arc::new(FileSecret::new(path)))
    }

    /// Tokens from an OAuth 2.0 client-credentials grant.
    pub fn client_credentials(grant: ClientCredentialsGrant) -> Self {
        Self {
            kind: Kind::Grant { grant: Box::new(grant), issued: tokio::sync::Mutex::new(None) },
            fetches: AtomicU64::new(0),
        }
    }

    /// Tokens fetched from the token endpoint so far (for tests and metrics).
    pub fn tokens_fetched(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The token to send now. `http` must not follow redirects (a token request is never
    /// replayed to another host).
    pub async fn token(&self, http: &reqwest::Client) -> ClientResult<AccessToken> {
        match &self.kind {
            Kind::Bearer(source) => {
                let value = source.read().map_err(ClientError::Unauthorized)?;
                if value.is_empty() {
                    return Err(ClientError::Unauthorized("the bearer token is empty".into()));
                }
                Ok(AccessToken(value))
            }
            Kind::Grant { grant, issued } => {
                let with = (
                    grant.client_id.read().map_err(ClientError::Unauthorized)?,
                    grant.client_secret.read().map_err(ClientError::Unauthorized)?,
                );
                let mut issued = issued.lock().await;
                if let Some(i) = issued.as_ref()
                    && i.with == with
                    && i.renew_at.is_none_or(|at| Instant::now() < at)
                {
                    return Ok(i.token.clone());
                }
                let fresh = self.fetch(grant, &with, http).await?;
                let token = fresh.token.clone();
                *issued = Some(fresh);
                Ok(token)
            }
        }
    }

    /// The target refused `token` (401): forget it, so that the next [`Self::token`] fetches
    /// (or reads) a new one.
    pub async fn rejected(&self, token: &AccessToken) {
        if let Kind::Grant { issued, .. } = &self.kind {
            let mut issued = issued.lock().await;
            if issued.as_ref().is_some_and(|i| &i.token == token) {
                *issued = None;
            }
        }
    }

    async fn fetch(
        &self,
        grant: &ClientCredentialsGrant,
        (id, secret): &(String, String),
        http: &reqwest::Client,
    ) -> ClientResult<Issued> {
        let token_url = TokenUrl::new(grant.token_url.clone())
            .map_err(|e| ClientError::Other(format!("the token URL {:?} is not a URL: {e}", grant.token_url)))?;
        let client = BasicClient::new(ClientId::new(id.clone()))
            .set_client_secret(ClientSecret::new(secret.clone()))
            .set_token_uri(token_url);
        let mut request = client.exchange_client_credentials();
        for scope in &grant.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if let Some(audience) = &grant.audience {
            request = request.add_extra_param("audience", audience.clone());
        }
        let send = |req: oauth2::HttpRequest| {
            let http = http.clone();
            async move {
                let req = reqwest::Request::try_from(req).map_err(|e| TokenHttpError(e.to_string()))?;
                let resp = http.execute(req).await.map_err(|e| TokenHttpError(e.to_string()))?;
                let mut answer = oauth2::http::Response::builder().status(resp.status());
                for (name, value) in resp.headers() {
                    answer = answer.header(name, value);
                }
                let body = resp.bytes().await.map_err(|e| TokenHttpError(e.to_string()))?;
                answer.body(body.to_vec()).map_err(|e| TokenHttpError(e.to_string()))
            }
        };
        let started = Instant::now();
        let answer = request.request_async(&send).await.map_err(|e| token_error(&grant.token_url, e))?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let renew_at = answer.expires_in().map(|life| started + life - renewal_margin(life));
        Ok(Issued {
            token: AccessToken(answer.access_token().secret().clone()),
            renew_at,
            with: (id.clone(), secret.clone()),
        })
    }
}

/// What the token endpoint's failure means for the caller. Only the endpoint's error code and
/// description are kept: its answer never holds a token when it fails.
fn token_error(
    url: &str,
    e: oauth2::RequestTokenError<TokenHttpError, oauth2::basic::BasicErrorResponse>,
) -> ClientError {
    match e {
        oauth2::RequestTokenError::ServerResponse(r) => ClientError::Unauthorized(format!(
            "the token endpoint {url} refused the client credentials: {}{}",
            r.error(),
            r.error_description().map(|d| format!(" ({d})")).unwrap_or_default()
        )),
        oauth2::RequestTokenError::Request(e) => {
            ClientError::Unavailable { message: format!("the token endpoint {url}: {e}"), retry_after: None }
        }
        oauth2::RequestTokenError::Parse(e, _) => {
            ClientError::Other(format!("the token endpoint {url} answered something that is not a token: {e}"))
        }
        oauth2::RequestTokenError::Other(e) => ClientError::Other(format!("the token endpoint {url}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_hidden_in_debug_output() {
        let t = AccessToken("eyJsecret".into());
        assert_eq!(format!("{t:?}"), "AccessToken(***)");
        let c = Credentials::bearer(Arc::new(|| Ok("eyJsecret".to_string())));
        assert!(!format!("{c:?}").contains("eyJ"));
    }

    #[test]
    fn tokens_are_renewed_a_quarter_of_their_life_early_at_most_thirty_seconds() {
        assert_eq!(renewal_margin(Duration::from_secs(60)), Duration::from_secs(15));
        assert_eq!(renewal_margin(Duration::from_secs(300)), Duration::from_secs(30));
        assert_eq!(renewal_margin(Duration::from_secs(4)), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_bearer_token_is_read_anew_for_every_request() {
        let value = Arc::new(std::sync::Mutex::new("one".to_string()));
        let v = value.clone();
        let c = Credentials::bearer(Arc::new(move || Ok(v.lock().unwrap().clone())));
        let http = reqwest::Client::new();
        assert_eq!(c.token(&http).await.unwrap().secret(), "one");
        *value.lock().unwrap() = "two".into();
        assert_eq!(c.token(&http).await.unwrap().secret(), "two", "a rotated Secret applies without a restart");
        *value.lock().unwrap() = String::new();
        assert!(matches!(c.token(&http).await, Err(ClientError::Unauthorized(_))));
    }

    #[test]
    fn a_token_file_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let f = FileSecret::new(path.clone());
        assert_eq!(f.read().unwrap(), "first");
        std::fs::write(&path, "second-and-longer\n").unwrap();
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(later).unwrap();
        assert_eq!(f.read().unwrap(), "second-and-longer");
        assert!(FileSecret::new(dir.path().join("absent")).read().unwrap_err().contains("cannot read"));
    }
}
