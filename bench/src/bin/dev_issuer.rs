//! `dev-issuer`: authd's development OpenID Connect issuer
//! (`authd::dangerous::DevIssuer`, the one `authd dev` runs) as a process of
//! its own, so that a soak can give an `authd serve` real sessions: device
//! logins approved by opening the verification link, rotating refresh
//! tokens, revocation and userinfo.

use std::{io::Write as _, net::SocketAddr, path::PathBuf, process::ExitCode};

use authd::dangerous::DevIssuer;
use clap::Parser;

/// Starts the development issuer on loopback, writes its OAuth client's
/// secret to `--secret-out` (mode 0600), prints `READY <issuer-url>
/// <client-id>` and serves until SIGTERM or Ctrl-C.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where to listen; loopback only (port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The API identifier its access tokens are for (`aud`).
    #[arg(long, default_value = "https://api.authd.bench")]
    audience: String,
    /// Where the client secret goes (authd's `client_secret = { file = ... }`).
    #[arg(long)]
    secret_out: PathBuf,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dev-issuer: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let issuer = DevIssuer::start(args.listen, &args.audience).await?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&args.secret_out)?
        .write_all(issuer.client_secret().as_bytes())?;
    println!("READY {} {}", issuer.issuer(), issuer.client_id());
    std::io::stdout().flush()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
