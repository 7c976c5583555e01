//! The contract clients depend on: `buf breaking` compares `proto/` with the
//! last released image (`proto/released/auth-v1.binpb`). The current protocol
//! must pass, and a removed or renumbered field must fail with buf's message —
//! the proof that CI's `buf breaking` step would stop such a change.

use std::path::Path;

use anyhow::{Context, Result, bail};
use authd_tests::{Output, workspace};
use tokio::process::Command;

const RELEASED: &str = "proto/released/auth-v1.binpb";

/// `buf breaking MODULE --against the released image`.
async fn buf_breaking(module: &Path) -> Result<Output> {
    let buf = workspace().join(".venv/bin/buf");
    if !buf.exists() {
        bail!(
            "{} is missing: run `.venv/bin/pip install buf-bin` (tests/run does)",
            buf.display()
        );
    }
    let output = Command::new(buf)
        .arg("breaking")
        .arg(module)
        .arg("--against")
        .arg(workspace().join(RELEASED))
        .env("BUF_CACHE_DIR", workspace().join(".buf-cache"))
        .output()
        .await?;
    Ok(Output {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// A copy of `proto/` (its buf.yaml and .proto files) whose auth.proto has
/// `from` replaced by `to`.
fn edited_copy(from: &str, to: &str) -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let proto = workspace().join("proto");
    std::fs::copy(proto.join("buf.yaml"), dir.path().join("buf.yaml"))?;
    std::fs::create_dir_all(dir.path().join("auth/v1"))?;
    let source = std::fs::read_to_string(proto.join("auth/v1/auth.proto"))?;
    // The edit must apply exactly once, or the test would prove nothing.
    if source.matches(from).count() != 1 {
        bail!("auth.proto does not hold `{from}` exactly once");
    }
    std::fs::write(
        dir.path().join("auth/v1/auth.proto"),
        source.replace(from, to),
    )
    .context("writing the edited copy")?;
    Ok(dir)
}

#[tokio::test]
async fn current_protocol_is_compatible_with_the_release() -> Result<()> {
    let out = buf_breaking(&workspace().join("proto")).await?;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    Ok(())
}

#[tokio::test]
async fn removed_field_is_a_breaking_change() -> Result<()> {
    let copy = edited_copy("  optional string audience = 3;\n", "")?;
    let out = buf_breaking(copy.path()).await?;
    assert_eq!(out.code, Some(100), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(
            r#"Previously present field "3" with name "audience" on message "VerifyTokenRequest" was deleted."#
        ),
        "{}",
        out.stdout
    );
    Ok(())
}

#[tokio::test]
async fn renumbered_field_is_a_breaking_change() -> Result<()> {
    let copy = edited_copy("  string subject = 1;\n", "  string subject = 99;\n")?;
    let out = buf_breaking(copy.path()).await?;
    assert_eq!(out.code, Some(100), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(
            r#"Previously present field "1" with name "subject" on message "VerifyTokenResponse" was deleted."#
        ),
        "{}",
        out.stdout
    );
    Ok(())
}
