//! Sender-constrained tokens from a real issuer: oidc-provider
//! (`tests/issuer-dpop`) issues DPoP-bound and certificate-bound RS256
//! `at+jwt` access tokens at its real token endpoint, npm `dpop` makes the
//! proofs, and authd's VerifyToken (over gRPC, as a service calls it)
//! accepts each only with what proves its binding, and each proof once.

use anyhow::{Context, Result};
use authd_proto::pb::{self, auth_service_client::AuthServiceClient};
use authd_tests::{
    Authd,
    dpop::{DpopIssuer, x5t_s256},
    pki::{Ca, Names},
};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use tonic::Code;
use tonic_types::StatusExt;

const HTU: &str = "https://api.authd.test/orders";

async fn client(authd: &Authd) -> Result<AuthServiceClient<tonic::transport::Channel>> {
    Ok(AuthServiceClient::connect(authd.uri()).await?)
}

fn request(
    authorization: String,
    proof: Option<&str>,
    certificate: &[u8],
) -> pb::VerifyTokenRequest {
    pb::VerifyTokenRequest {
        token: authorization,
        dpop_proof: proof.unwrap_or_default().to_owned(),
        http_method: "GET".to_owned(),
        http_uri: format!("{HTU}?page=1"),
        client_certificate: certificate.to_vec(),
        ..pb::VerifyTokenRequest::default()
    }
}

async fn reason(
    client: &mut AuthServiceClient<tonic::transport::Channel>,
    request: pb::VerifyTokenRequest,
) -> Result<(Code, String)> {
    let status = client
        .verify_token(request)
        .await
        .err()
        .context("must be refused")?;
    let reason = status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default();
    Ok((status.code(), reason))
}

#[tokio::test]
async fn oidc_providers_dpop_bound_tokens_pass_only_with_fresh_proofs_by_their_key() -> Result<()> {
    let issuer = DpopIssuer::start().await?;
    let authd = Authd::start(&issuer.config_entry()).await?;
    let mut client = client(&authd).await?;
    for alg in ["ES256", "PS256", "Ed25519"] {
        let minted = issuer.mint_dpop("GET", HTU, 2, alg).await?;
        assert_eq!(minted.token_type, "DPoP");
        let token = &minted.access_token;
        let dpop = format!("DPoP {token}");
        let first = &minted.proofs[0];

        let verified = client
            .verify_token(request(dpop.clone(), Some(first), &[]))
            .await
            .with_context(|| format!("{alg}: a fresh proof"))?
            .into_inner();
        assert_eq!(
            verified.binding.map(|b| b.jkt),
            minted.jkt.clone(),
            "{alg}: the binding answered"
        );
        for (what, request, expected) in [
            (
                "replayed",
                request(dpop.clone(), Some(first), &[]),
                "DPOP_PROOF_REPLAYED",
            ),
            (
                "as Bearer",
                request(format!("Bearer {token}"), Some(&minted.proofs[1]), &[]),
                "TOKEN_BINDING_MISMATCH",
            ),
            (
                "without a proof",
                request(dpop.clone(), None, &[]),
                "TOKEN_BINDING_MISMATCH",
            ),
        ] {
            assert_eq!(
                reason(&mut client, request).await?,
                (Code::Unauthenticated, expected.to_owned()),
                "{alg}: {what}"
            );
        }
        // A proof made for another URI, by the same key.
        let elsewhere = issuer
            .mint_dpop("GET", "https://api.authd.test/admin", 1, alg)
            .await?;
        let stolen_with_wrong_proof =
            request(format!("DPoP {token}"), Some(&elsewhere.proofs[0]), &[]);
        assert_eq!(
            reason(&mut client, stolen_with_wrong_proof).await?.1,
            // Another mint: another key, so the thumbprint check or the
            // htu check refuses it, whichever comes first.
            "DPOP_PROOF_INVALID"
        );
        // The token's own second proof still passes once.
        client
            .verify_token(request(dpop, Some(&minted.proofs[1]), &[]))
            .await
            .with_context(|| format!("{alg}: the second proof"))?;
    }
    Ok(())
}

#[tokio::test]
async fn oidc_providers_certificate_bound_tokens_pass_only_with_that_certificate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = Ca::new("client CA")?;
    let alice = ca.leaf(dir.path(), "alice", Names::spiffe("spiffe://test/alice"))?;
    let mallory = ca.leaf(
        dir.path(),
        "mallory",
        Names::spiffe("spiffe://test/mallory"),
    )?;
    let issuer = DpopIssuer::start().await?;
    let authd = Authd::start(&issuer.config_entry()).await?;
    let mut client = client(&authd).await?;
    let minted = issuer.mint_mtls(&alice.cert_file).await?;
    let alice_der = CertificateDer::from_pem_slice(alice.cert_pem.as_bytes())?;
    let mallory_der = CertificateDer::from_pem_slice(mallory.cert_pem.as_bytes())?;
    let bearer = format!("Bearer {}", minted.access_token);

    let verified = client
        .verify_token(request(bearer.clone(), None, &alice_der))
        .await?
        .into_inner();
    assert_eq!(
        verified.binding.map(|b| b.x5t_s256),
        Some(x5t_s256(&alice_der))
    );
    for (what, certificate) in [("no certificate", &[][..]), ("another", &mallory_der[..])] {
        assert_eq!(
            reason(&mut client, request(bearer.clone(), None, certificate)).await?,
            (Code::Unauthenticated, "TOKEN_BINDING_MISMATCH".to_owned()),
            "{what}"
        );
    }
    Ok(())
}
