//! Sign-in by OpenID Connect: the authorization code flow with PKCE, a nonce and a state bound
//! to the browser, done by the `openidconnect` crate. The provider's metadata (endpoints and
//! signing keys) is discovered from the issuer URL on first use and again after a failure.

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, HttpRequest, HttpResponse, IssuerUrl, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use tokio::sync::RwLock;

/// Which claim of the ID token names the person, matched against `userName`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SubjectClaim {
    /// `email`; the provider must also say `email_verified: true`.
    Email,
    /// `preferred_username` (Entra ID's UPN, Okta's login, Keycloak's username).
    PreferredUsername,
}

/// How the console reaches the identity provider.
#[derive(Clone)]
pub struct OidcConfig {
    /// The issuer URL (discovery at `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// The redirect URI registered with the provider: `<console URL>/callback`.
    pub redirect_uri: String,
    pub claim: SubjectClaim,
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .field("redirect_uri", &self.redirect_uri)
            .field("claim", &self.claim)
            .finish()
    }
}

/// What the callback needs to finish a sign-in, kept server-side.
pub struct Started {
    /// Where to send the browser.
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// An OpenID Connect relying party.
pub struct Oidc {
    config: OidcConfig,
    http: reqwest::Client,
    metadata: RwLock<Option<CoreProviderMetadata>>,
}

/// The HTTP client the `openidconnect` crate is given: this server's reqwest client (rustls,
/// no redirects). A named type with a boxed `Send` future, so the handlers' futures stay `Send`.
struct Http<'a>(&'a reqwest::Client);

impl<'c> openidconnect::AsyncHttpClient<'c> for Http<'_> {
    type Error = HttpError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(send(self.0, request))
    }
}

/// Sends one request of the `openidconnect` crate.
async fn send(http: &reqwest::Client, request: HttpRequest) -> Result<HttpResponse, HttpError> {
    let (parts, body) = request.into_parts();
    let response = http.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body).send().await?;
    let mut out = openidconnect::http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        out = out.header(name, value);
    }
    Ok(out.body(response.bytes().await?.to_vec())?)
}

/// Errors of the HTTP client the `openidconnect` crate is given.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Request(#[from] reqwest::Error),
    #[error("{0}")]
    Http(#[from] openidconnect::http::Error),
}

impl Oidc {
    /// A relying party for `config`.
    pub fn new(config: OidcConfig) -> anyhow::Result<Self> {
        // No redirects: the crate's guidance against SSRF through a redirecting endpoint.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()?;
        IssuerUrl::new(config.issuer.clone())?;
        RedirectUrl::new(config.redirect_uri.clone())?;
        Ok(Self { config, http, metadata: RwLock::new(None) })
    }

    /// The claim that names the person.
    pub fn claim(&self) -> SubjectClaim {
        self.config.claim
    }

    async fn metadata(&self) -> anyhow::Result<CoreProviderMetadata> {
        if let Some(m) = self.metadata.read().await.clone() {
            return Ok(m);
        }
        let http = Http(&self.http);
        let issuer = IssuerUrl::new(self.config.issuer.clone())?;
        let m = CoreProviderMetadata::discover_async(issuer, &http)
            .await
            .map_err(|e| anyhow::anyhow!("discovering the identity provider at {}: {e}", self.config.issuer))?;
        *self.metadata.write().await = Some(m.clone());
        Ok(m)
    }

    async fn client(
        &self,
    ) -> anyhow::Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
    > {
        let metadata = self.metadata().await?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            self.config.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(RedirectUrl::new(self.config.redirect_uri.clone())?))
    }

    /// Starts a sign-in: the provider's authorization URL and what to keep for the callback.
    pub async fn start(&self) -> anyhow::Result<Started> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let scope = match self.config.claim {
            SubjectClaim::Email => "email",
            SubjectClaim::PreferredUsername => "profile",
        };
        let (url, state, nonce) = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .add_scope(Scope::new(scope.into()))
            .set_pkce_challenge(challenge)
            .url();
        Ok(Started {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Finishes a sign-in: exchanges the code (with the PKCE verifier), verifies the ID token
    /// (signature, issuer, audience, expiry, nonce) and returns the configured claim.
    pub async fn finish(&self, code: &str, pkce_verifier: &str, nonce: &str) -> anyhow::Result<String> {
        let result = self.finish_once(code, pkce_verifier, nonce).await;
        if result.is_err() {
            // The provider may have rotated its keys: discover again on the next sign-in.
            *self.metadata.write().await = None;
        }
        result
    }

    async fn finish_once(&self, code: &str, pkce_verifier: &str, nonce: &str) -> anyhow::Result<String> {
        let client = self.client().await?;
        let http = Http(&self.http);
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()))
            .request_async(&http)
            .await
            .map_err(|e| anyhow::anyhow!("the identity provider refused the code: {e}"))?;
        let id_token = token.id_token().ok_or_else(|| anyhow::anyhow!("the identity provider sent no ID token"))?;
        let claims = id_token
            .claims(&client.id_token_verifier(), &Nonce::new(nonce.to_string()))
            .map_err(|e| anyhow::anyhow!("the ID token is not valid: {e}"))?;
        match self.config.claim {
            SubjectClaim::Email => {
                let email = claims.email().ok_or_else(|| anyhow::anyhow!("the ID token has no email claim"))?;
                if claims.email_verified() != Some(true) {
                    anyhow::bail!("the identity provider does not say the e-mail address is verified");
                }
                Ok(email.as_str().to_string())
            }
            SubjectClaim::PreferredUsername => Ok(claims
                .preferred_username()
                .ok_or_else(|| anyhow::anyhow!("the ID token has no preferred_username claim"))?
                .as_str()
                .to_string()),
        }
    }
}
