//! The `[[callers]]` policy: which caller may call which RPC. Pure: it
//! sees an RPC name and the caller's identities, and answers.

use crate::config::{CallerConfig, Config};

use super::identity::Identity;

// === the RPCs of the port ===

/// VerifyToken.
pub const VERIFY_TOKEN: &str = "/auth.v1.AuthService/VerifyToken";
/// Envoy's external authorization, on the same port.
pub const CHECK: &str = "/envoy.service.auth.v3.Authorization/Check";
/// GetProfile (with the caller's own access token).
pub const GET_PROFILE: &str = "/auth.v1.AuthService/GetProfile";
/// GetProfile of any user, by id.
pub const GET_PROFILE_BY_ID: &str = "/auth.v1.AuthService/GetProfile:user_id";
/// RevokeSession (by session handle).
pub const REVOKE_SESSION: &str = "/auth.v1.AuthService/RevokeSession";
/// RevokeSession of every session of a user, by id.
pub const REVOKE_SESSION_BY_USER: &str = "/auth.v1.AuthService/RevokeSession:user_id";
/// WatchRevocations: every revocation, for callers that cache answers.
pub const WATCH_REVOCATIONS: &str = "/auth.v1.AuthService/WatchRevocations";
const HEALTH: &str = "/grpc.health.v1.Health/";
const REFLECTION: &str = "/grpc.reflection.";

/// Every RPC name a `[[callers]]` entry may grant, besides `*`.
pub const KNOWN: [&str; 11] = [
    VERIFY_TOKEN,
    CHECK,
    GET_PROFILE,
    GET_PROFILE_BY_ID,
    "/auth.v1.AuthService/CreateSession",
    "/auth.v1.AuthService/RefreshSession",
    REVOKE_SESSION,
    REVOKE_SESSION_BY_USER,
    "/auth.v1.AuthService/StartDeviceLogin",
    "/auth.v1.AuthService/PollDeviceLogin",
    WATCH_REVOCATIONS,
];

/// Who may call an RPC when the policy is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Anyone who can connect: health, for load balancers and probes.
    Public,
    /// Any authenticated caller: VerifyToken, Check, GetProfile with one's
    /// own token, reflection.
    Authenticated,
    /// Only callers an entry grants it: sessions, device logins, the
    /// by-user-id variants.
    Listed,
}

/// The class of `rpc` (a gRPC path, or a by-user-id variant).
pub fn class(rpc: &str) -> Class {
    if rpc.starts_with(HEALTH) {
        Class::Public
    } else if rpc == VERIFY_TOKEN
        || rpc == CHECK
        || rpc == GET_PROFILE
        || rpc.starts_with(REFLECTION)
    {
        Class::Authenticated
    } else {
        Class::Listed
    }
}

/// Whether `rpc` is one whose caller identity matters even with the policy
/// off: the by-user-id variants, which have always needed a trusted caller,
/// and WatchRevocations (it tells who was revoked, so it is never open).
pub fn always_guarded(rpc: &str) -> bool {
    rpc == GET_PROFILE_BY_ID || rpc == REVOKE_SESSION_BY_USER || rpc == WATCH_REVOCATIONS
}

// === the policy ===

/// One `[[callers]]` entry, or one implied by a `trusted_permission`.
#[derive(Debug, Clone)]
struct Entry {
    identities: Vec<String>,
    permission: Option<String>,
    rpcs: Vec<String>,
}

impl Entry {
    fn names(&self, caller: &Identity) -> bool {
        self.identities.iter().any(|p| caller.matches(p))
            || self.permission.as_deref().is_some_and(|p| caller.holds(p))
    }

    fn grants(&self, rpc: &str) -> bool {
        self.rpcs.iter().any(|r| r == rpc || r == "*")
    }
}

/// The policy of the port.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `[[callers]]` configured: the policy is on.
    on: bool,
    entries: Vec<Entry>,
}

/// A `[[callers]]` entry that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("configuration: callers[{index}].rpcs: {rpc:?} is no RPC of authd (known: `*`, {known})", known = KNOWN.join(", "))]
pub struct UnknownRpc {
    index: usize,
    rpc: String,
}

impl Policy {
    /// The configured entries, and the ones the `trusted_permission` keys
    /// imply (kept so that service tokens holding them go on working):
    /// `profiles.trusted_permission` grants GetProfile by id,
    /// `sessions.trusted_permission` RevokeSession by user id,
    /// `watch.trusted_permission` WatchRevocations. An empty permission
    /// implies nothing.
    pub fn from_config(config: &Config) -> Result<Policy, UnknownRpc> {
        let mut entries = Vec::with_capacity(config.callers.len() + 3);
        for (index, caller) in config.callers.iter().enumerate() {
            if let Some(rpc) = caller
                .rpcs
                .iter()
                .find(|r| *r != "*" && !KNOWN.contains(&r.as_str()))
            {
                return Err(UnknownRpc {
                    index,
                    rpc: rpc.clone(),
                });
            }
            let CallerConfig {
                identities,
                permission,
                rpcs,
            } = caller.clone();
            entries.push(Entry {
                identities,
                permission,
                rpcs,
            });
        }
        for (permission, rpc) in [
            (&config.profiles.trusted_permission, GET_PROFILE_BY_ID),
            (&config.sessions.trusted_permission, REVOKE_SESSION_BY_USER),
            (&config.watch.trusted_permission, WATCH_REVOCATIONS),
        ] {
            if !permission.is_empty() {
                entries.push(Entry {
                    identities: Vec::new(),
                    permission: Some(permission.clone()),
                    rpcs: vec![rpc.to_owned()],
                });
            }
        }
        Ok(Policy {
            on: !config.callers.is_empty(),
            entries,
        })
    }

    /// Whether `[[callers]]` entries are configured.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Whether `rpc` needs to know its caller at all.
    pub fn needs_caller(&self, rpc: &str) -> bool {
        always_guarded(rpc) || (self.on && class(rpc) != Class::Public)
    }

    /// Whether `caller` (`None`: unauthenticated) may call `rpc`.
    pub fn allows(&self, rpc: &str, caller: Option<&Identity>) -> bool {
        if !self.needs_caller(rpc) {
            return true;
        }
        let Some(caller) = caller else { return false };
        if class(rpc) == Class::Authenticated {
            return true;
        }
        self.entries
            .iter()
            .any(|entry| entry.grants(rpc) && entry.names(caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(callers: &str) -> Policy {
        let config = Config::from_toml(callers).expect("config");
        Policy::from_config(&config).expect("policy")
    }

    fn spiffe(id: &str) -> Identity {
        Identity::Spiffe(id.to_owned())
    }

    const CREATE: &str = "/auth.v1.AuthService/CreateSession";

    #[test]
    fn without_callers_everything_is_open_but_the_by_id_variants() {
        let p = policy("");
        assert!(!p.is_on());
        for rpc in [VERIFY_TOKEN, CREATE, GET_PROFILE, REVOKE_SESSION, CHECK] {
            assert!(p.allows(rpc, None), "{rpc}");
        }
        assert!(!p.allows(GET_PROFILE_BY_ID, None));
        assert!(!p.allows(GET_PROFILE_BY_ID, Some(&spiffe("spiffe://a/b"))));
        let service = Identity::Token {
            subject: "svc@clients".to_owned(),
            permissions: vec!["profiles:read".to_owned()],
        };
        assert!(p.allows(GET_PROFILE_BY_ID, Some(&service)));
        assert!(!p.allows(REVOKE_SESSION_BY_USER, Some(&service)));
        assert!(!p.allows(WATCH_REVOCATIONS, None));
        assert!(!p.allows(WATCH_REVOCATIONS, Some(&service)));
        let watcher = Identity::Token {
            subject: "cache@clients".to_owned(),
            permissions: vec!["revocations:watch".to_owned()],
        };
        assert!(p.allows(WATCH_REVOCATIONS, Some(&watcher)));
        assert!(!p.allows(GET_PROFILE_BY_ID, Some(&watcher)));
    }

    #[test]
    fn with_callers_watching_needs_an_entry() {
        let p = policy(
            r#"
            [[callers]]
            identities = ["spiffe://prod.example/ns/web/"]
            rpcs = ["/auth.v1.AuthService/WatchRevocations"]
            "#,
        );
        assert!(p.allows(
            WATCH_REVOCATIONS,
            Some(&spiffe("spiffe://prod.example/ns/web/sa/api"))
        ));
        assert!(!p.allows(
            WATCH_REVOCATIONS,
            Some(&spiffe("spiffe://prod.example/ns/batch/sa/job"))
        ));
    }

    #[test]
    fn with_callers_listed_rpcs_need_an_entry() {
        let p = policy(
            r#"
            [[callers]]
            identities = ["spiffe://prod.example/ns/web/"]
            rpcs = ["/auth.v1.AuthService/CreateSession", "/auth.v1.AuthService/RevokeSession"]

            [[callers]]
            identities = ["spiffe://prod.example/ns/support/sa/desk", "dns:admin.internal"]
            rpcs = ["*"]
            "#,
        );
        assert!(p.is_on());
        let web = spiffe("spiffe://prod.example/ns/web/sa/bff");
        let other = spiffe("spiffe://prod.example/ns/batch/sa/job");
        let desk = spiffe("spiffe://prod.example/ns/support/sa/desk");
        assert!(p.allows(VERIFY_TOKEN, Some(&other)));
        assert!(!p.allows(VERIFY_TOKEN, None));
        assert!(p.allows("/grpc.health.v1.Health/Check", None));
        assert!(p.allows(CREATE, Some(&web)));
        assert!(p.allows(REVOKE_SESSION, Some(&web)));
        assert!(!p.allows(REVOKE_SESSION_BY_USER, Some(&web)));
        assert!(!p.allows(CREATE, Some(&other)));
        assert!(p.allows(GET_PROFILE_BY_ID, Some(&desk)));
        assert!(p.allows(
            REVOKE_SESSION_BY_USER,
            Some(&Identity::Dns("admin.internal".to_owned()))
        ));
    }

    #[test]
    fn an_entry_matches_a_service_token_by_permission() {
        let p = policy(
            r#"
            [sessions]
            trusted_permission = ""

            [[callers]]
            permission = "sessions:admin"
            rpcs = ["/auth.v1.AuthService/RevokeSession:user_id"]
            "#,
        );
        let holds = |perm: &str| Identity::Token {
            subject: "svc".to_owned(),
            permissions: vec![perm.to_owned()],
        };
        assert!(p.allows(REVOKE_SESSION_BY_USER, Some(&holds("sessions:admin"))));
        // The implied entry is off: its permission is empty.
        assert!(!p.allows(REVOKE_SESSION_BY_USER, Some(&holds("sessions:revoke"))));
        // The default profiles.trusted_permission still grants GetProfile by id.
        assert!(p.allows(GET_PROFILE_BY_ID, Some(&holds("profiles:read"))));
    }

    #[test]
    fn an_unknown_rpc_name_is_refused_at_start_up() {
        let config = Config::from_toml(
            "[[callers]]\nidentities = [\"dns:x\"]\nrpcs = [\"/auth.v1.AuthService/CreateSessions\"]\n",
        )
        .expect("parses");
        let error = Policy::from_config(&config).expect_err("typo");
        assert!(error.to_string().contains("callers[0].rpcs"), "{error}");
    }
}
