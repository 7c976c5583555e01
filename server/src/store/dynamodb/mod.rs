//! The DynamoDB store: one table, single-table design.
//!
//! | item | `pk` | `sk` | `gsi1pk` / `gsi1sk` | `ttl` |
//! |---|---|---|---|---|
//! | profile (sealed) | `USER#<sub>` | `PROFILE` | — | — |
//! | session | `SESSION#<sha256 of handle>` | `SESSION` | `USER#<sub>` / `SESSION#<id>` | `expires_at` |
//! | device approval | `DEVICE#<sha256 of code>` | `APPROVAL` | — | `expires_at` |
//! | revocation | `REVOCATIONS#<bucket>#<shard>` | `<at_ms>#<kind>#<digest>` | — | `expires_at` |
//! | revocation index | `REVOCATIONS#INDEX` | `<bucket end>#<bucket>#<shard>` | — | latest `expires_at`, rounded up |
//! | sealing census | `SEALING#CENSUS` | `SEALING#CENSUS` | — | — |
//!
//! The revocation log and its index are described in [`revocations`].
//!
//! DynamoDB deletes expired items lazily (TTL), so reads also ignore them.
//! Writes that depend on state are conditional; retries with back-off and a
//! per-operation timeout come from the SDK's configuration, after which the
//! caller sees [`StoreError::Unavailable`].

use std::{collections::HashMap, time::Duration};

use aws_config::{BehaviorVersion, Region, retry::RetryConfig, timeout::TimeoutConfig};
use aws_sdk_dynamodb::{
    Client,
    error::{ProvideErrorMetadata, SdkError},
    types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure},
};

use aws_sdk_dynamodb::operation::{put_item::PutItemError, query::builders::QueryFluentBuilder};

use super::{
    DeviceApproval, Revocation, SealedItem, SealedPage, SealingCensus, SessionRecord, Store,
    StoreError, StoredProfile,
};
use crate::config::StoreConfig;
use crate::secrets::SealedSecret;

/// The index of a user's sessions.
pub const USER_INDEX: &str = "gsi1";
/// The TTL attribute.
pub const TTL_ATTRIBUTE: &str = "ttl";
/// The `pk` and `sk` of the sealing census (`store::SealingCensus`).
const CENSUS_PK: &str = "SEALING#CENSUS";

type Item = HashMap<String, AttributeValue>;

/// The DynamoDB-backed [`Store`].
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    layout: RevocationLayout,
    indexed: revocations::Indexed,
}

// === errors ===

/// Throttling and server-side failures are worth a retry and mean
/// "unavailable"; anything else is a bug or a misconfiguration.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    error: SdkError<E, R>,
) -> StoreError {
    use aws_sdk_dynamodb::error::DisplayErrorContext;
    match &error {
        SdkError::TimeoutError(_) => StoreError::Unavailable(
            "DynamoDB did not answer within store.operation_timeout_ms".to_owned(),
        ),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => StoreError::Unavailable(
            format!("cannot reach DynamoDB: {}", DisplayErrorContext(&error)),
        ),
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("unknown");
            let message = service.err().message().unwrap_or_default();
            match code {
                "ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "InternalServerError"
                | "ServiceUnavailable"
                | "TransactionConflictException" => {
                    StoreError::Unavailable(format!("{code}: {message}"))
                }
                _ => StoreError::Internal(format!("{code}: {message}")),
            }
        }
        _ => StoreError::Internal(DisplayErrorContext(&error).to_string()),
    }
}

fn is_condition_failure<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    matches!(error, SdkError::ServiceError(s) if s.err().code() == Some("ConditionalCheckFailedException"))
}

mod attempts;
mod items;
pub mod revocations;
mod table;

use items::{
    device_approval_from, device_approval_item, device_approval_key, get_s, live, n, profile_from,
    profile_item, profile_key, s, sealed_item_from, session_item, session_key,
};
pub use revocations::RevocationLayout;

// === the store ===

impl DynamoStore {
    /// Connects with the standard AWS configuration chain, the configured
    /// region and endpoint, bounded retries and an operation timeout.
    pub async fn connect(config: &StoreConfig) -> DynamoStore {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts))
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(Duration::from_millis(config.operation_timeout_ms))
                    .connect_timeout(Duration::from_millis(
                        config.operation_timeout_ms.min(1_000),
                    ))
                    .build(),
            );
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &config.endpoint_url {
            loader = loader.endpoint_url(endpoint.clone());
        }
        Self::from_sdk_config(&loader.load().await, &config.table)
            .with_revocation_layout(RevocationLayout::from_config(config))
    }

    /// A store over an SDK configuration (credentials, region, endpoint,
    /// retries), for callers that build their own.
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, table: &str) -> DynamoStore {
        let config = aws_sdk_dynamodb::config::Builder::from(sdk)
            .interceptor(attempts::Attempts)
            .build();
        DynamoStore {
            client: Client::from_conf(config),
            table: table.to_owned(),
            layout: RevocationLayout::default(),
            indexed: revocations::Indexed::default(),
        }
    }

    /// The same store, laying out and reading revocations as `layout` says
    /// (default: the `[store]` defaults).
    pub fn with_revocation_layout(mut self, layout: RevocationLayout) -> DynamoStore {
        self.layout = layout;
        self
    }

    /// The SDK client, for tools and tests that read raw items.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Every item a query finds, page after page.
    async fn query_all(&self, query: QueryFluentBuilder) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = query
                .clone()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(classify)?;
            items.extend_from_slice(page.items());
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(items),
            }
        }
    }
}

#[async_trait::async_trait]
impl Store for DynamoStore {
    async fn get_profile(&self, user_id: &str) -> Result<Option<StoredProfile>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(profile_key(user_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        out.item().map(profile_from).transpose()
    }

    async fn put_profile(&self, user_id: &str, sealed: &SealedSecret) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(profile_item(user_id, sealed)))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn delete_profile(&self, user_id: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(profile_key(user_id)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(classify)?;
        Ok(out.attributes().is_some_and(|a| !a.is_empty()))
    }

    async fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(session_item(session)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(StoreError::Conflict),
            Err(e) => Err(classify(e)),
        }
    }

    async fn get_session(&self, id: &str, now: i64) -> Result<Option<SessionRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(session_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        match out.item() {
            Some(item) => live(item, now),
            None => Ok(None),
        }
    }

    async fn update_session(
        &self,
        session: &SessionRecord,
        expected_version: u64,
        now: i64,
    ) -> Result<(), StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(session_item(session)))
            .condition_expression(
                "attribute_exists(pk) AND version = :expected AND expires_at > :now",
            )
            .expression_attribute_values(":expected", n(expected_version))
            .expression_attribute_values(":now", n(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(service))
                if service.err().is_conditional_check_failed_exception() =>
            {
                // The old item tells a lost race from a missing session.
                let old = match service.err() {
                    PutItemError::ConditionalCheckFailedException(failed) => {
                        failed.item().filter(|item| !item.is_empty())
                    }
                    _ => None,
                };
                match old.map(|item| live(item, now)).transpose()? {
                    Some(Some(_)) => Err(StoreError::Conflict),
                    _ => Err(StoreError::NotFound),
                }
            }
            Err(e) => Err(classify(e)),
        }
    }

    async fn delete_session(&self, id: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(session_key(id)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(classify)?;
        Ok(out.attributes().is_some_and(|a| !a.is_empty()))
    }

    async fn list_sessions(
        &self,
        user_id: &str,
        now: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(USER_INDEX)
            .key_condition_expression("gsi1pk = :user")
            .expression_attribute_values(":user", s(format!("USER#{user_id}")));
        let mut found = Vec::new();
        for item in self.query_all(query).await? {
            found.extend(live(&item, now)?);
        }
        Ok(found)
    }

    async fn put_revocation(&self, revocation: &Revocation) -> Result<(), StoreError> {
        self.put_revocation_sharded(revocation).await
    }

    async fn revocations_since(
        &self,
        after_ms: i64,
        now: i64,
    ) -> Result<Vec<Revocation>, StoreError> {
        self.revocations_since_sharded(after_ms, now).await
    }

    async fn put_device_approval(&self, approval: &DeviceApproval) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(device_approval_item(approval)))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn get_device_approval(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<DeviceApproval>, StoreError> {
        let found = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(device_approval_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        // DynamoDB deletes expired items lazily: ignore them on read.
        match found.item() {
            Some(item) => {
                let approval = device_approval_from(id, item)?;
                Ok((approval.expires_at > now).then_some(approval))
            }
            None => Ok(None),
        }
    }

    async fn scan_sealed(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<SealedPage, StoreError> {
        let start = match cursor {
            None => None,
            Some(cursor) => {
                let (pk, sk): (String, String) = serde_json::from_str(cursor)
                    .map_err(|_| StoreError::Corrupt(format!("not a scan cursor: {cursor}")))?;
                Some(HashMap::from([
                    ("pk".to_owned(), s(pk)),
                    ("sk".to_owned(), s(sk)),
                ]))
            }
        };
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .set_exclusive_start_key(start)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .filter_expression("sk IN (:profile, :session, :approval)")
            .expression_attribute_values(":profile", s("PROFILE"))
            .expression_attribute_values(":session", s("SESSION"))
            .expression_attribute_values(":approval", s("APPROVAL"))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        let mut page = SealedPage::default();
        for item in out.items() {
            if let Some(sealed) = sealed_item_from(item)? {
                page.items.push(sealed);
            }
        }
        page.next = out
            .last_evaluated_key()
            .map(|key| -> Result<String, StoreError> {
                let pair = (get_s(key, "pk")?, get_s(key, "sk")?);
                serde_json::to_string(&pair).map_err(|e| StoreError::Internal(e.to_string()))
            })
            .transpose()?;
        Ok(page)
    }

    async fn replace_sealed(&self, old: &SealedItem, new: &SealedItem) -> Result<(), StoreError> {
        let put = match (old, new) {
            (SealedItem::Session(old), SealedItem::Session(new)) => {
                return self.update_session(new, old.version, i64::MIN).await;
            }
            (
                SealedItem::Profile { stored: old, .. },
                SealedItem::Profile {
                    user_id,
                    stored: StoredProfile::Sealed(sealed),
                },
            ) => {
                let put = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(profile_item(user_id, sealed)));
                match old {
                    StoredProfile::Sealed(old) => put
                        .condition_expression("sealed = :old")
                        .expression_attribute_values(":old", s(old.0.clone())),
                    StoredProfile::Clear(old) => put
                        .condition_expression(
                            "attribute_exists(pk) AND attribute_not_exists(sealed) \
                             AND updated_at = :updated AND fetched_at = :fetched",
                        )
                        .expression_attribute_values(":updated", n(old.updated_at))
                        .expression_attribute_values(":fetched", n(old.fetched_at)),
                }
            }
            (SealedItem::DeviceApproval(old), SealedItem::DeviceApproval(new)) => self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(device_approval_item(new)))
                .condition_expression("handle = :old")
                .expression_attribute_values(":old", s(old.handle.0.clone())),
            _ => {
                return Err(StoreError::Internal(
                    "replace_sealed: the new item is not the old one re-sealed".to_owned(),
                ));
            }
        };
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(StoreError::Conflict),
            Err(e) => Err(classify(e)),
        }
    }

    async fn put_census(&self, census: &SealingCensus) -> Result<(), StoreError> {
        let body =
            serde_json::to_string(census).map_err(|e| StoreError::Internal(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(CENSUS_PK))
            .item("sk", s(CENSUS_PK))
            .item("census", s(body))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn get_census(&self) -> Result<Option<SealingCensus>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(CENSUS_PK))
            .key("sk", s(CENSUS_PK))
            .send()
            .await
            .map_err(classify)?;
        out.item()
            .map(|item| {
                serde_json::from_str(&get_s(item, "census")?)
                    .map_err(|e| StoreError::Corrupt(format!("census: {e}")))
            })
            .transpose()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map(drop)
            .map_err(classify)
    }
}
