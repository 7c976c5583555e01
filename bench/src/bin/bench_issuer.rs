//! `bench-issuer`: a loopback OpenID Connect issuer that writes many valid
//! tokens to a file, then serves discovery and its JWKS until stopped.

use std::{io::Write as _, net::SocketAddr, path::PathBuf, process::ExitCode, time::Instant};

use authd::jwks::Algorithm;
use authd_bench::{
    issuer::{BenchIssuer, Refused, parse_algorithm},
    tokens,
};
use clap::Parser;

/// Starts an issuer with a fresh key, writes `--count` distinct Auth0-shaped
/// access tokens to `--tokens-out` (and, when asked, tokens that must be
/// refused: expired, for another audience), prints `READY <issuer-url>` and serves
/// `/.well-known/openid-configuration` and `/.well-known/jwks.json` until
/// SIGTERM or Ctrl-C.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where to listen; loopback only (port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The signing algorithm (RS256 is RSA-2048; ES256 is P-256).
    #[arg(long, default_value = "RS256", value_parser = parse_algorithm)]
    alg: Algorithm,
    /// The API identifier the tokens are for (`aud`).
    #[arg(long, default_value = "https://api.authd.bench")]
    audience: String,
    /// How many distinct tokens to write.
    #[arg(long, default_value_t = 1000)]
    count: u64,
    /// The token file (one per line).
    #[arg(long)]
    tokens_out: PathBuf,
    /// Token lifetime (`exp` = now + this).
    #[arg(long, default_value_t = 3600)]
    lifetime_seconds: i64,
    /// Also write `--refused-count` expired tokens (same key) to this file.
    #[arg(long)]
    expired_out: Option<PathBuf>,
    /// Also write `--refused-count` tokens for another audience (same key)
    /// to this file.
    #[arg(long)]
    wrong_audience_out: Option<PathBuf>,
    /// How many tokens `--expired-out` and `--wrong-audience-out` get.
    #[arg(long, default_value_t = 1000)]
    refused_count: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-issuer: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let issuer = BenchIssuer::start(args.listen, args.alg, &args.audience).await?;
    let started = Instant::now();
    let minted =
        tokio::task::block_in_place(|| issuer.mint_many(args.count, args.lifetime_seconds));
    tokens::write(&args.tokens_out, &minted)?;
    for (path, kind) in [
        (&args.expired_out, Refused::Expired),
        (&args.wrong_audience_out, Refused::WrongAudience),
    ] {
        if let Some(path) = path {
            let refused =
                tokio::task::block_in_place(|| issuer.mint_refused(args.refused_count, kind));
            tokens::write(path, &refused)?;
        }
    }
    eprintln!(
        "bench-issuer: {} {} tokens in {:.1} s -> {} (JWKS {})",
        minted.len(),
        args.alg.as_str(),
        started.elapsed().as_secs_f64(),
        args.tokens_out.display(),
        issuer.jwks_uri(),
    );
    println!("READY {}", issuer.issuer());
    std::io::stdout().flush()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
