use super::*;

fn headers(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn header<'a>(denial: &'a Denial, name: &str) -> Option<&'a str> {
    denial
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn bearer_scheme_is_case_insensitive() {
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let h = headers(&[("authorization", &format!("{scheme} abc.def.ghi"))]);
        assert_eq!(credential(&h, "/"), Ok(Credential::Bearer("abc.def.ghi")));
    }
}

#[test]
fn no_header_or_another_scheme_is_no_token() {
    assert_eq!(credential(&headers(&[]), "/x"), Ok(Credential::None));
    let basic = headers(&[("authorization", "Basic dXNlcjpwYXNz")]);
    assert_eq!(credential(&basic, "/x"), Ok(Credential::None));
}

#[test]
fn two_credentials_are_an_invalid_request() {
    let joined = headers(&[("authorization", "Bearer a.b.c, Bearer d.e.f")]);
    let error = credential(&joined, "/").expect_err("must fail");
    assert_eq!(error.reason(), Reason::InvalidRequest);
}

#[test]
fn token_in_header_and_query_is_an_invalid_request() {
    let h = headers(&[("authorization", "Bearer a.b.c")]);
    let error = credential(&h, "/api?x=1&access_token=a.b.c").expect_err("must fail");
    assert_eq!(error.reason(), Reason::InvalidRequest);
    let only_query = credential(&headers(&[]), "/api?access_token=a.b.c").expect_err("must fail");
    assert_eq!(only_query.reason(), Reason::InvalidRequest);
    // A parameter that merely ends with the name is not a token.
    assert_eq!(
        credential(&h, "/api?my_access_token=1"),
        Ok(Credential::Bearer("a.b.c"))
    );
}

#[test]
fn empty_or_spaced_bearer_is_malformed() {
    for value in ["Bearer", "Bearer   ", "Bearer a b"] {
        let error = credential(&headers(&[("authorization", value)]), "/").expect_err("must fail");
        assert_eq!(error.reason(), Reason::InvalidRequest, "{value}");
    }
}

#[test]
fn route_overrides_the_defaults() {
    let config = ExtAuthzConfig {
        required_scopes: vec!["read".to_owned()],
        audience: Some("https://api".to_owned()),
        ..ExtAuthzConfig::default()
    };
    let defaults = Policy::of_route(&config, &HashMap::new()).expect("test value");
    assert_eq!(defaults.required_scopes, ["read"]);
    assert_eq!(defaults.audience.as_deref(), Some("https://api"));
    assert!(!defaults.allow_anonymous);

    let route = headers(&[
        ("required_scopes", " write:x  admin "),
        ("audience", "https://other"),
        ("allow_anonymous", "TRUE"),
    ]);
    let policy = Policy::of_route(&config, &route).expect("test value");
    assert_eq!(policy.required_scopes, ["write:x", "admin"]);
    assert_eq!(policy.audience.as_deref(), Some("https://other"));
    assert!(policy.allow_anonymous);
}

#[test]
fn unclear_allow_anonymous_is_refused_not_guessed() {
    let route = headers(&[("allow_anonymous", "yes")]);
    let error = Policy::of_route(&ExtAuthzConfig::default(), &route).expect_err("must fail");
    assert_eq!(error.reason(), Reason::Internal);
    let denial = denial("authd", &error, &[], None);
    assert_eq!(denial.status, 503);
}

#[test]
fn no_token_is_401_without_error() {
    let d = denial("api", &Error::TokenMissing, &[], None);
    assert_eq!(d.status, 401);
    assert_eq!(header(&d, "www-authenticate"), Some("Bearer realm=\"api\""));
    assert_eq!(header(&d, "x-authd-reason"), Some("TOKEN_MISSING"));
    let body: Value = serde_json::from_str(&d.body).expect("test value");
    assert_eq!(body["reason"], "TOKEN_MISSING");
    assert!(body.get("error").is_none());
}

#[test]
fn bad_token_is_401_invalid_token_with_description() {
    let error = Error::TokenExpired { expired_at: 1000 };
    let d = denial("authd", &error, &[], None);
    assert_eq!(d.status, 401);
    assert_eq!(
        header(&d, "www-authenticate"),
        Some(
            "Bearer realm=\"authd\", error=\"invalid_token\", \
             error_description=\"the token expired at 1000 (unix seconds)\""
        )
    );
    let body: Value = serde_json::from_str(&d.body).expect("test value");
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(body["reason"], "TOKEN_EXPIRED");
    let revoked = denial("authd", &Error::SessionRevoked, &[], None);
    assert_eq!(revoked.status, 401);
    assert_eq!(header(&revoked, "x-authd-reason"), Some("SESSION_REVOKED"));
}

#[test]
fn missing_scope_is_403_naming_the_scopes() {
    let error = Error::InsufficientScope {
        missing: vec!["admin".to_owned()],
    };
    let required = ["read".to_owned(), "admin".to_owned()];
    let d = denial("authd", &error, &required, None);
    assert_eq!(d.status, 403);
    let challenge = header(&d, "www-authenticate").expect("test value");
    assert!(
        challenge.starts_with("Bearer realm=\"authd\", error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.ends_with(", scope=\"read admin\""), "{challenge}");
}

#[test]
fn outage_is_503_without_challenge() {
    let error = Error::KeysUnavailable {
        issuer: "https://tenant/".into(),
    };
    let d = denial("authd", &error, &[], None);
    assert_eq!(d.status, 503);
    assert_eq!(header(&d, "www-authenticate"), None);
    assert_eq!(header(&d, "x-authd-reason"), Some("KEYS_UNAVAILABLE"));
}

#[test]
fn description_cannot_break_the_header() {
    let error = Error::MalformedToken("a \"quoted\\\" é\r\nx".to_owned());
    let d = denial("authd", &error, &[], None);
    let challenge = header(&d, "www-authenticate").expect("test value");
    let description = challenge
        .split("error_description=\"")
        .nth(1)
        .expect("test value");
    let description = description.strip_suffix('"').expect("test value");
    assert!(
        description
            .chars()
            .all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\'),
        "{description}"
    );
}

#[test]
fn claims_travel_as_base64url_json() {
    let token = VerifiedToken {
        subject: "auth0|alice".to_owned(),
        issuer: "https://tenant/".into(),
        audiences: vec!["https://api".to_owned()],
        scopes: vec!["read".to_owned(), "write".to_owned()],
        permissions: vec![],
        session_id: Some("s1".to_owned()),
        token_id: None,
        issued_at: Some(10),
        expires_at: 20,
        authorized_party: None,
        binding: None,
        claims: Map::from_iter([("email".to_owned(), json!("a@example.com"))]),
    };
    let encoded = base64url_json(&claims_json(&token));
    assert!(!encoded.contains(['+', '/', '=']));
    let decoded: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).expect("test value"))
            .expect("test value");
    assert_eq!(decoded["sub"], "auth0|alice");
    assert_eq!(decoded["scope"], "read write");
    assert_eq!(decoded["sid"], "s1");
    assert_eq!(decoded["email"], "a@example.com");
    assert!(decoded.get("jti").is_none());
    let metadata = identity_metadata(&token);
    assert_eq!(metadata["subject"], "auth0|alice");
    assert_eq!(metadata["scopes"], json!(["read", "write"]));
}

#[test]
fn dpop_scheme_carries_the_token() {
    for scheme in ["DPoP", "dpop", "DPOP"] {
        let h = headers(&[("authorization", &format!("{scheme} abc.def.ghi"))]);
        assert_eq!(credential(&h, "/"), Ok(Credential::Dpop("abc.def.ghi")));
    }
    let empty = headers(&[("authorization", "DPoP ")]);
    assert!(credential(&empty, "/").is_err());
}

#[test]
fn the_proof_target_comes_from_envoy_and_a_listed_host() {
    let hosts = vec!["api.example.com".to_owned(), "127.0.0.1:8080".to_owned()];
    assert_eq!(
        dpop_target("https", "api.example.com", "/orders?page=2", &hosts),
        Ok("https://api.example.com/orders".to_owned())
    );
    assert_eq!(
        dpop_target("https", "API.example.com:443", "/orders#x", &hosts),
        Ok("https://API.example.com:443/orders".to_owned())
    );
    assert_eq!(
        dpop_target("http", "127.0.0.1:8080", "/a", &hosts),
        Ok("http://127.0.0.1:8080/a".to_owned())
    );
    for (scheme, host, path) in [
        ("https", "evil.example.com", "/orders"),
        ("https", "api.example.com:8443", "/orders"),
        ("ftp", "api.example.com", "/orders"),
        ("https", "api.example.com", "orders"),
    ] {
        let error = dpop_target(scheme, host, path, &hosts).expect_err(host);
        assert_eq!(
            error.reason(),
            Reason::DpopProofInvalid,
            "{scheme} {host} {path}"
        );
    }
    // No hosts configured: DPoP is refused at Check rather than guessed.
    assert!(dpop_target("https", "api.example.com", "/", &[]).is_err());
}

#[test]
fn envoys_url_encoded_pem_becomes_der() {
    let der = b"\x30\x03\x02\x01\x01";
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    );
    let encoded: String =
        percent_encoding::utf8_percent_encode(&pem, percent_encoding::NON_ALPHANUMERIC).collect();
    assert_eq!(peer_certificate(&encoded), Ok(Some(der.to_vec())));
    assert_eq!(peer_certificate(""), Ok(None));
    assert!(peer_certificate("not%20a%20certificate").is_err());
    let key = pem.replace("CERTIFICATE", "PRIVATE KEY");
    assert!(peer_certificate(&key).is_err());
}

#[test]
fn dpop_requests_get_dpop_challenges() {
    let algs = Some("ES256 RS256");
    let invalid = Error::DpopProofInvalid {
        problem: "htu",
        detail: "htu is not the request's URI",
    };
    let d = denial("api", &invalid, &[], algs);
    assert_eq!(d.status, 401);
    let challenge = header(&d, "www-authenticate").expect("challenge");
    assert!(
        challenge.starts_with("DPoP realm=\"api\", error=\"invalid_dpop_proof\""),
        "{challenge}"
    );
    assert!(challenge.ends_with(", algs=\"ES256 RS256\""), "{challenge}");

    let nonce = Error::DpopNonceRequired {
        nonce: "n-1".to_owned(),
    };
    let d = denial("api", &nonce, &[], algs);
    assert_eq!(header(&d, "dpop-nonce"), Some("n-1"));
    assert!(header(&d, "www-authenticate").is_some_and(|c| c.contains("error=\"use_dpop_nonce\"")));

    let mismatch = Error::TokenBindingMismatch {
        binding: "jkt",
        problem: "a DPoP-bound token without a DPoP proof",
    };
    let d = denial("api", &mismatch, &[], algs);
    assert!(
        header(&d, "www-authenticate")
            .is_some_and(|c| c.starts_with("DPoP realm=\"api\", error=\"invalid_token\""))
    );
    // The same refusal of a Bearer request keeps the Bearer challenge.
    let d = denial("api", &mismatch, &[], None);
    assert!(
        header(&d, "www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer realm=\"api\", error=\"invalid_token\""))
    );
}
