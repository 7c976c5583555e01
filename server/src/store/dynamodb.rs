//! The DynamoDB store: one table, single-table design.
//!
//! | item | `pk` | `sk` | `gsi1pk` / `gsi1sk` | `ttl` |
//! |---|---|---|---|---|
//! | profile | `USER#<sub>` | `PROFILE` | — | — |
//! | session | `SESSION#<sha256 of handle>` | `SESSION` | `USER#<sub>` / `SESSION#<id>` | `expires_at` |
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
    types::{
        AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
        KeyType, Projection, ProjectionType, ReturnValue, ReturnValuesOnConditionCheckFailure,
        ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
    },
};

use aws_sdk_dynamodb::operation::{put_item::PutItemError, query::builders::QueryFluentBuilder};

use super::{Profile, Revocation, SessionRecord, Store, StoreError};
use crate::{config::StoreConfig, secrets::SealedSecret};

/// The index of a user's sessions.
pub const USER_INDEX: &str = "gsi1";
/// The TTL attribute.
pub const TTL_ATTRIBUTE: &str = "ttl";

type Item = HashMap<String, AttributeValue>;

/// The DynamoDB-backed [`Store`].
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

// === errors ===

/// Throttling and server-side failures are worth a retry and mean
/// "unavailable"; anything else is a bug or a misconfiguration.
fn classify<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    error: SdkError<E, R>,
) -> StoreError {
    match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(format!("{error:?}"))
        }
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
        _ => StoreError::Internal(format!("{error:?}")),
    }
}

fn is_condition_failure<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    matches!(error, SdkError::ServiceError(s) if s.err().code() == Some("ConditionalCheckFailedException"))
}

// === item conversion ===

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn put_opt(item: &mut Item, name: &str, value: &Option<String>) {
    if let Some(value) = value {
        item.insert(name.to_owned(), s(value.clone()));
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("attribute {what} missing or of the wrong type"))
}

fn get_s(item: &Item, name: &str) -> Result<String, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .ok_or_else(|| corrupt(name))
}

fn get_opt_s(item: &Item, name: &str) -> Result<Option<String>, StoreError> {
    match item.get(name) {
        None => Ok(None),
        Some(v) => v.as_s().map(|s| Some(s.clone())).map_err(|_| corrupt(name)),
    }
}

fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt(name))
}

fn get_bool(item: &Item, name: &str) -> Result<bool, StoreError> {
    item.get(name)
        .and_then(|v| v.as_bool().ok())
        .copied()
        .ok_or_else(|| corrupt(name))
}

fn profile_key(user_id: &str) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(format!("USER#{user_id}"))),
        ("sk".to_owned(), s("PROFILE")),
    ])
}

fn session_key(id: &str) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(format!("SESSION#{id}"))),
        ("sk".to_owned(), s("SESSION")),
    ])
}

fn profile_item(p: &Profile) -> Result<Item, StoreError> {
    let mut item = profile_key(&p.user_id);
    item.insert("user_id".to_owned(), s(p.user_id.clone()));
    put_opt(&mut item, "email", &p.email);
    item.insert(
        "email_verified".to_owned(),
        AttributeValue::Bool(p.email_verified),
    );
    put_opt(&mut item, "name", &p.name);
    put_opt(&mut item, "nickname", &p.nickname);
    put_opt(&mut item, "picture", &p.picture);
    // JSON keeps numbers and nesting exactly as the issuer sent them.
    let attributes =
        serde_json::to_string(&p.attributes).map_err(|e| StoreError::Internal(e.to_string()))?;
    item.insert("attributes".to_owned(), s(attributes));
    item.insert("created_at".to_owned(), n(p.created_at));
    item.insert("updated_at".to_owned(), n(p.updated_at));
    item.insert("fetched_at".to_owned(), n(p.fetched_at));
    Ok(item)
}

fn profile_from(item: &Item) -> Result<Profile, StoreError> {
    Ok(Profile {
        user_id: get_s(item, "user_id")?,
        email: get_opt_s(item, "email")?,
        email_verified: get_bool(item, "email_verified")?,
        name: get_opt_s(item, "name")?,
        nickname: get_opt_s(item, "nickname")?,
        picture: get_opt_s(item, "picture")?,
        attributes: serde_json::from_str(&get_s(item, "attributes")?)
            .map_err(|e| StoreError::Corrupt(format!("attributes: {e}")))?,
        created_at: get_n(item, "created_at")?,
        updated_at: get_n(item, "updated_at")?,
        fetched_at: get_n(item, "fetched_at")?,
    })
}

fn session_item(r: &SessionRecord) -> Item {
    let mut item = session_key(&r.id);
    item.insert("gsi1pk".to_owned(), s(format!("USER#{}", r.user_id)));
    item.insert("gsi1sk".to_owned(), s(format!("SESSION#{}", r.id)));
    item.insert("id".to_owned(), s(r.id.clone()));
    item.insert("user_id".to_owned(), s(r.user_id.clone()));
    item.insert("issuer".to_owned(), s(r.issuer.clone()));
    put_opt(
        &mut item,
        "refresh_token",
        &r.refresh_token.as_ref().map(|t| t.0.clone()),
    );
    item.insert("version".to_owned(), n(r.version));
    item.insert("created_at".to_owned(), n(r.created_at));
    item.insert("refreshed_at".to_owned(), n(r.refreshed_at));
    item.insert("expires_at".to_owned(), n(r.expires_at));
    item.insert(TTL_ATTRIBUTE.to_owned(), n(r.expires_at));
    item.insert("revoked".to_owned(), AttributeValue::Bool(r.revoked));
    put_opt(&mut item, "issuer_session_id", &r.issuer_session_id);
    put_opt(
        &mut item,
        "access_token",
        &r.access_token.as_ref().map(|t| t.0.clone()),
    );
    item.insert(
        "access_token_expires_at".to_owned(),
        n(r.access_token_expires_at),
    );
    put_opt(
        &mut item,
        "id_token",
        &r.id_token.as_ref().map(|t| t.0.clone()),
    );
    let issued = serde_json::to_string(&r.issued_tokens).unwrap_or_else(|_| "[]".to_owned());
    item.insert("issued_tokens".to_owned(), s(issued));
    item.insert("lease_until".to_owned(), n(r.lease_until));
    item
}

fn session_from(item: &Item) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id: get_s(item, "id")?,
        user_id: get_s(item, "user_id")?,
        issuer: get_s(item, "issuer")?,
        refresh_token: get_opt_s(item, "refresh_token")?.map(SealedSecret),
        version: get_n(item, "version")?,
        created_at: get_n(item, "created_at")?,
        refreshed_at: get_n(item, "refreshed_at")?,
        expires_at: get_n(item, "expires_at")?,
        revoked: get_bool(item, "revoked")?,
        issuer_session_id: get_opt_s(item, "issuer_session_id")?,
        access_token: get_opt_s(item, "access_token")?.map(SealedSecret),
        access_token_expires_at: get_n(item, "access_token_expires_at")?,
        id_token: get_opt_s(item, "id_token")?.map(SealedSecret),
        issued_tokens: serde_json::from_str(&get_s(item, "issued_tokens")?)
            .map_err(|e| StoreError::Corrupt(format!("issued_tokens: {e}")))?,
        lease_until: get_n(item, "lease_until")?,
    })
}

const REVOCATIONS_PK: &str = "REVOCATIONS";

fn revocation_item(r: &Revocation) -> Item {
    let kind = serde_json::to_value(r.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    HashMap::from([
        ("pk".to_owned(), s(REVOCATIONS_PK)),
        ("sk".to_owned(), s(r.sort_key())),
        ("kind".to_owned(), s(kind)),
        ("issuer".to_owned(), s(r.issuer.clone())),
        ("value".to_owned(), s(r.value.clone())),
        ("at_ms".to_owned(), n(r.at_ms)),
        ("expires_at".to_owned(), n(r.expires_at)),
        (TTL_ATTRIBUTE.to_owned(), n(r.expires_at)),
    ])
}

fn revocation_from(item: &Item) -> Result<Revocation, StoreError> {
    Ok(Revocation {
        kind: serde_json::from_value(serde_json::Value::String(get_s(item, "kind")?))
            .map_err(|e| StoreError::Corrupt(format!("kind: {e}")))?,
        issuer: get_s(item, "issuer")?,
        value: get_s(item, "value")?,
        at_ms: get_n(item, "at_ms")?,
        expires_at: get_n(item, "expires_at")?,
    })
}

fn live(item: &Item, now: i64) -> Result<Option<SessionRecord>, StoreError> {
    let record = session_from(item)?;
    Ok((record.expires_at > now).then_some(record))
}

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
    }

    /// A store over an SDK configuration (credentials, region, endpoint,
    /// retries), for callers that build their own.
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, table: &str) -> DynamoStore {
        DynamoStore {
            client: Client::new(sdk),
            table: table.to_owned(),
        }
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

    /// Creates the table, its user index and its TTL setting when missing.
    /// Idempotent; returns what it did.
    pub async fn init_table(&self) -> Result<Vec<String>, StoreError> {
        let mut done = Vec::new();
        let described = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await;
        match described {
            Ok(_) => done.push(format!("table {} exists", self.table)),
            Err(e) if matches!(&e, SdkError::ServiceError(s) if s.err().is_resource_not_found_exception()) =>
            {
                self.create_table().await?;
                done.push(format!(
                    "created table {} with index {USER_INDEX}",
                    self.table
                ));
            }
            Err(e) => return Err(classify(e)),
        }
        self.wait_active().await?;
        let ttl = self
            .client
            .describe_time_to_live()
            .table_name(&self.table)
            .send()
            .await
            .map_err(classify)?;
        let enabled = ttl
            .time_to_live_description()
            .and_then(|d| d.time_to_live_status())
            .is_some_and(|s| matches!(s, TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling));
        if enabled {
            done.push(format!("TTL on attribute {TTL_ATTRIBUTE} already enabled"));
        } else {
            self.client
                .update_time_to_live()
                .table_name(&self.table)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .enabled(true)
                        .attribute_name(TTL_ATTRIBUTE)
                        .build()
                        .map_err(|e| StoreError::Internal(e.to_string()))?,
                )
                .send()
                .await
                .map_err(classify)?;
            done.push(format!("enabled TTL on attribute {TTL_ATTRIBUTE}"));
        }
        Ok(done)
    }

    async fn create_table(&self) -> Result<(), StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Internal(e.to_string());
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build)
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(build)
        };
        let index = GlobalSecondaryIndex::builder()
            .index_name(USER_INDEX)
            .key_schema(key("gsi1pk", KeyType::Hash)?)
            .key_schema(key("gsi1sk", KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(build)?;
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("pk")?)
            .attribute_definitions(attribute("sk")?)
            .attribute_definitions(attribute("gsi1pk")?)
            .attribute_definitions(attribute("gsi1sk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .global_secondary_indexes(index)
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            // Another replica created it meanwhile: that is what we wanted.
            Err(e) if matches!(&e, SdkError::ServiceError(s) if s.err().is_resource_in_use_exception()) => {
                Ok(())
            }
            Err(e) => Err(classify(e)),
        }
    }

    async fn wait_active(&self) -> Result<(), StoreError> {
        for _ in 0..120 {
            let table = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(classify)?;
            if table.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(StoreError::Unavailable(format!(
            "table {} did not become ACTIVE",
            self.table
        )))
    }
}

#[async_trait::async_trait]
impl Store for DynamoStore {
    async fn get_profile(&self, user_id: &str) -> Result<Option<Profile>, StoreError> {
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

    async fn put_profile(&self, profile: &Profile) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(profile_item(profile)?))
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
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(revocation_item(revocation)))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn revocations_since(
        &self,
        after_ms: i64,
        now: i64,
    ) -> Result<Vec<Revocation>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk > :after")
            .expression_attribute_values(":pk", s(REVOCATIONS_PK))
            // Every key of a later millisecond sorts after this one.
            .expression_attribute_values(":after", s(format!("{:016}$", after_ms.max(0))))
            .consistent_read(true);
        let mut found = Vec::new();
        for item in self.query_all(query).await? {
            let revocation = revocation_from(&item)?;
            if revocation.expires_at > now {
                found.push(revocation);
            }
        }
        Ok(found)
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
