//! Profiles at rest: the whole [`Profile`] as JSON, sealed for the item
//! `PROFILE#<user id>` ([`profile_item_key`]), so a dump of the store (or a
//! value copied onto another user's item) yields nothing.

use crate::{
    secrets::{SealError, SealedSecret, Sealer, Secret},
    store::{Profile, StoredProfile, profile_item_key},
};

/// Seals `profile` for its user's item.
pub async fn seal(sealer: &Sealer, profile: &Profile) -> Result<SealedSecret, SealError> {
    let json = serde_json::to_string(profile).map_err(|_| SealError::Corrupt)?;
    sealer
        .seal(&Secret::new(json), &profile_item_key(&profile.user_id))
        .await
}

/// The profile `stored` for `user_id`: opened, or as it was written in
/// clear by an earlier version. A sealed profile must name `user_id`.
pub async fn open(
    sealer: &Sealer,
    user_id: &str,
    stored: StoredProfile,
) -> Result<Profile, SealError> {
    match stored {
        StoredProfile::Clear(profile) if profile.user_id == user_id => Ok(profile),
        StoredProfile::Clear(_) => Err(SealError::Corrupt),
        StoredProfile::Sealed(sealed) => {
            let json = sealer.open(&sealed, &profile_item_key(user_id)).await?;
            let profile: Profile =
                serde_json::from_str(json.expose()).map_err(|_| SealError::Corrupt)?;
            if profile.user_id != user_id {
                return Err(SealError::Corrupt);
            }
            Ok(profile)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value};

    use super::*;

    fn alice() -> Profile {
        let mut attributes = Map::new();
        attributes.insert("locale".to_owned(), Value::String("fr-CA".to_owned()));
        Profile {
            user_id: "auth0|alice".to_owned(),
            email: Some("alice@example.com".to_owned()),
            email_verified: true,
            name: Some("Alice Example".to_owned()),
            nickname: Some("alice".to_owned()),
            picture: Some("https://example.com/a.png".to_owned()),
            attributes,
            created_at: 1,
            updated_at: 2,
            fetched_at: 3,
        }
    }

    #[tokio::test]
    async fn a_sealed_profile_shows_nothing_and_opens_for_its_user_only() {
        let sealer = Sealer::from_keys(&[("k1", [4; 32])]).expect("sealer");
        let sealed = seal(&sealer, &alice()).await.expect("seals");
        for clear in ["alice", "Alice", "example.com", "fr-CA", "locale"] {
            assert!(!sealed.0.contains(clear), "{clear} in {}", sealed.0);
        }
        let stored = StoredProfile::Sealed(sealed);
        assert_eq!(
            open(&sealer, "auth0|alice", stored.clone()).await,
            Ok(alice())
        );
        assert_eq!(
            open(&sealer, "auth0|mallory", stored).await,
            Err(SealError::Corrupt)
        );
    }

    #[tokio::test]
    async fn a_profile_written_in_clear_is_read() {
        let sealer = Sealer::from_keys(&[("k1", [4; 32])]).expect("sealer");
        let stored = StoredProfile::Clear(alice());
        assert_eq!(
            open(&sealer, "auth0|alice", stored.clone()).await,
            Ok(alice())
        );
        assert_eq!(
            open(&sealer, "auth0|bob", stored).await,
            Err(SealError::Corrupt)
        );
    }
}
