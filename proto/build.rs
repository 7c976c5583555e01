//! Generates the `auth.v1` code with a vendored `protoc`, so that a clone
//! builds on a machine with no protobuf compiler installed.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    unsafe_set_protoc(protoc);

    let out = PathBuf::from(env::var("OUT_DIR")?);
    let includes = [PathBuf::from("."), protoc_bin_vendored::include_path()?];
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("auth_v1_descriptor.bin"))
        .compile_protos(&[PathBuf::from("auth/v1/auth.proto")], &includes)?;
    println!("cargo:rerun-if-changed=auth");
    envoy_descriptor_set(&out)?;
    Ok(())
}

/// Only the descriptors of Envoy's `Check` API (the Rust types come from the
/// `envoy-types` crate), for server reflection.
fn envoy_descriptor_set(out: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let status = std::process::Command::new(protoc_bin_vendored::protoc_bin_path()?)
        .arg("--include_imports")
        .arg(format!(
            "--descriptor_set_out={}",
            out.join("envoy_ext_authz_descriptor.bin").display()
        ))
        .arg("-Ienvoy_api")
        .arg(format!(
            "-I{}",
            protoc_bin_vendored::include_path()?.display()
        ))
        .arg("envoy/service/auth/v3/external_auth.proto")
        .status()?;
    if !status.success() {
        return Err(format!("protoc failed on envoy_api: {status}").into());
    }
    println!("cargo:rerun-if-changed=envoy_api");
    Ok(())
}

fn unsafe_set_protoc(path: PathBuf) {
    // `set_var` is `unsafe` in edition 2024 because other threads may read the
    // environment; a build script has no other threads at this point.
    #[allow(unsafe_code)]
    unsafe {
        env::set_var("PROTOC", path);
    }
}
