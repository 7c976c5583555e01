//! Key rotation that finishes: `authd store reseal` walks every item holding
//! sealed values (sessions, device answers, profiles), re-seals each value
//! not under the key sealing now, and counts how many values each key id
//! still seals, so an operator knows when an old key can go.
//!
//! Safe beside running replicas: every write is conditional on the item
//! being as it was read (a session's version; a profile's or device
//! answer's sealed value), and an item that changed meanwhile is read again.
//! Resumable: each page ends with a cursor the walk can start from again,
//! and a value already under the sealing key is left alone, so a run
//! repeated from the start only counts. Rate-limited in items per second,
//! for DynamoDB's capacity.

use std::time::Duration;

use crate::{
    error::Error,
    profile::sealed,
    secrets::{SealError, SealedSecret, Sealer},
    store::{SealedItem, SealingCensus, Store, StoreError, StoredProfile, unix_now},
};

/// How a re-sealing walk runs.
#[derive(Debug, Clone)]
pub struct ResealOptions {
    /// Items handled per second at most.
    pub items_per_second: u32,
    /// Items asked of the store per page.
    pub page_size: usize,
    /// Where to start (a cursor printed by an earlier run); `None`: the start.
    pub from: Option<String>,
    /// Count only; write nothing.
    pub dry_run: bool,
}

impl Default for ResealOptions {
    fn default() -> Self {
        ResealOptions {
            items_per_second: 100,
            page_size: 100,
            from: None,
            dry_run: false,
        }
    }
}

/// What a walk did.
#[derive(Debug, Clone, Default)]
pub struct ResealReport {
    /// Values per key after the walk (for the part of the store it walked).
    pub census: SealingCensus,
    /// Items re-sealed.
    pub resealed: u64,
    /// Items read again because a replica changed them meanwhile.
    pub changed_meanwhile: u64,
    /// Values that do not open with any configured key (left as they are).
    pub unopenable: u64,
    /// Items skipped because they expired (their store deletes them).
    pub expired: u64,
}

/// How often an item that keeps changing under the walk is read again.
const REREADS: usize = 5;

/// Walks the store from `options.from`, re-sealing under the key that seals
/// now; `page_done(cursor, report)` after each page (the cursor to resume
/// from, `None` at the end).
pub async fn reseal(
    store: &dyn Store,
    sealer: &Sealer,
    options: &ResealOptions,
    mut page_done: impl FnMut(Option<&str>, &ResealReport),
) -> Result<ResealReport, Error> {
    sealer.warm().await?;
    let mut report = ResealReport::default();
    let pace = Duration::from_secs(1) / options.items_per_second.max(1);
    let mut ticks = tokio::time::interval(pace);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cursor = options.from.clone();
    loop {
        let page = store
            .scan_sealed(cursor.as_deref(), options.page_size.max(1))
            .await?;
        for item in page.items {
            ticks.tick().await;
            reseal_item(store, sealer, item, options.dry_run, &mut report).await?;
        }
        cursor = page.next;
        page_done(cursor.as_deref(), &report);
        if cursor.is_none() {
            break;
        }
    }
    report.census.counted_at = unix_now();
    Ok(report)
}

/// Re-seals one item (reading it again while replicas change it) and
/// counts its values.
async fn reseal_item(
    store: &dyn Store,
    sealer: &Sealer,
    mut item: SealedItem,
    dry_run: bool,
    report: &mut ResealReport,
) -> Result<(), Error> {
    for _ in 0..REREADS {
        if expired(&item) {
            report.expired += 1;
            return Ok(());
        }
        let new = match resealed(sealer, &item).await {
            Ok(new) => new,
            Err(SealError::Unavailable(detail)) => {
                tracing::warn!(%detail, "sealing keys unavailable");
                return Err(Error::SealingKeysUnavailable);
            }
            Err(error) => {
                tracing::warn!(item = %describe(&item), %error, "a value does not open; left as it is");
                report.unopenable += 1;
                count(&item, &mut report.census);
                return Ok(());
            }
        };
        let Some(new) = new.filter(|_| !dry_run) else {
            count(&item, &mut report.census);
            return Ok(());
        };
        match store.replace_sealed(&item, &new).await {
            Ok(()) => {
                report.resealed += 1;
                count(&new, &mut report.census);
                return Ok(());
            }
            Err(StoreError::Conflict) => {
                report.changed_meanwhile += 1;
                match reread(store, &item).await? {
                    Some(current) => item = current,
                    None => return Ok(()),
                }
            }
            Err(StoreError::NotFound) => return Ok(()),
            Err(other) => return Err(other.into()),
        }
    }
    Err(Error::Conflict)
}

/// `item` with every value re-sealed under the sealing key; `None` when
/// every value already is.
async fn resealed(sealer: &Sealer, item: &SealedItem) -> Result<Option<SealedItem>, SealError> {
    match item {
        SealedItem::Session(record) => {
            let key = record.item_key();
            let mut next = record.clone();
            let mut changed = false;
            for value in [
                &mut next.refresh_token,
                &mut next.access_token,
                &mut next.id_token,
            ]
            .into_iter()
            .flatten()
            {
                if sealer.needs_reseal(value) {
                    *value = reseal_value(sealer, value, &key).await?;
                    changed = true;
                }
            }
            next.version += 1;
            Ok(changed.then_some(SealedItem::Session(next)))
        }
        SealedItem::DeviceApproval(approval) => {
            if !sealer.needs_reseal(&approval.handle) {
                return Ok(None);
            }
            let mut next = approval.clone();
            next.handle = reseal_value(sealer, &approval.handle, &approval.item_key()).await?;
            Ok(Some(SealedItem::DeviceApproval(next)))
        }
        SealedItem::Profile { user_id, stored } => {
            if let StoredProfile::Sealed(value) = stored
                && !sealer.needs_reseal(value)
            {
                return Ok(None);
            }
            let profile = sealed::open(sealer, user_id, stored.clone()).await?;
            Ok(Some(SealedItem::Profile {
                user_id: user_id.clone(),
                stored: StoredProfile::Sealed(sealed::seal(sealer, &profile).await?),
            }))
        }
    }
}

async fn reseal_value(
    sealer: &Sealer,
    value: &SealedSecret,
    item_key: &str,
) -> Result<SealedSecret, SealError> {
    let secret = sealer.open(value, item_key).await?;
    sealer.seal(&secret, item_key).await
}

/// Counts the values of `item` by the key that sealed each.
fn count(item: &SealedItem, census: &mut SealingCensus) {
    let key_of = |value: &SealedSecret| value.key_id().unwrap_or("unknown").to_owned();
    match item {
        SealedItem::Session(record) => {
            for value in [
                &record.refresh_token,
                &record.access_token,
                &record.id_token,
            ]
            .into_iter()
            .flatten()
            {
                census.add(&key_of(value), "session");
            }
        }
        SealedItem::DeviceApproval(approval) => {
            census.add(&key_of(&approval.handle), "device_approval");
        }
        SealedItem::Profile { stored, .. } => match stored {
            StoredProfile::Sealed(value) => census.add(&key_of(value), "profile"),
            StoredProfile::Clear(_) => census.add(SealingCensus::CLEAR, "profile"),
        },
    }
}

fn expired(item: &SealedItem) -> bool {
    let now = unix_now();
    match item {
        SealedItem::Session(record) => record.expires_at <= now,
        SealedItem::DeviceApproval(approval) => approval.expires_at <= now,
        SealedItem::Profile { .. } => false,
    }
}

/// `item` as it is now; `None` when it is gone.
async fn reread(store: &dyn Store, item: &SealedItem) -> Result<Option<SealedItem>, Error> {
    let now = unix_now();
    Ok(match item {
        SealedItem::Session(record) => store
            .get_session(&record.id, i64::MIN)
            .await?
            .map(SealedItem::Session),
        SealedItem::DeviceApproval(approval) => store
            .get_device_approval(&approval.id, now)
            .await?
            .map(SealedItem::DeviceApproval),
        SealedItem::Profile { user_id, .. } => {
            store
                .get_profile(user_id)
                .await?
                .map(|stored| SealedItem::Profile {
                    user_id: user_id.clone(),
                    stored,
                })
        }
    })
}

/// Names an item in logs without its secrets.
fn describe(item: &SealedItem) -> String {
    match item {
        SealedItem::Session(record) => {
            format!("session {}", record.id.get(..16).unwrap_or_default())
        }
        SealedItem::DeviceApproval(approval) => {
            format!(
                "device answer {}",
                approval.id.get(..16).unwrap_or_default()
            )
        }
        SealedItem::Profile { user_id, .. } => format!("profile of {user_id}"),
    }
}
