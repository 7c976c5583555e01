//! `bench-issuer`: a loopback OpenID Connect issuer that writes many valid
//! tokens to a file, then serves discovery and its JWKS until stopped.

use std::{io::Write as _, net::SocketAddr, path::PathBuf, process::ExitCode, time::Instant};

use authd::jwks::Algorithm;
use authd_bench::{
    issuer::{BenchIssuer, parse_algorithm},
    tokens,
};
use clap::Parser;

/// Starts an issuer with a fresh key, writes `--count` distinct Auth0-shaped
/// access tokens to `--tokens-out`, prints `READY <issuer-url>` and serves
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
