//! The OAuth 2.0 endpoints of an issuer: token (authorization code, refresh
//! token, device code grants), revocation (RFC 7009) and device
//! authorization (RFC 8628). The client authenticates with
//! `client_secret_post`, as Auth0 accepts.

use serde::Deserialize;
use url::Url;

use super::{IssuerClient, IssuerError, read_json};
use crate::secrets::Secret;

/// What the token endpoint answered.
#[derive(Debug, Clone)]
pub struct TokenSet {
    /// The access token.
    pub access_token: Secret,
    /// Its lifetime in seconds, when given.
    pub expires_in: Option<u64>,
    /// A (rotated) refresh token, when given.
    pub refresh_token: Option<Secret>,
    /// The id token, when given.
    pub id_token: Option<Secret>,
    /// The granted scopes, when given.
    pub scope: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
}

/// A device authorization (RFC 8628 §3.2).
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceAuthorization {
    /// The code the device polls with.
    pub device_code: String,
    /// The code the user types.
    pub user_code: String,
    /// Where the user goes.
    pub verification_uri: String,
    /// The same with the code filled in.
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    /// Seconds between polls (default 5).
    #[serde(default = "default_interval")]
    pub interval: u64,
    /// Seconds until the device code expires.
    pub expires_in: u64,
}

fn default_interval() -> u64 {
    5
}

impl IssuerClient {
    fn credentials(&self) -> Result<(&str, &Secret), IssuerError> {
        self.oauth_client
            .as_ref()
            .map(|(id, secret)| (id.as_str(), secret))
            .ok_or(IssuerError::NoEndpoint("OAuth client (client_id)"))
    }

    async fn token_endpoint(&self) -> Result<Url, IssuerError> {
        match &self.token_uri {
            Some(uri) => Ok(uri.clone()),
            None => self
                .discovery()
                .await?
                .token_endpoint
                .clone()
                .ok_or(IssuerError::NoEndpoint("token")),
        }
    }

    /// POSTs a form with the client's credentials; OAuth errors in a 4xx
    /// answer become [`IssuerError::Grant`].
    async fn post_form<T: serde::de::DeserializeOwned>(
        &self,
        url: &Url,
        form: &[(&str, &str)],
    ) -> Result<T, IssuerError> {
        let (client_id, secret) = self.credentials()?;
        let mut body: Vec<(&str, &str)> =
            vec![("client_id", client_id), ("client_secret", secret.expose())];
        body.extend_from_slice(form);
        let response = self
            .http
            .post(url.clone())
            .timeout(self.request_timeout)
            .header("accept", "application/json")
            .form(&body)
            .send()
            .await
            .map_err(|source| IssuerError::Http {
                url: url.to_string(),
                source,
            })?;
        let status = response.status().as_u16();
        if (400..500).contains(&status) && status != 429 {
            let text = response.text().await.unwrap_or_default();
            return Err(match serde_json::from_str::<OAuthError>(&text) {
                Ok(oauth) => IssuerError::Grant {
                    url: url.to_string(),
                    error: oauth.error,
                },
                Err(_) => IssuerError::Status {
                    url: url.to_string(),
                    status,
                },
            });
        }
        read_json(url, response).await
    }

    async fn token(&self, form: &[(&str, &str)]) -> Result<TokenSet, IssuerError> {
        let url = self.token_endpoint().await?;
        let answer: TokenResponse = self.observed("token", self.post_form(&url, form)).await?;
        Ok(TokenSet {
            access_token: Secret::new(answer.access_token),
            expires_in: answer.expires_in,
            refresh_token: answer.refresh_token.map(Secret::new),
            id_token: answer.id_token.map(Secret::new),
            scope: answer.scope,
        })
    }

    /// Exchanges an authorization code (with its PKCE verifier, if any).
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
    ) -> Result<TokenSet, IssuerError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
        ];
        if !code_verifier.is_empty() {
            form.push(("code_verifier", code_verifier));
        }
        self.token(&form).await
    }

    /// Spends a refresh token (`grant_type=refresh_token`).
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<TokenSet, IssuerError> {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ])
        .await
    }

    /// Polls for a device authorization's tokens.
    pub async fn poll_device(&self, device_code: &str) -> Result<TokenSet, IssuerError> {
        self.token(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
        ])
        .await
    }

    /// Starts a device authorization for `scope` and `audience`.
    pub async fn start_device(
        &self,
        scope: &str,
        audience: &str,
    ) -> Result<DeviceAuthorization, IssuerError> {
        let url = match &self.device_uri {
            Some(uri) => uri.clone(),
            None => self
                .discovery()
                .await?
                .device_authorization_endpoint
                .clone()
                .ok_or(IssuerError::NoEndpoint("device authorization"))?,
        };
        let mut form = vec![("scope", scope)];
        if !audience.is_empty() {
            form.push(("audience", audience));
        }
        self.observed("device_authorization", self.post_form(&url, &form))
            .await
    }

    /// Revokes a refresh token (and, at Auth0, its whole family).
    pub async fn revoke(&self, refresh_token: &Secret) -> Result<(), IssuerError> {
        let url = match &self.revocation_uri {
            Some(uri) => uri.clone(),
            None => match self.discovery().await?.revocation_endpoint.clone() {
                Some(uri) => uri,
                // Auth0 serves it here without always advertising it.
                None => Url::parse(&format!(
                    "{}/oauth/revoke",
                    self.issuer.trim_end_matches('/')
                ))
                .map_err(|e| IssuerError::Document {
                    url: self.issuer.clone(),
                    problem: e.to_string(),
                })?,
            },
        };
        let (client_id, secret) = self.credentials()?;
        let form = [
            ("client_id", client_id),
            ("client_secret", secret.expose()),
            ("token", refresh_token.expose()),
            ("token_type_hint", "refresh_token"),
        ];
        let call = async {
            let response = self
                .http
                .post(url.clone())
                .timeout(self.request_timeout)
                .form(&form)
                .send()
                .await
                .map_err(|source| IssuerError::Http {
                    url: url.to_string(),
                    source,
                })?;
            match response.status().as_u16() {
                200..=299 => Ok(()),
                status => Err(IssuerError::Status {
                    url: url.to_string(),
                    status,
                }),
            }
        };
        self.observed("revoke", call).await
    }
}
