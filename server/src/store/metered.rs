//! A [`Store`] that counts and times every operation of the store it wraps
//! (`authd_store_operations_total{store,operation,outcome}`,
//! `authd_store_operation_seconds{store,operation}`), each in a child span
//! of the call being served. Outcomes are a closed set: `ok`, `conflict`,
//! `not_found`, `unavailable`, `corrupt`, `error`, `cancelled` (the caller
//! went away first).

use std::{future::Future, time::Instant};

use tracing::Instrument;

use super::{
    DeviceApproval, Revocation, SealedItem, SealedPage, SealingCensus, SessionRecord, Store,
    StoreError, StoredProfile,
};
use crate::secrets::SealedSecret;

/// Wraps a store with metrics; `kind` (`embedded`, `dynamodb`) labels them.
#[derive(Debug)]
pub struct Metered<S> {
    inner: S,
    kind: &'static str,
}

impl<S: Store> Metered<S> {
    /// Counts the operations of `inner`, labelled `store=kind`.
    pub fn new(inner: S, kind: &'static str) -> Self {
        Metered { inner, kind }
    }

    async fn run<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let span = tracing::info_span!(
            target: crate::telemetry::CHILD_TARGET,
            "store operation",
            otel.kind = "client",
            db.system = self.kind,
            db.operation = operation,
            outcome = tracing::field::Empty,
        );
        let started = Instant::now();
        let mut cancelled = Cancelled(Some((self.kind, operation)));
        let result = call.instrument(span.clone()).await;
        cancelled.0 = None;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(StoreError::Conflict) => "conflict",
            Err(StoreError::NotFound) => "not_found",
            Err(StoreError::Unavailable(_)) => "unavailable",
            Err(StoreError::Corrupt(_)) => "corrupt",
            Err(StoreError::Internal(_)) => "error",
        };
        span.record("outcome", outcome);
        metrics::counter!(
            "authd_store_operations_total",
            "store" => self.kind,
            "operation" => operation,
            "outcome" => outcome,
        )
        .increment(1);
        metrics::histogram!(
            "authd_store_operation_seconds",
            "store" => self.kind,
            "operation" => operation,
        )
        .record(started.elapsed().as_secs_f64());
        result
    }
}

/// Counts an operation whose caller went away before it finished
/// (`outcome="cancelled"`).
struct Cancelled(Option<(&'static str, &'static str)>);

impl Drop for Cancelled {
    fn drop(&mut self) {
        if let Some((store, operation)) = self.0.take() {
            metrics::counter!(
                "authd_store_operations_total",
                "store" => store,
                "operation" => operation,
                "outcome" => "cancelled",
            )
            .increment(1);
        }
    }
}

#[async_trait::async_trait]
impl<S: Store> Store for Metered<S> {
    async fn get_profile(&self, user_id: &str) -> Result<Option<StoredProfile>, StoreError> {
        self.run("get_profile", self.inner.get_profile(user_id))
            .await
    }
    async fn put_profile(&self, user_id: &str, sealed: &SealedSecret) -> Result<(), StoreError> {
        self.run("put_profile", self.inner.put_profile(user_id, sealed))
            .await
    }
    async fn delete_profile(&self, user_id: &str) -> Result<bool, StoreError> {
        self.run("delete_profile", self.inner.delete_profile(user_id))
            .await
    }
    async fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        self.run("create_session", self.inner.create_session(session))
            .await
    }
    async fn get_session(&self, id: &str, now: i64) -> Result<Option<SessionRecord>, StoreError> {
        self.run("get_session", self.inner.get_session(id, now))
            .await
    }
    async fn update_session(
        &self,
        session: &SessionRecord,
        expected_version: u64,
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(
            "update_session",
            self.inner.update_session(session, expected_version, now),
        )
        .await
    }
    async fn delete_session(&self, id: &str) -> Result<bool, StoreError> {
        self.run("delete_session", self.inner.delete_session(id))
            .await
    }
    async fn list_sessions(
        &self,
        user_id: &str,
        now: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.run("list_sessions", self.inner.list_sessions(user_id, now))
            .await
    }
    async fn put_revocation(&self, revocation: &Revocation) -> Result<(), StoreError> {
        self.run("put_revocation", self.inner.put_revocation(revocation))
            .await
    }
    async fn revocations_since(
        &self,
        after_ms: i64,
        now: i64,
    ) -> Result<Vec<Revocation>, StoreError> {
        self.run(
            "revocations_since",
            self.inner.revocations_since(after_ms, now),
        )
        .await
    }
    async fn put_device_approval(&self, approval: &DeviceApproval) -> Result<(), StoreError> {
        self.run(
            "put_device_approval",
            self.inner.put_device_approval(approval),
        )
        .await
    }
    async fn get_device_approval(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<DeviceApproval>, StoreError> {
        self.run(
            "get_device_approval",
            self.inner.get_device_approval(id, now),
        )
        .await
    }
    async fn scan_sealed(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<SealedPage, StoreError> {
        self.run("scan_sealed", self.inner.scan_sealed(cursor, limit))
            .await
    }
    async fn replace_sealed(&self, old: &SealedItem, new: &SealedItem) -> Result<(), StoreError> {
        self.run("replace_sealed", self.inner.replace_sealed(old, new))
            .await
    }
    async fn put_census(&self, census: &SealingCensus) -> Result<(), StoreError> {
        self.run("put_census", self.inner.put_census(census)).await
    }
    async fn get_census(&self) -> Result<Option<SealingCensus>, StoreError> {
        self.run("get_census", self.inner.get_census()).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.run("ping", self.inner.ping()).await
    }
}
