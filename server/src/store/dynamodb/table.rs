//! `authd store init`: the table, its user index and its TTL setting.

use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};

use super::{DynamoStore, TTL_ATTRIBUTE, USER_INDEX, classify};
use crate::store::StoreError;

impl DynamoStore {
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
