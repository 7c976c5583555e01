//! The conformance suite every [`Store`] must pass, unchanged.
//!
//! Each check takes a fresh, empty store. [`crate::store_conformance_tests!`]
//! turns the list into `#[tokio::test]`s for one store; the end-to-end tests
//! run it against the embedded store and against a DynamoDB server.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{DeviceApproval, Profile, SealedItem, SessionRecord, Store, StoreError, StoredProfile};
use crate::{
    profile::sealed,
    secrets::{SealedSecret, Sealer, Secret, hash_handle, random_handle},
};

/// The sealer of the checks.
fn sealer() -> Sealer {
    Sealer::from_keys(&[("k1", [7; 32])]).expect("sealer")
}

/// Seals and stores `profile`.
async fn put_profile(store: &dyn Store, profile: &Profile) {
    let value = sealed::seal(&sealer(), profile).await.expect("seals");
    store
        .put_profile(&profile.user_id, &value)
        .await
        .expect("put");
}

/// The stored profile of `user_id`, opened.
async fn get_profile(store: &dyn Store, user_id: &str) -> Option<Profile> {
    let stored = store.get_profile(user_id).await.expect("get")?;
    assert!(
        matches!(stored, StoredProfile::Sealed(_)),
        "profiles are stored sealed"
    );
    Some(
        sealed::open(&sealer(), user_id, stored)
            .await
            .expect("opens"),
    )
}

/// Now, in unix seconds.
pub fn now() -> i64 {
    super::unix_now()
}

/// A profile with ordinary values.
pub fn profile(user_id: &str) -> Profile {
    let t = now();
    Profile {
        user_id: user_id.to_owned(),
        email: Some(format!("{user_id}@example.com")),
        email_verified: true,
        name: Some("Alice Example".to_owned()),
        nickname: Some("alice".to_owned()),
        picture: Some("https://example.com/a.png".to_owned()),
        attributes: Map::new(),
        created_at: t,
        updated_at: t,
        fetched_at: t,
    }
}

/// A live session of `user_id` with a fresh random handle.
pub fn session(user_id: &str) -> SessionRecord {
    let t = now();
    SessionRecord {
        id: hash_handle(&random_handle()),
        user_id: user_id.to_owned(),
        issuer: "https://tenant.example.auth0.com/".to_owned(),
        refresh_token: None,
        version: 1,
        created_at: t,
        refreshed_at: t,
        expires_at: t + 86_400,
        revoked: false,
        issuer_session_id: None,
        access_token: None,
        access_token_expires_at: 0,
        id_token: None,
        issued_tokens: Vec::new(),
        lease_until: 0,
        device_code_open: false,
    }
}

/// Put, get, replace and delete a profile.
pub async fn profile_round_trip(store: Arc<dyn Store>) {
    assert_eq!(store.get_profile("auth0|nobody").await, Ok(None));
    let mut alice = profile("auth0|alice");
    put_profile(store.as_ref(), &alice).await;
    assert_eq!(
        get_profile(store.as_ref(), "auth0|alice").await,
        Some(alice.clone())
    );
    alice.name = Some("Alice Renamed".to_owned());
    alice.email = None;
    alice.updated_at += 5;
    put_profile(store.as_ref(), &alice).await;
    assert_eq!(
        get_profile(store.as_ref(), "auth0|alice").await,
        Some(alice)
    );
    assert_eq!(store.delete_profile("auth0|alice").await, Ok(true));
    assert_eq!(store.delete_profile("auth0|alice").await, Ok(false));
    assert_eq!(store.get_profile("auth0|alice").await, Ok(None));
}

/// Unicode, empty strings, a 64 KiB attribute map and JSON of every kind
/// come back exactly.
pub async fn unusual_values_round_trip(store: Arc<dyn Store>) {
    let mut odd = profile("google-oauth2|Zoë-Ünïcødé-🚀");
    odd.name = Some("Zoë Ünïcødé 🚀 山田太郎 \u{202e}rtl".to_owned());
    odd.email = Some(String::new());
    odd.nickname = Some(String::new());
    odd.picture = None;
    let mut attributes = Map::new();
    for i in 0..64 {
        attributes.insert(format!("attr-{i:02}"), Value::String("x".repeat(1024)));
    }
    attributes.insert(
        "nested".to_owned(),
        json!({"a": [1, 2.5, -3, null, true, "", {"b": []}], "big": 9_007_199_254_740_991_i64, "empty": {}}),
    );
    attributes.insert(String::new(), json!("empty key"));
    odd.attributes = attributes;
    put_profile(store.as_ref(), &odd).await;
    assert_eq!(get_profile(store.as_ref(), &odd.user_id).await, Some(odd));
}

/// Create, read back, refuse a duplicate, delete.
pub async fn session_lifecycle(store: Arc<dyn Store>) {
    let s = session("auth0|alice");
    store.create_session(&s).await.expect("create");
    assert_eq!(store.get_session(&s.id, now()).await, Ok(Some(s.clone())));
    assert_eq!(store.create_session(&s).await, Err(StoreError::Conflict));
    assert_eq!(store.delete_session(&s.id).await, Ok(true));
    assert_eq!(store.get_session(&s.id, now()).await, Ok(None));
    assert_eq!(store.delete_session(&s.id).await, Ok(false));
}

/// Updates succeed on the current version only.
pub async fn stale_version_update_fails(store: Arc<dyn Store>) {
    let mut s = session("auth0|alice");
    store.create_session(&s).await.expect("create");
    s.version = 2;
    s.refreshed_at += 60;
    store
        .update_session(&s, 1, now())
        .await
        .expect("current version");
    let mut stale = s.clone();
    stale.version = 2;
    stale.revoked = true;
    assert_eq!(
        store.update_session(&stale, 1, now()).await,
        Err(StoreError::Conflict)
    );
    assert_eq!(
        store.get_session(&s.id, now()).await,
        Ok(Some(s.clone())),
        "stale write changed nothing"
    );

    let missing = session("auth0|alice");
    assert_eq!(
        store.update_session(&missing, 1, now()).await,
        Err(StoreError::NotFound)
    );
}

/// Expired sessions are invisible and cannot be updated, even before the
/// store deletes them.
pub async fn expired_sessions_are_ignored(store: Arc<dyn Store>) {
    let mut s = session("auth0|alice");
    s.expires_at = now() - 10;
    store.create_session(&s).await.expect("create");
    assert_eq!(store.get_session(&s.id, now()).await, Ok(None));
    assert_eq!(store.list_sessions("auth0|alice", now()).await, Ok(vec![]));
    let mut next = s.clone();
    next.version = 2;
    assert_eq!(
        store.update_session(&next, 1, now()).await,
        Err(StoreError::NotFound)
    );
    // Still there for a reader whose clock is earlier.
    assert!(
        store
            .get_session(&s.id, now() - 60)
            .await
            .expect("get")
            .is_some()
    );
}

/// A user's sessions are listed, and only theirs.
pub async fn lists_a_users_sessions(store: Arc<dyn Store>) {
    let mut alice: Vec<SessionRecord> = (0..3).map(|_| session("auth0|alice")).collect();
    let bob = session("auth0|bob");
    // A user id that is a prefix of another must not see the other's.
    let alicia = session("auth0|alice2");
    for s in alice.iter().chain([&bob, &alicia]) {
        store.create_session(s).await.expect("create");
    }
    let mut listed = store
        .list_sessions("auth0|alice", now())
        .await
        .expect("list");
    listed.sort_by(|a, b| a.id.cmp(&b.id));
    alice.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(listed, alice);
    assert_eq!(store.list_sessions("auth0|bob", now()).await, Ok(vec![bob]));
    assert_eq!(store.list_sessions("auth0|nobody", now()).await, Ok(vec![]));
    store.delete_session(&alice[0].id).await.expect("delete");
    assert_eq!(
        store
            .list_sessions("auth0|alice", now())
            .await
            .expect("list")
            .len(),
        2
    );
}

/// Concurrent read-modify-write loops on one session lose no update.
pub async fn concurrent_writers_lose_no_update(store: Arc<dyn Store>) {
    let s = session("auth0|alice");
    store.create_session(&s).await.expect("create");
    let (writers, increments) = (8, 10);
    let tasks = (0..writers).map(|_| {
        let (store, id) = (Arc::clone(&store), s.id.clone());
        tokio::spawn(async move {
            let mut done = 0;
            while done < increments {
                let mut current = store
                    .get_session(&id, now())
                    .await
                    .expect("get")
                    .expect("exists");
                let expected = current.version;
                current.version += 1;
                current.refreshed_at += 1;
                match store.update_session(&current, expected, now()).await {
                    Ok(()) => done += 1,
                    Err(StoreError::Conflict) => tokio::task::yield_now().await,
                    Err(e) => panic!("unexpected {e}"),
                }
            }
        })
    });
    for task in futures_util::future::join_all(tasks).await {
        task.expect("writer");
    }
    let last = store
        .get_session(&s.id, now())
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(last.version, 1 + writers * increments);
    assert_eq!(
        last.refreshed_at,
        s.refreshed_at + (writers * increments) as i64
    );
}

/// A sealed refresh token survives the store and opens only for its item.
pub async fn sealed_secrets_round_trip(store: Arc<dyn Store>) {
    let sealer = sealer();
    let mut s = session("auth0|alice");
    let secret = Secret::new("v1.refresh-token-secret");
    s.refresh_token = Some(sealer.seal(&secret, &s.item_key()).await.expect("seals"));
    store.create_session(&s).await.expect("create");
    let back = store
        .get_session(&s.id, now())
        .await
        .expect("get")
        .expect("exists");
    let sealed = back.refresh_token.expect("sealed token kept");
    assert_eq!(
        sealer
            .open(&sealed, &s.item_key())
            .await
            .expect("opens")
            .expose(),
        "v1.refresh-token-secret"
    );
    let other = session("auth0|alice");
    assert!(sealer.open(&sealed, &other.item_key()).await.is_err());
}

/// Every session field survives the store.
pub async fn full_session_round_trip(store: Arc<dyn Store>) {
    let sealer = sealer();
    let mut s = session("auth0|alice");
    s.issuer_session_id = Some("sid-Ünïcode".to_owned());
    let key = s.item_key();
    s.access_token = Some(sealer.seal(&Secret::new("at"), &key).await.expect("seals"));
    s.access_token_expires_at = now() + 600;
    s.id_token = Some(sealer.seal(&Secret::new("idt"), &key).await.expect("seals"));
    s.issued_tokens = (0..50)
        .map(|i| match i % 2 {
            0 => super::IssuedToken {
                signed_digest: Some(hash_handle(&format!("h.p{i}"))),
                hash: None,
                expires_at: now() + i,
            },
            // As records written before tokens were named by signed content.
            _ => super::IssuedToken {
                signed_digest: None,
                hash: Some(hash_handle(&format!("token-{i}"))),
                expires_at: now() + i,
            },
        })
        .collect();
    s.lease_until = now() + 15;
    store.create_session(&s).await.expect("create");
    assert_eq!(store.get_session(&s.id, now()).await, Ok(Some(s)));
}

/// Revocations come back in order, from a cursor, without expired ones.
pub async fn revocations_since_a_cursor(store: Arc<dyn Store>) {
    use super::{Revocation, RevocationKind};
    let t = now();
    let make = |kind, value: &str, at_ms: i64, expires_at: i64| Revocation {
        kind,
        issuer: "https://tenant.example.auth0.com/".to_owned(),
        value: value.to_owned(),
        at_ms,
        expires_at,
    };
    let a = make(RevocationKind::SessionId, "sid-1", t * 1000, t + 600);
    let b = make(
        RevocationKind::Subject,
        "auth0|alice",
        t * 1000 + 5,
        t + 600,
    );
    let c = make(
        RevocationKind::SignedDigest,
        &hash_handle("h.p"),
        t * 1000 + 5,
        t + 600,
    );
    // As written before revocations named signed content.
    let legacy = make(
        RevocationKind::TokenHash,
        &hash_handle("tok"),
        t * 1000 + 5,
        t + 600,
    );
    let old = make(RevocationKind::SessionId, "sid-0", t * 1000 - 10, t - 1);
    for r in [&c, &a, &old, &b, &legacy] {
        store.put_revocation(r).await.expect("put");
    }
    let all = store.revocations_since(0, t).await.expect("since 0");
    assert_eq!(all.len(), 4, "the expired one is ignored");
    assert_eq!(all[0], a);
    assert!(all.contains(&b) && all.contains(&c) && all.contains(&legacy));
    let later = store.revocations_since(t * 1000, t).await.expect("since a");
    assert_eq!(later.len(), 3);
    assert_eq!(store.revocations_since(t * 1000 + 5, t).await, Ok(vec![]));
    // Writing the same revocation twice is harmless.
    store.put_revocation(&a).await.expect("again");
    assert_eq!(
        store.revocations_since(0, t).await.expect("since 0").len(),
        4
    );
}

/// A device approval comes back until it expires, and is replaced.
pub async fn device_approvals_round_trip(store: Arc<dyn Store>) {
    let t = now();
    let sealer = sealer();
    let mut approval = DeviceApproval {
        id: hash_handle("device-code-1"),
        session_id: hash_handle(&random_handle()),
        session_version: Some(1),
        handle: SealedSecret(String::new()),
        expires_at: t + 600,
    };
    approval.handle = sealer
        .seal(&Secret::new("handle"), &approval.item_key())
        .await
        .expect("seals");
    assert_eq!(store.get_device_approval(&approval.id, t).await, Ok(None));
    store.put_device_approval(&approval).await.expect("put");
    assert_eq!(
        store.get_device_approval(&approval.id, t).await,
        Ok(Some(approval.clone()))
    );
    assert_eq!(
        store.get_device_approval(&approval.id, t + 600).await,
        Ok(None),
        "expired"
    );
    let replaced = DeviceApproval {
        session_id: hash_handle("other"),
        session_version: None,
        ..approval.clone()
    };
    store.put_device_approval(&replaced).await.expect("replace");
    assert_eq!(
        store.get_device_approval(&approval.id, t).await,
        Ok(Some(replaced))
    );
    assert_eq!(
        store
            .get_device_approval(&hash_handle("another code"), t)
            .await,
        Ok(None)
    );
}

/// A walk over the store in small pages finds every profile, session and
/// device answer exactly once, and nothing else (revocations).
pub async fn scan_finds_every_sealed_item(store: Arc<dyn Store>) {
    let empty = store.scan_sealed(None, 10).await.expect("scan");
    assert!(empty.items.is_empty() && empty.next.is_none());
    let sealer = sealer();
    let mut want = Vec::new();
    for i in 0..7 {
        let p = profile(&format!("auth0|scan{i}"));
        put_profile(store.as_ref(), &p).await;
        want.push(format!("profile {}", p.user_id));
        let s = session(&p.user_id);
        store.create_session(&s).await.expect("create");
        want.push(format!("session {}", s.id));
    }
    for i in 0..3 {
        let mut approval = DeviceApproval {
            id: hash_handle(&format!("code-{i}")),
            session_id: hash_handle(&random_handle()),
            session_version: Some(1),
            handle: SealedSecret(String::new()),
            expires_at: now() + 600,
        };
        approval.handle = sealer
            .seal(&Secret::new("handle"), &approval.item_key())
            .await
            .expect("seals");
        store.put_device_approval(&approval).await.expect("put");
        want.push(format!("device {}", approval.id));
    }
    store
        .put_revocation(&super::Revocation {
            kind: super::RevocationKind::Subject,
            issuer: "https://tenant.example.auth0.com/".to_owned(),
            value: "auth0|scan0".to_owned(),
            at_ms: now() * 1000,
            expires_at: now() + 600,
        })
        .await
        .expect("revoke");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let page = store.scan_sealed(cursor.as_deref(), 4).await.expect("scan");
        for item in page.items {
            seen.push(match item {
                SealedItem::Profile { user_id, .. } => format!("profile {user_id}"),
                SealedItem::Session(s) => format!("session {}", s.id),
                SealedItem::DeviceApproval(a) => format!("device {}", a.id),
            });
        }
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    assert!(cursor.is_none(), "the walk ends");
    seen.sort();
    want.sort();
    assert_eq!(seen, want);
}

/// Replacing an item by its re-sealed copy is conditional on it being as
/// it was read.
pub async fn replace_sealed_is_conditional(store: Arc<dyn Store>) {
    let sealer = sealer();
    let p = profile("auth0|reseal");
    put_profile(store.as_ref(), &p).await;
    let s = session("auth0|reseal");
    store.create_session(&s).await.expect("create");
    let mut items = store.scan_sealed(None, 100).await.expect("scan").items;
    items.sort_by_key(|i| matches!(i, SealedItem::Session(_)));
    let [old_profile, old_session] = <[SealedItem; 2]>::try_from(items).expect("two items");

    let resealed = SealedItem::Profile {
        user_id: p.user_id.clone(),
        stored: StoredProfile::Sealed(sealed::seal(&sealer, &p).await.expect("seals")),
    };
    store
        .replace_sealed(&old_profile, &resealed)
        .await
        .expect("replace");
    assert_eq!(
        get_profile(store.as_ref(), &p.user_id).await,
        Some(p.clone())
    );
    // Read before that replacement: refused.
    assert_eq!(
        store.replace_sealed(&old_profile, &resealed).await,
        Err(StoreError::Conflict)
    );

    let SealedItem::Session(read) = &old_session else {
        unreachable!("sorted");
    };
    let mut next = read.clone();
    next.version += 1;
    next.refresh_token = Some(
        sealer
            .seal(&Secret::new("rt"), &read.item_key())
            .await
            .expect("seals"),
    );
    let new_session = SealedItem::Session(next.clone());
    store
        .replace_sealed(&old_session, &new_session)
        .await
        .expect("replace");
    assert_eq!(store.get_session(&s.id, now()).await, Ok(Some(next)));
    assert_eq!(
        store.replace_sealed(&old_session, &new_session).await,
        Err(StoreError::Conflict)
    );
}

/// How many revocations [`revocation_burst_reaches_every_replica`] writes.
pub const BURST: usize = 10_000;

/// Revocations of `issuer`-wide kinds, one per value, expiring in ten
/// minutes: what a mass revocation writes.
fn burst_revocation(i: usize, at_ms: i64) -> super::Revocation {
    use super::RevocationKind;
    let (kind, value) = match i % 3 {
        0 => (RevocationKind::SessionId, format!("sid-{i}")),
        1 => (RevocationKind::Subject, format!("auth0|user-{i}")),
        _ => (
            RevocationKind::SignedDigest,
            hash_handle(&format!("h.p{i}")),
        ),
    };
    super::Revocation {
        kind,
        issuer: "https://tenant.example.auth0.com/".to_owned(),
        value,
        at_ms,
        expires_at: now() + 600,
    }
}

/// A burst of [`BURST`] revocations, written concurrently (64 at a time),
/// is seen whole by another replica — in order, each once — by the first
/// read of a replica that starts (cursor 0), and from a cursor in its
/// middle.
pub async fn revocation_burst_reaches_every_replica(
    writer: Arc<dyn Store>,
    reader: Arc<dyn Store>,
) {
    revocation_burst(writer, reader, BURST).await;
}

/// [`revocation_burst_reaches_every_replica`] with `count` revocations, one
/// a millisecond, ending now; on a fresh store.
pub async fn revocation_burst(writer: Arc<dyn Store>, reader: Arc<dyn Store>, count: usize) {
    use futures_util::{StreamExt, TryStreamExt, stream};
    let t = now();
    // One revocation a millisecond until now, written in a
    // shuffled order so that the store, not the writer, puts them in order.
    let start_ms = t * 1000 - count as i64;
    let burst: Vec<_> = (0..count)
        .map(|i| burst_revocation(i, start_ms + i as i64))
        .collect();
    let mut order: Vec<usize> = (0..count).collect();
    order.sort_by_key(|i| hash_handle(&i.to_string()));
    let started = std::time::Instant::now();
    stream::iter(order)
        .map(|i| {
            let (writer, r) = (Arc::clone(&writer), burst[i].clone());
            async move { writer.put_revocation(&r).await }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await
        .expect("burst written");
    let written = started.elapsed();

    // The first read of a replica that starts: everything in force.
    let started = std::time::Instant::now();
    let seen = reader.revocations_since(0, t).await.expect("read from 0");
    let read = started.elapsed();
    assert_eq!(seen.len(), count, "none missing, none twice");
    for (i, (got, want)) in seen.iter().zip(&burst).enumerate() {
        assert_eq!(got, want, "revocation {i} in order");
    }
    let middle = reader
        .revocations_since(burst[count / 2 - 1].at_ms, t)
        .await
        .expect("read from the middle");
    assert_eq!(middle, burst[count / 2..], "exactly the second half");
    eprintln!("{count} revocations: written in {written:?}, read back in {read:?}");
}

/// Revocations on either side of a time-bucket boundary (midnight UTC: a
/// boundary of every bucket width that divides a day) are read in order
/// from cursors on either side of it, by another replica; one made a week
/// ago that is still in force is found by a read from 0, an expired one
/// is not.
pub async fn revocations_across_a_bucket_boundary(writer: Arc<dyn Store>, reader: Arc<dyn Store>) {
    use super::{Revocation, RevocationKind};
    let t = now();
    let day_ms = 86_400_000;
    let boundary = (t * 1000).div_euclid(day_ms) * day_ms;
    let make = |kind, value: &str, at_ms: i64, expires_at: i64| Revocation {
        kind,
        issuer: "https://tenant.example.auth0.com/".to_owned(),
        value: value.to_owned(),
        at_ms,
        expires_at,
    };
    let week_old = make(
        RevocationKind::Subject,
        "auth0|long-ago",
        boundary - 7 * day_ms + 1,
        t + 600,
    );
    let expired = make(RevocationKind::SessionId, "sid-gone", boundary - 2, t - 1);
    let last_a = make(
        RevocationKind::SessionId,
        "sid-last-a",
        boundary - 1,
        t + 600,
    );
    let last_b = make(
        RevocationKind::SignedDigest,
        &hash_handle("h.p-last"),
        boundary - 1,
        t + 600,
    );
    let first = make(RevocationKind::SessionId, "sid-first", boundary, t + 600);
    let next = make(RevocationKind::Subject, "auth0|next", boundary + 1, t + 600);
    for r in [&next, &first, &last_b, &expired, &week_old, &last_a] {
        writer.put_revocation(r).await.expect("put");
    }
    let mut last = [last_a.clone(), last_b.clone()];
    last.sort_by_key(Revocation::sort_key);
    let since = |after_ms: i64| {
        let reader = Arc::clone(&reader);
        async move { reader.revocations_since(after_ms, t).await.expect("read") }
    };
    let mut all = vec![week_old.clone()];
    all.extend(last.iter().cloned());
    all.extend([first.clone(), next.clone()]);
    assert_eq!(since(0).await, all, "from 0: every one in force, in order");
    assert_eq!(
        since(boundary - 2).await,
        all[1..],
        "from before the boundary"
    );
    assert_eq!(
        since(boundary - 1).await,
        vec![first.clone(), next.clone()],
        "from the last millisecond before it"
    );
    assert_eq!(
        since(boundary).await,
        vec![next.clone()],
        "from the first after it"
    );
    assert_eq!(since(boundary + 1).await, vec![], "from the newest");
    assert_eq!(
        since(week_old.at_ms).await,
        all[1..],
        "from the old one: the ones after it"
    );
}

/// Generates one `#[tokio::test]` per conformance check for a store made by
/// `$make`, an async fn returning `(guard, Arc<dyn Store>)`: the guard keeps
/// whatever backs the store alive for the test. `$replica(&guard, &store)`
/// (async) opens a second store on the same data — another replica where
/// the store allows it, else the same store — for the checks that one
/// replica writes and another reads.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:path, $replica:path) => {
        $crate::store_conformance_tests!(@each $make;
            profile_round_trip, unusual_values_round_trip, session_lifecycle,
            stale_version_update_fails, expired_sessions_are_ignored, lists_a_users_sessions,
            concurrent_writers_lose_no_update, sealed_secrets_round_trip,
            full_session_round_trip, revocations_since_a_cursor, device_approvals_round_trip,
            scan_finds_every_sealed_item, replace_sealed_is_conditional);
        $crate::store_conformance_tests!(@pair $make, $replica;
            revocation_burst_reaches_every_replica, revocations_across_a_bucket_boundary);
    };
    (@each $make:path; $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (_guard, store) = $make().await;
                $crate::store::conformance::$check(store).await;
            }
        )*
    };
    (@pair $make:path, $replica:path; $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (guard, store) = $make().await;
                let replica = $replica(&guard, &store).await;
                $crate::store::conformance::$check(store, replica).await;
            }
        )*
    };
}
