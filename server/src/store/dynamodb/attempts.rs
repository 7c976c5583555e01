//! Counts what the SDK's retry loop hides: every retried attempt
//! (`authd_store_retries_total`) and every throttled answer
//! (`authd_store_throttles_total`), by DynamoDB operation.

use aws_sdk_dynamodb::config::{
    ConfigBag, Intercept, RuntimeComponents,
    interceptors::{
        BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    },
};

use aws_smithy_types::config_bag::{Storable, StoreReplace};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The operation of the attempt under way, kept for its answer.
#[derive(Debug, Clone)]
struct Operation(&'static str);

impl Storable for Operation {
    type Storer = StoreReplace<Self>;
}

/// The DynamoDB operations authd calls; any other is labelled `other`.
const OPERATIONS: [&str; 10] = [
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "TransactWriteItems",
    "DescribeTable",
    "CreateTable",
    "UpdateTimeToLive",
    "ListTables",
];

/// The error codes DynamoDB throttles with.
const THROTTLES: [&str; 3] = [
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
];

/// The SDK interceptor counting retries and throttles.
#[derive(Debug)]
pub(super) struct Attempts;

/// The operation named by `x-amz-target` (`DynamoDB_20120810.GetItem`).
fn operation(target: Option<&str>) -> &'static str {
    let name = target
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or_default();
    OPERATIONS
        .iter()
        .find(|op| **op == name)
        .copied()
        .unwrap_or("other")
}

/// Whether the SDK marked this attempt as a retry (`attempt=2` and on).
fn is_retry(sdk_request: Option<&str>) -> bool {
    sdk_request
        .and_then(|v| v.split(';').find_map(|p| p.trim().strip_prefix("attempt=")))
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| n > 1)
}

/// Whether an error answer is a throttle, by its type header or body.
fn is_throttle(error_type: Option<&str>, body: Option<&[u8]>) -> bool {
    let named = |text: &str| THROTTLES.iter().any(|t| text.contains(t));
    error_type.is_some_and(named)
        || body
            .and_then(|b| std::str::from_utf8(b).ok())
            .is_some_and(named)
}

impl Intercept for Attempts {
    fn name(&self) -> &'static str {
        "authd.store.attempts"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let headers = context.request().headers();
        let op = operation(headers.get("x-amz-target"));
        cfg.interceptor_state().store_put(Operation(op));
        if is_retry(headers.get("amz-sdk-request")) {
            metrics::counter!("authd_store_retries_total", "store" => "dynamodb", "operation" => op)
                .increment(1);
        }
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response();
        if response.status().as_u16() == 400
            && is_throttle(
                response.headers().get("x-amzn-errortype"),
                response.body().bytes(),
            )
        {
            let op = cfg.load::<Operation>().map_or("other", |o| o.0);
            metrics::counter!("authd_store_throttles_total", "store" => "dynamodb", "operation" => op)
                .increment(1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_in_a_closed_set() {
        assert_eq!(operation(Some("DynamoDB_20120810.GetItem")), "GetItem");
        assert_eq!(operation(Some("DynamoDB_20120810.Junk")), "other");
        assert_eq!(operation(None), "other");
        assert!(is_retry(Some("attempt=2; max=3")));
        assert!(!is_retry(Some("attempt=1; max=3")));
        assert!(!is_retry(None));
        assert!(is_throttle(Some("ThrottlingException"), None));
        assert!(is_throttle(
            None,
            Some(br#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"}"#)
        ));
        assert!(!is_throttle(
            None,
            Some(b"{\"__type\":\"ResourceNotFoundException\"}")
        ));
    }
}
