//! Device login (RFC 8628) for apps with no browser: authd starts the
//! authorization at the issuer and turns each poll's answer into a state,
//! or into a new session once the user approved.

use std::sync::Arc;

use super::{NewSession, Sessions, grant_error, input};
use crate::{
    error::Error,
    issuer::{DeviceAuthorization, IssuerError},
};

/// Where a device login stands.
#[derive(Debug, Clone)]
pub enum DeviceLoginState {
    /// Not answered yet; poll again after `interval` seconds.
    Pending {
        /// Seconds to wait.
        interval: u64,
    },
    /// Polling too fast; wait `interval` seconds.
    SlowDown {
        /// Seconds to wait.
        interval: u64,
    },
    /// The user refused.
    Denied,
    /// The device code expired.
    Expired,
    /// Approved: the new session.
    Approved(Box<NewSession>),
}

/// The poll interval RFC 8628 assumes when the issuer names none.
const DEFAULT_INTERVAL: u64 = 5;

/// The longest poll interval a caller may say it uses.
const MAX_INTERVAL: u64 = 3600;

/// What a slow down adds to the interval (RFC 8628 §3.5).
const SLOW_DOWN_STEP: u64 = 5;

impl Sessions {
    /// Starts a device login asking for `scopes` (plus `openid` and
    /// `offline_access`, which a session needs, and
    /// `sessions.device_login_scopes`) and `audience` (default: the issuer's
    /// first configured audience).
    pub async fn start_device_login(
        self: &Arc<Self>,
        issuer: &str,
        scopes: &[String],
        audience: &str,
    ) -> Result<DeviceAuthorization, Error> {
        let client = Arc::clone(self.issuer(issuer)?);
        if scopes.len() > input::MAX_SCOPES {
            return Err(Error::InvalidRequest {
                field: "scopes",
                problem: format!("at most {} scopes", input::MAX_SCOPES),
            });
        }
        input::bounded("audience", audience, input::MAX_AUDIENCE)?;
        // A session needs `openid` and `offline_access`; the configured
        // scopes (default `profile email`) fill the profile authd keeps.
        let mut wanted: Vec<&str> = vec!["openid", "offline_access"];
        for scope in &self.config.device_login_scopes {
            if !wanted.contains(&scope.as_str()) {
                wanted.push(scope);
            }
        }
        for scope in scopes {
            input::bounded("scopes", scope, input::MAX_SCOPE)?;
            if scope.is_empty() || scope.contains(char::is_whitespace) {
                return Err(Error::InvalidRequest {
                    field: "scopes",
                    problem: "each scope is one non-empty word".to_owned(),
                });
            }
            if !wanted.contains(&scope.as_str()) {
                wanted.push(scope);
            }
        }
        let audience = if audience.is_empty() {
            self.verifier
                .issuers()
                .find(|p| p.keys().issuer().as_ref() == client.issuer())
                .and_then(|p| p.audiences().first().cloned())
                .unwrap_or_default()
        } else {
            audience.to_owned()
        };
        client
            .start_device(&wanted.join(" "), &audience)
            .await
            .map_err(|e| grant_error(client.issuer(), e))
    }

    /// Polls the issuer once for `device_code`. `interval` is the one the
    /// caller polls at now (0: the RFC's default); the answer keeps it while
    /// pending and adds five seconds on a slow down.
    pub async fn poll_device_login(
        &self,
        issuer: &str,
        device_code: &str,
        interval: u64,
    ) -> Result<DeviceLoginState, Error> {
        if device_code.is_empty() || device_code.len() > 512 {
            return Err(Error::InvalidRequest {
                field: "device_code",
                problem: "must be 1 to 512 bytes".to_owned(),
            });
        }
        if interval > MAX_INTERVAL {
            return Err(Error::InvalidRequest {
                field: "interval",
                problem: format!("must be at most {MAX_INTERVAL} seconds"),
            });
        }
        let interval = if interval == 0 {
            DEFAULT_INTERVAL
        } else {
            interval
        };
        let client = Arc::clone(self.issuer(issuer)?);
        match client.poll_device(device_code).await {
            Ok(tokens) => Ok(DeviceLoginState::Approved(Box::new(
                self.establish(&client, tokens, "").await?,
            ))),
            Err(IssuerError::Grant { error, .. }) => match error.as_str() {
                "authorization_pending" => Ok(DeviceLoginState::Pending { interval }),
                "slow_down" => Ok(DeviceLoginState::SlowDown {
                    interval: interval + SLOW_DOWN_STEP,
                }),
                "access_denied" => Ok(DeviceLoginState::Denied),
                "expired_token" => Ok(DeviceLoginState::Expired),
                _ => Err(Error::GrantRejected(error)),
            },
            // Auth0 answers slow_down with 429.
            Err(IssuerError::RateLimited { .. }) => Ok(DeviceLoginState::SlowDown {
                interval: interval + SLOW_DOWN_STEP,
            }),
            Err(other) => Err(grant_error(client.issuer(), other)),
        }
    }
}
