//! The `auth.v1` protocol of authd.
//!
//! The generated code lives in [`pb`]; [`FILE_DESCRIPTOR_SET`] feeds server
//! reflection. The `.proto` sources are in `proto/auth/v1/` and are the
//! contract shared with clients in every language.

/// Generated messages and the `AuthService` client and server.
#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod pb {
    tonic::include_proto!("auth.v1");
}

/// The encoded `FileDescriptorSet` of `auth/v1/auth.proto` and its imports,
/// for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("auth_v1_descriptor");

/// The encoded `FileDescriptorSet` of Envoy's
/// `envoy.service.auth.v3.Authorization` and its imports (the subset in
/// `proto/envoy_api/`), for server reflection.
pub const ENVOY_EXT_AUTHZ_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("envoy_ext_authz_descriptor");

/// The `google.rpc.ErrorInfo` domain of every authd error.
pub const ERROR_DOMAIN: &str = "authd";

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn descriptor_set_decodes_and_names_the_service() {
        let set = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET)
            .expect("descriptor set decodes");
        let auth = set
            .file
            .iter()
            .find(|f| f.name() == "auth/v1/auth.proto")
            .expect("auth.proto present");
        assert_eq!(auth.package(), "auth.v1");
        assert_eq!(auth.service[0].name(), "AuthService");
        assert!(
            set.file
                .iter()
                .any(|f| f.name() == "google/protobuf/struct.proto"),
            "imports are included for reflection"
        );
    }

    #[test]
    fn envoy_descriptor_set_names_the_check_service() {
        let set = prost_types::FileDescriptorSet::decode(ENVOY_EXT_AUTHZ_DESCRIPTOR_SET)
            .expect("descriptor set decodes");
        let file = set
            .file
            .iter()
            .find(|f| f.name() == "envoy/service/auth/v3/external_auth.proto")
            .expect("external_auth.proto present");
        assert_eq!(file.package(), "envoy.service.auth.v3");
        assert_eq!(file.service[0].name(), "Authorization");
        assert_eq!(file.service[0].method[0].name(), "Check");
        for import in [
            "envoy/service/auth/v3/attribute_context.proto",
            "envoy/config/core/v3/base.proto",
            "google/rpc/status.proto",
            "google/protobuf/struct.proto",
        ] {
            assert!(set.file.iter().any(|f| f.name() == import), "{import}");
        }
    }

    #[test]
    fn reason_names_drop_the_enum_prefix() {
        let name = pb::ErrorReason::TokenExpired.as_str_name();
        assert_eq!(name, "ERROR_REASON_TOKEN_EXPIRED");
    }
}
