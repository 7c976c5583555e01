//! Domain values as DynamoDB items, and back.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::{Item, TTL_ATTRIBUTE};
use crate::{
    secrets::SealedSecret,
    store::{
        DeviceApproval, Profile, Revocation, SealedItem, SessionRecord, StoreError, StoredProfile,
    },
};

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
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

pub(super) fn get_s(item: &Item, name: &str) -> Result<String, StoreError> {
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

pub(super) fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
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

pub(super) fn profile_key(user_id: &str) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(format!("USER#{user_id}"))),
        ("sk".to_owned(), s("PROFILE")),
    ])
}

pub(super) fn session_key(id: &str) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(format!("SESSION#{id}"))),
        ("sk".to_owned(), s("SESSION")),
    ])
}

/// A profile item: the user id (its key) and the sealed profile only.
pub(super) fn profile_item(user_id: &str, sealed: &SealedSecret) -> Item {
    let mut item = profile_key(user_id);
    item.insert("user_id".to_owned(), s(user_id));
    item.insert("sealed".to_owned(), s(sealed.0.clone()));
    item
}

/// A stored profile: sealed, or in clear as written before profiles were
/// sealed (no `sealed` attribute).
pub(super) fn profile_from(item: &Item) -> Result<StoredProfile, StoreError> {
    if item.contains_key("sealed") {
        return Ok(StoredProfile::Sealed(SealedSecret(get_s(item, "sealed")?)));
    }
    Ok(StoredProfile::Clear(Profile {
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
    }))
}

/// Any item holding sealed values, by its `sk`; `None` for other items.
pub(super) fn sealed_item_from(item: &Item) -> Result<Option<SealedItem>, StoreError> {
    let sk = item
        .get("sk")
        .and_then(|v| v.as_s().ok())
        .map(String::as_str);
    let pk = get_s(item, "pk")?;
    Ok(match sk {
        Some("PROFILE") => Some(SealedItem::Profile {
            user_id: get_s(item, "user_id")?,
            stored: profile_from(item)?,
        }),
        Some("SESSION") => Some(SealedItem::Session(session_from(item)?)),
        Some("APPROVAL") => {
            let id = pk.strip_prefix("DEVICE#").ok_or_else(|| corrupt("pk"))?;
            Some(SealedItem::DeviceApproval(device_approval_from(id, item)?))
        }
        _ => None,
    })
}

pub(super) fn session_item(r: &SessionRecord) -> Item {
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
    if r.device_code_open {
        item.insert("device_code_open".to_owned(), AttributeValue::Bool(true));
    }
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
        device_code_open: item.contains_key("device_code_open")
            && get_bool(item, "device_code_open")?,
    })
}

/// The one partition every revocation was written to before the sharded
/// log ([`super::revocations`]); read (and written) as
/// `store.legacy_revocations` says.
pub(super) const LEGACY_REVOCATIONS_PK: &str = "REVOCATIONS";

/// `r` as an item of partition `pk`.
pub(super) fn revocation_item(r: &Revocation, pk: String) -> Item {
    let kind = serde_json::to_value(r.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    HashMap::from([
        ("pk".to_owned(), s(pk)),
        ("sk".to_owned(), s(r.sort_key())),
        ("kind".to_owned(), s(kind)),
        ("issuer".to_owned(), s(r.issuer.clone())),
        ("value".to_owned(), s(r.value.clone())),
        ("at_ms".to_owned(), n(r.at_ms)),
        ("expires_at".to_owned(), n(r.expires_at)),
        (TTL_ATTRIBUTE.to_owned(), n(r.expires_at)),
    ])
}

pub(super) fn revocation_from(item: &Item) -> Result<Revocation, StoreError> {
    Ok(Revocation {
        kind: serde_json::from_value(serde_json::Value::String(get_s(item, "kind")?))
            .map_err(|e| StoreError::Corrupt(format!("kind: {e}")))?,
        issuer: get_s(item, "issuer")?,
        value: get_s(item, "value")?,
        at_ms: get_n(item, "at_ms")?,
        expires_at: get_n(item, "expires_at")?,
    })
}

pub(super) fn device_approval_key(id: &str) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(format!("DEVICE#{id}"))),
        ("sk".to_owned(), s("APPROVAL")),
    ])
}

pub(super) fn device_approval_item(a: &DeviceApproval) -> Item {
    let mut item = device_approval_key(&a.id);
    item.insert("session_id".to_owned(), s(a.session_id.clone()));
    if let Some(version) = a.session_version {
        item.insert("session_version".to_owned(), n(version));
    }
    item.insert("handle".to_owned(), s(a.handle.0.clone()));
    item.insert("expires_at".to_owned(), n(a.expires_at));
    item.insert(TTL_ATTRIBUTE.to_owned(), n(a.expires_at));
    item
}

pub(super) fn device_approval_from(id: &str, item: &Item) -> Result<DeviceApproval, StoreError> {
    Ok(DeviceApproval {
        id: id.to_owned(),
        session_id: get_s(item, "session_id")?,
        session_version: item
            .contains_key("session_version")
            .then(|| get_n(item, "session_version"))
            .transpose()?,
        handle: SealedSecret(get_s(item, "handle")?),
        expires_at: get_n(item, "expires_at")?,
    })
}

pub(super) fn live(item: &Item, now: i64) -> Result<Option<SessionRecord>, StoreError> {
    let record = session_from(item)?;
    Ok((record.expires_at > now).then_some(record))
}
