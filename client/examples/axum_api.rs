//! An axum API protected by authd: `GET /orders` needs `read:orders`,
//! `GET /healthz` is public, and handlers take the [`VerifiedToken`].
//!
//! ```text
//! AUTHD_URL=http://127.0.0.1:50051 LISTEN=127.0.0.1:8080 \
//!   cargo run -p authd-client --features axum --example axum_api
//! curl -H "authorization: Bearer $TOKEN" http://127.0.0.1:8080/orders
//! ```
//!
//! Prints `LISTENING <address>` once it serves. With `AUTHD_WATCH_TOKEN` (a
//! service token authd lets watch revocations, e.g. holding
//! `revocations:watch`), repeated tokens are answered from the client's
//! revocation-aware cache; without it authd refuses the watch and every
//! request asks authd.

use std::{env, error::Error};

use authd_client::{
    AuthClient, Secret, VerifiedToken,
    middleware::{ScopeRules, http::HttpAuthLayer},
};
use axum::{Router, routing::get};

async fn orders(token: VerifiedToken) -> String {
    format!("orders of {}\n", token.subject)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let authd_url = env::var("AUTHD_URL").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let listen = env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());

    // The whole protection: a client, the scopes per path, the layer.
    let mut builder = AuthClient::builder().endpoint(authd_url);
    if let Ok(token) = env::var("AUTHD_WATCH_TOKEN") {
        builder = builder.watch_token(Secret::new(token));
    }
    let authd = builder.build()?;
    let rules = ScopeRules::new()
        .default_scopes(["read:orders"])
        .public("/healthz");
    let app = Router::new()
        .route("/orders", get(orders))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(HttpAuthLayer::new(authd, rules));

    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("LISTENING {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
