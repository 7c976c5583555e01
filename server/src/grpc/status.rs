//! The one mapping from [`Error`] to a gRPC status with `google.rpc.ErrorInfo`.

use std::collections::HashMap;

use authd_proto::ERROR_DOMAIN;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::{Error, Reason};

/// The gRPC code of each reason.
pub fn code(reason: Reason) -> Code {
    match reason {
        Reason::TokenMissing
        | Reason::TokenTooLarge
        | Reason::InvalidRequest
        | Reason::RequestTooLarge
        | Reason::MalformedRequest => Code::InvalidArgument,
        Reason::MalformedToken
        | Reason::BadSignature
        | Reason::UnknownKey
        | Reason::AlgorithmNotAllowed
        | Reason::TokenExpired
        | Reason::TokenNotYetValid
        | Reason::WrongIssuer
        | Reason::WrongAudience
        | Reason::TokenBindingMismatch
        | Reason::DpopProofInvalid
        | Reason::DpopProofReplayed
        | Reason::DpopNonceRequired
        | Reason::TokenTypeNotAllowed => Code::Unauthenticated,
        Reason::InsufficientScope => Code::PermissionDenied,
        Reason::KeysUnavailable
        | Reason::SealingKeysUnavailable
        | Reason::IssuerUnavailable
        | Reason::StoreUnavailable => Code::Unavailable,
        Reason::UserNotFound => Code::NotFound,
        Reason::SessionRevoked
        | Reason::SessionExpired
        | Reason::SessionNotFound
        | Reason::DeviceCodeSpent
        | Reason::GrantRejected => Code::Unauthenticated,
        Reason::CallerNotTrusted => Code::PermissionDenied,
        Reason::RateLimited
        | Reason::Overloaded
        | Reason::WatcherTooSlow
        | Reason::TooManyWatchers => Code::ResourceExhausted,
        Reason::DeadlineExceeded => Code::DeadlineExceeded,
        Reason::Conflict => Code::Aborted,
        Reason::Internal => Code::Internal,
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let reason = error.reason();
        let message = match &error {
            // The detail may name internals: log it, answer opaquely.
            Error::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                error.to_string()
            }
            _ => error.to_string(),
        };
        let metadata: HashMap<String, String> = error
            .metadata()
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect();
        Status::with_error_details(
            code(reason),
            message,
            ErrorDetails::with_error_info(reason.as_str(), ERROR_DOMAIN, metadata),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authd_proto::pb::ErrorReason;

    #[test]
    fn every_reason_is_a_value_of_the_protocol_enum() {
        for reason in Reason::ALL {
            let name = format!("ERROR_REASON_{}", reason.as_str());
            assert!(
                ErrorReason::from_str_name(&name).is_some(),
                "{name} missing from auth.proto"
            );
        }
    }

    #[test]
    fn every_value_of_the_protocol_enum_is_a_reason() {
        // NOT_IMPLEMENTED is the protocol's for methods a newer authd has.
        let reasons: Vec<_> = (1..)
            .map_while(|value| ErrorReason::try_from(value).ok())
            .filter(|reason| *reason != ErrorReason::NotImplemented)
            .collect();
        for reason in reasons {
            let wire = reason
                .as_str_name()
                .strip_prefix("ERROR_REASON_")
                .unwrap_or_default();
            assert!(
                Reason::ALL.iter().any(|known| known.as_str() == wire),
                "{wire} of auth.proto has no Reason"
            );
        }
    }

    #[test]
    fn status_carries_error_info_with_reason_and_metadata() {
        let status = Status::from(Error::InsufficientScope {
            missing: vec!["read:orders".to_owned()],
        });
        assert_eq!(status.code(), Code::PermissionDenied);
        let info = status.get_details_error_info().expect("ErrorInfo attached");
        assert_eq!(info.reason, "INSUFFICIENT_SCOPE");
        assert_eq!(info.domain, "authd");
        assert_eq!(info.metadata["missing"], "read:orders");
    }

    #[test]
    fn internal_detail_is_not_returned() {
        let status = Status::from(Error::Internal(
            "dynamodb said: secret table name".to_owned(),
        ));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("dynamodb"));
    }
}
