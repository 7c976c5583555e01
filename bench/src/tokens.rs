//! Token files: one token per line, written by `bench-issuer`, read by
//! `loadgen`.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::Path,
};

use anyhow::Context as _;

/// Reads the tokens of `path`, skipping blank lines; `limit` keeps only the
/// first ones (a repeated-token workload uses one or a few).
pub fn read(path: &Path, limit: Option<usize>) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let tokens: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .take(limit.unwrap_or(usize::MAX))
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(!tokens.is_empty(), "{} holds no token", path.display());
    Ok(tokens)
}

/// Writes `tokens`, one per line.
pub fn write(path: &Path, tokens: &[String]) -> anyhow::Result<()> {
    let file = File::create(path)
        .with_context(|| format!("cannot create the token file {}", path.display()))?;
    let mut out = BufWriter::new(file);
    for token in tokens {
        out.write_all(token.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
