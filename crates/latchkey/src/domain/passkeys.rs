//! Passkeys (WebAuthn), with the `webauthn-rs` library: registered by a
//! signed-in user, then used to sign in on their own (discoverable
//! credentials: no address typed) or as the second step of a password
//! sign-in. User verification is required, so a passkey alone is
//! multi-factor (`amr` `hwk` or, for a synced passkey, `swk`, with `mfa`).
//!
//! Each ceremony's state waits in the database under the digest of a random
//! token the client holds, and is taken once, so a ceremony finishes on any
//! instance and only once. A signature counter that does not move forward
//! means a cloned authenticator: the sign-in is refused and a
//! `passkey_clone_suspected` event recorded.

use serde_json::Value;
use url::Url;
use uuid::Uuid;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, Webauthn, WebauthnBuilder, WebauthnError,
};

use super::agents::device_name;
use super::events::EventKind;
use super::mail::digest;
use super::secrets::random_b64;
use super::{Auth, AuthError, Authenticated, Client, TokenPair};
use crate::store::{CeremonyRecord, StoreError, UserRecord};

/// A stored passkey, as its owner sees it (the credential JSON is public
/// key material, not a secret).
pub use crate::store::PasskeyRecord;

/// How long a ceremony may take, in seconds.
const CEREMONY_TTL: i64 = 300;
/// Passkeys one user may hold.
const MAX_PASSKEYS: usize = 20;
const MAX_NAME: usize = 64;
const REGISTER: &str = "register";
const SIGN_IN: &str = "sign_in";
const SECOND_FACTOR: &str = "second_factor";
const REFUSED: &str = "the passkey was refused; sign in again";
const OFF: &str = "passkeys are off: set passkey_rp_id (the issuer and app_url are IP addresses)";

/// The relying party passkeys are registered with: its id (a domain) and
/// the origins ceremonies may come from.
pub fn relying_party(rp_id: &str, origins: &[String], name: &str) -> Result<Webauthn, String> {
    let urls = origins
        .iter()
        .map(|o| Url::parse(o).map_err(|e| format!("{o}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let (first, rest) = urls
        .split_first()
        .ok_or_else(|| format!("no origin on {rp_id}: set passkey_origins"))?;
    let mut builder = WebauthnBuilder::new(rp_id, first)
        .map_err(|e| format!("{rp_id} does not cover {first}: {e}"))?
        .rp_name(name);
    for url in rest {
        builder = builder.append_allowed_origin(url);
    }
    builder.build().map_err(|e| e.to_string())
}

/// What a client passes to `navigator.credentials.create()` or `.get()`,
/// and the token that names the ceremony when its answer comes back.
#[derive(Debug, Clone)]
pub struct Ceremony {
    pub token: String,
    /// `{"publicKey": …}`, binary fields in base64url.
    pub options: Value,
}

impl Auth {
    fn webauthn(&self) -> Result<&Webauthn, AuthError> {
        self.webauthn
            .as_ref()
            .ok_or_else(|| AuthError::InvalidRequest(OFF.into()))
    }

    /// The caller's passkeys.
    pub async fn passkeys(&self, caller: &Authenticated) -> Result<Vec<PasskeyRecord>, AuthError> {
        Ok(self.store.passkeys(&caller.record.id).await?)
    }

    /// Starts registering a passkey for the caller (needs a recent proof):
    /// a discoverable credential with user verification, not one the user
    /// has already.
    pub async fn passkey_registration(
        &self,
        caller: &Authenticated,
    ) -> Result<Ceremony, AuthError> {
        self.require_recent_auth(caller).await?;
        let webauthn = self.webauthn()?;
        let user = &caller.record;
        let existing = self.store.passkeys(&user.id).await?;
        if existing.len() >= MAX_PASSKEYS {
            return Err(AuthError::InvalidRequest(format!(
                "an account holds at most {MAX_PASSKEYS} passkeys; remove one first"
            )));
        }
        let exclude = existing
            .iter()
            .filter_map(|p| credential(p).ok())
            .map(|k| k.cred_id().clone())
            .collect();
        let name = user.name.as_deref().unwrap_or(&user.email);
        let (options, state) = webauthn
            .start_passkey_registration(handle(user)?, &user.email, name, Some(exclude))
            .map_err(internal)?;
        // Signing in without typing the address needs the credential kept
        // on the authenticator.
        let mut options = serde_json::to_value(options).map_err(internal)?;
        options["publicKey"]["authenticatorSelection"]["residentKey"] = "required".into();
        options["publicKey"]["authenticatorSelection"]["requireResidentKey"] = true.into();
        self.ceremony(Some(&user.id), REGISTER, &state, &options)
            .await
    }

    /// Finishes a registration with the authenticator's answer.
    pub async fn register_passkey(
        &self,
        caller: &Authenticated,
        token: &str,
        answer: &Value,
        name: Option<&str>,
        client: &Client,
    ) -> Result<PasskeyRecord, AuthError> {
        let webauthn = self.webauthn()?;
        let user = &caller.record;
        let state: PasskeyRegistration = self.take(token, REGISTER, Some(&user.id)).await?;
        let answer: RegisterPublicKeyCredential = parse(answer)?;
        let passkey = webauthn
            .finish_passkey_registration(&answer, &state)
            .map_err(|e| {
                AuthError::InvalidRequest(format!("the authenticator's answer was refused: {e}"))
            })?;
        let name = match name {
            Some(n) => passkey_name(n)?,
            None => client
                .user_agent
                .as_deref()
                .and_then(device_name)
                .unwrap_or_else(|| "Passkey".to_string()),
        };
        let mut record = PasskeyRecord {
            id: base64url(passkey.cred_id()),
            user_id: user.id.clone(),
            name,
            credential: String::new(),
            counter: 0,
            backup_eligible: false,
            backup_state: false,
            created_at: self.now(),
            last_used_at: None,
        };
        store_credential(&mut record, &passkey)?;
        match self.store.insert_passkey(&record).await {
            Err(StoreError::Conflict) => Err(AuthError::InvalidRequest(
                "this passkey is registered already".into(),
            )),
            other => other.map_err(AuthError::from),
        }?;
        let detail = Some(format!("passkey {}", record.name));
        self.audit_detail(
            EventKind::PasskeyAdded,
            Some(&user.id),
            None,
            client,
            detail,
        )
        .await;
        Ok(record)
    }

    pub async fn rename_passkey(
        &self,
        caller: &Authenticated,
        id: &str,
        name: &str,
    ) -> Result<(), AuthError> {
        let name = passkey_name(name)?;
        match self
            .store
            .rename_passkey(&caller.record.id, id, &name)
            .await?
        {
            true => Ok(()),
            false => Err(AuthError::NotFound),
        }
    }

    /// Removes one of the caller's passkeys (needs a recent proof).
    pub async fn remove_passkey(
        &self,
        caller: &Authenticated,
        id: &str,
        client: &Client,
    ) -> Result<(), AuthError> {
        self.require_recent_auth(caller).await?;
        let user = &caller.record;
        if !self.store.delete_passkey(&user.id, id).await? {
            return Err(AuthError::NotFound);
        }
        let detail = Some(format!("passkey {id}"));
        self.audit_detail(
            EventKind::PasskeyRemoved,
            Some(&user.id),
            None,
            client,
            detail,
        )
        .await;
        Ok(())
    }

    /// Starts a sign-in with a passkey alone: the authenticator offers the
    /// credentials it holds for this relying party.
    pub async fn passkey_sign_in(&self) -> Result<Ceremony, AuthError> {
        let (mut options, state) = self
            .webauthn()?
            .start_discoverable_authentication()
            .map_err(internal)?;
        // A plain (modal) request: the page decides whether to use autofill.
        options.mediation = None;
        self.ceremony(None, SIGN_IN, &state, &options).await
    }

    /// Finishes a passkey sign-in: a new session for the passkey's owner. A
    /// `device_token` of an earlier sign-in to the account marks the device
    /// as known (no new-device notice), as for a password sign-in.
    pub async fn sign_in_with_passkey(
        &self,
        token: &str,
        answer: &Value,
        device_token: Option<&str>,
        client: &Client,
    ) -> Result<TokenPair, AuthError> {
        let webauthn = self.webauthn()?;
        let state: DiscoverableAuthentication = self.take(token, SIGN_IN, None).await?;
        let answer: PublicKeyCredential = parse(answer)?;
        let (handle_of_answer, cred_id) = webauthn
            .identify_discoverable_authentication(&answer)
            .map_err(|_| AuthError::InvalidGrant(REFUSED))?;
        let id = base64url(cred_id);
        let record = self
            .store
            .passkey(&id)
            .await?
            .ok_or(AuthError::InvalidGrant(REFUSED))?;
        let user = self
            .store
            .user_by_id(&record.user_id)
            .await?
            .filter(|u| !u.disabled)
            .ok_or(AuthError::InvalidGrant(REFUSED))?;
        if handle(&user)? != handle_of_answer {
            return Err(AuthError::InvalidGrant(REFUSED));
        }
        let key = credential(&record)?;
        let result = webauthn.finish_discoverable_authentication_v2(&answer, state, &key);
        let amr = self
            .passkey_used(&user, record, key, result, client)
            .await?;
        let known = device_token.filter(|t| self.device_key.check(t, &user.id).is_some());
        self.sign_in(&user, known.is_some(), known, &format!("{amr} mfa"), client)
            .await
    }

    /// Options for the second step of a password sign-in with one of the
    /// user's passkeys, for the challenge `mfa_token`.
    pub async fn passkey_second_factor(&self, mfa_token: &str) -> Result<Ceremony, AuthError> {
        let webauthn = self.webauthn()?;
        let user_id = self.challenged_user(mfa_token).await?;
        let keys: Vec<Passkey> = self
            .store
            .passkeys(&user_id)
            .await?
            .iter()
            .filter_map(|p| credential(p).ok())
            .collect();
        if keys.is_empty() {
            return Err(AuthError::InvalidRequest(
                "this account has no passkey; use a code".into(),
            ));
        }
        let (options, state) = webauthn
            .start_passkey_authentication(&keys)
            .map_err(internal)?;
        self.ceremony(Some(&user_id), SECOND_FACTOR, &state, &options)
            .await
    }

    /// Checks a passkey answer as the second factor of `user`; the `amr`
    /// value it proves.
    pub(super) async fn prove_passkey(
        &self,
        user: &UserRecord,
        token: &str,
        answer: &Value,
        client: &Client,
    ) -> Result<&'static str, AuthError> {
        let webauthn = self.webauthn()?;
        let state: PasskeyAuthentication = self.take(token, SECOND_FACTOR, Some(&user.id)).await?;
        let answer: PublicKeyCredential = parse(answer)?;
        let id = answer.id.clone();
        let record = self
            .store
            .passkey(&id)
            .await?
            .filter(|p| p.user_id == user.id)
            .ok_or(AuthError::WrongCode)?;
        let key = credential(&record)?;
        let result = webauthn.finish_passkey_authentication(&answer, &state);
        self.passkey_used(user, record, key, result, client).await
    }

    /// Records the outcome of a passkey assertion: the new counter and
    /// flags, or, for a counter that went back, a suspected clone.
    async fn passkey_used(
        &self,
        user: &UserRecord,
        mut record: PasskeyRecord,
        mut key: Passkey,
        result: Result<webauthn_rs::prelude::AuthenticationResult, WebauthnError>,
        client: &Client,
    ) -> Result<&'static str, AuthError> {
        let result = match result {
            Ok(r) => r,
            Err(WebauthnError::CredentialPossibleCompromise) => {
                let detail = Some(format!("passkey {} ({})", record.name, record.id));
                let kind = EventKind::PasskeyCloneSuspected;
                self.audit_detail(kind, Some(&user.id), None, client, detail)
                    .await;
                tracing::warn!(user_id = %user.id, passkey = %record.id, "passkey signature counter went back: clone suspected");
                return Err(AuthError::InvalidGrant(
                    "this passkey's signature counter went back, as a cloned authenticator's does; it was refused",
                ));
            }
            Err(_) => return Err(AuthError::InvalidGrant(REFUSED)),
        };
        key.update_credential(&result);
        store_credential(&mut record, &key)?;
        record.counter = i64::from(result.counter());
        record.last_used_at = Some(self.now());
        if !self.store.use_passkey(&record).await? {
            return Err(AuthError::InvalidGrant(REFUSED));
        }
        Ok(match record.backup_eligible {
            true => "swk",
            false => "hwk",
        })
    }

    /// The user a live sign-in challenge is for.
    async fn challenged_user(&self, mfa_token: &str) -> Result<String, AuthError> {
        self.store
            .try_challenge(
                &digest(mfa_token),
                self.now(),
                super::mfa::CHALLENGE_ATTEMPTS,
            )
            .await?
            .map(|c| c.user_id)
            .ok_or(AuthError::InvalidGrant(super::mfa::BAD_CHALLENGE))
    }

    async fn ceremony(
        &self,
        user_id: Option<&str>,
        purpose: &str,
        state: &impl serde::Serialize,
        options: &impl serde::Serialize,
    ) -> Result<Ceremony, AuthError> {
        let token = random_b64(32)?;
        let record = CeremonyRecord {
            digest: digest(&token),
            user_id: user_id.map(str::to_string),
            purpose: purpose.to_string(),
            state: serde_json::to_string(state).map_err(internal)?,
            expires_at: self.now() + CEREMONY_TTL,
        };
        self.store.insert_ceremony(&record).await?;
        Ok(Ceremony {
            token,
            options: serde_json::to_value(options).map_err(internal)?,
        })
    }

    /// The state of a ceremony, taken once; for `user_id`'s when given.
    async fn take<S: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        purpose: &str,
        user_id: Option<&str>,
    ) -> Result<S, AuthError> {
        let gone = || {
            AuthError::InvalidRequest(
                "the passkey request is unknown, expired or finished; start again".into(),
            )
        };
        let found = self
            .store
            .take_ceremony(&digest(token), purpose)
            .await?
            .filter(|c| c.expires_at > self.now() && c.user_id.as_deref() == user_id)
            .ok_or_else(gone)?;
        serde_json::from_str(&found.state).map_err(internal)
    }
}

/// A passkey's name as given, trimmed: 1 to [`MAX_NAME`] characters.
fn passkey_name(name: &str) -> Result<String, AuthError> {
    let name = name.trim();
    match name.is_empty() || name.chars().count() > MAX_NAME {
        true => Err(AuthError::InvalidRequest(format!(
            "a passkey's name has 1 to {MAX_NAME} characters"
        ))),
        false => Ok(name.to_string()),
    }
}

/// The WebAuthn user handle of a user: their id, a UUID.
fn handle(user: &UserRecord) -> Result<Uuid, AuthError> {
    Uuid::parse_str(&user.id).map_err(internal)
}

fn credential(record: &PasskeyRecord) -> Result<Passkey, AuthError> {
    serde_json::from_str(&record.credential).map_err(internal)
}

/// Keeps `key` in `record`, with the flags people see.
fn store_credential(record: &mut PasskeyRecord, key: &Passkey) -> Result<(), AuthError> {
    let json = serde_json::to_value(key).map_err(internal)?;
    let flag = |name: &str| json["cred"][name].as_bool().unwrap_or(false);
    record.backup_eligible = flag("backup_eligible");
    record.backup_state = flag("backup_state");
    record.credential = json.to_string();
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(answer: &Value) -> Result<T, AuthError> {
    T::deserialize(answer).map_err(|e| {
        AuthError::InvalidRequest(format!("`credential` is not a WebAuthn answer: {e}"))
    })
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn internal(e: impl std::fmt::Display) -> AuthError {
    AuthError::Internal(format!("passkeys: {e}"))
}
