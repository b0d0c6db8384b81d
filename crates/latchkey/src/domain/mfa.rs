//! Second factors: TOTP (RFC 6238: HMAC-SHA-1, 6 digits, 30-second steps,
//! one step of drift either way) with single-use recovery codes, and the
//! two-step sign-in they bring.
//!
//! - The secret is sealed under the master key; it leaves the server once,
//!   at enrolment (as text, an `otpauth://` URI and a QR code), and the
//!   factor counts only once a first code proves the app holds it.
//! - A code is accepted once: the store keeps the highest time step
//!   accepted and moves it by compare-and-set, whichever instance asks.
//! - A password that is right for an enrolled account yields a challenge,
//!   not a session: a random token, kept as its digest, valid for
//!   [`CHALLENGE_TTL`] seconds, [`CHALLENGE_ATTEMPTS`] codes and one success,
//!   and only from the device (user agent) that passed the password step.
//! - Wrong codes count against the account's own throttle key, whichever
//!   challenge, session or re-authentication they came with, so the daily
//!   ceiling bounds guesses per account (docs/security.md says the odds).
//! - Turning the factor off and new recovery codes need a recent proof of
//!   identity (step-up); recovery codes are random (50 bits) and kept as
//!   SHA-256 digests.

use qrcode::QrCode;
use qrcode::render::svg;
use serde_json::json;
use totp_rs::{Algorithm, Builder, Totp};

use super::events::EventKind;
use super::mail::{MailKind, Notice, digest};
use super::secrets::{random, random_b64};
use super::throttle::{Attempt, code_key};
use super::{Auth, AuthError, Authenticated, Client, TokenPair};
use crate::store::{ChallengeRecord, TotpRecord, UserRecord};

/// How long the second step of a sign-in may wait for its code.
pub const CHALLENGE_TTL: i64 = 300;
/// Codes one challenge may try.
pub const CHALLENGE_ATTEMPTS: i64 = 5;
/// Recovery codes made at a time.
pub const RECOVERY_CODES: usize = 10;
/// The `amr` of a session whose sign-in took a second factor.
pub const MFA_AMR: &str = "pwd otp mfa";

const SEAL_LABEL: &str = "totp-secret";
const SECRET_BYTES: usize = 20;
const STEP: u64 = 30;
/// Crockford's base 32, lower case: no i, l, o or u to misread.
const CODE_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
pub(super) const BAD_CHALLENGE: &str =
    "the sign-in challenge is invalid, expired or used up; sign in with the password again";

/// What an enrolment hands the user's authenticator app.
#[derive(Debug, Clone)]
pub struct TotpEnrolment {
    /// The secret in base 32, for typing in.
    pub secret: String,
    pub otpauth_uri: String,
    /// The URI as a QR code, an SVG document.
    pub qr_svg: String,
}

/// A user's second factors, as they may see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaStatus {
    pub totp: bool,
    /// Enrolled, waiting for its first code.
    pub totp_pending: bool,
    pub recovery_codes_left: i64,
}

/// What the password step of an enrolled account answers.
#[derive(Debug, Clone)]
pub struct MfaChallenge {
    pub token: String,
    pub expires_in: i64,
    /// What the second step takes: `totp`, `recovery_code`, `passkey`.
    pub methods: Vec<&'static str>,
}

/// How a sign-in ended.
#[derive(Debug, Clone)]
pub enum SignIn {
    Done(TokenPair),
    /// The password was right; a second factor is owed.
    SecondFactor(MfaChallenge),
}

/// A second factor presented.
#[derive(Debug, Clone, Copy)]
pub enum Proof<'a> {
    /// A code from the authenticator app.
    Totp(&'a str),
    RecoveryCode(&'a str),
    /// A passkey's answer to the ceremony `ceremony` started for this sign-in.
    Passkey {
        ceremony: &'a str,
        answer: &'a serde_json::Value,
    },
}

impl Auth {
    /// The caller's second factors.
    pub async fn mfa_status(&self, caller: &Authenticated) -> Result<MfaStatus, AuthError> {
        let factors = self.store.factors(&caller.record.id).await?;
        Ok(MfaStatus {
            totp: factors.totp_on(),
            totp_pending: factors.totp.is_some() && !factors.totp_on(),
            recovery_codes_left: factors.recovery_codes_left,
        })
    }

    /// Starts a TOTP enrolment: a new secret, unconfirmed until
    /// [`confirm_totp`](Self::confirm_totp). Replaces an unconfirmed one;
    /// refused while a confirmed factor exists.
    pub async fn enrol_totp(&self, caller: &Authenticated) -> Result<TotpEnrolment, AuthError> {
        self.require_recent_auth(caller).await?;
        let user = &caller.record;
        let mut secret = vec![0u8; SECRET_BYTES];
        random(&mut secret)?;
        let sealed = self.master.seal(SEAL_LABEL, &secret)?;
        if !self.store.enrol_totp(&user.id, &sealed, self.now()).await? {
            return Err(AuthError::MfaEnabled);
        }
        let totp = self.totp(secret, Some(&user.email))?;
        let otpauth_uri = totp
            .to_url()
            .map_err(|e| AuthError::Internal(format!("otpauth URI: {e}")))?;
        let qr_svg = QrCode::new(otpauth_uri.as_bytes())
            .map_err(|e| AuthError::Internal(format!("QR code: {e}")))?
            .render::<svg::Color<'_>>()
            .min_dimensions(200, 200)
            .build();
        Ok(TotpEnrolment {
            secret: totp.secret().to_base32(),
            otpauth_uri,
            qr_svg,
        })
    }

    /// Confirms an enrolment with a first code; returns the recovery codes,
    /// shown this once.
    pub async fn confirm_totp(
        &self,
        caller: &Authenticated,
        code: &str,
        client: &Client,
    ) -> Result<Vec<String>, AuthError> {
        let user = &caller.record;
        let factors = self.store.factors(&user.id).await?;
        if factors.totp_on() {
            return Err(AuthError::MfaEnabled);
        }
        let Some(totp) = factors.totp else {
            return Err(AuthError::InvalidRequest(
                "no enrolment is waiting for a code; start one with POST /v1/mfa/totp".into(),
            ));
        };
        let (codes, digests) = recovery_codes()?;
        let confirming = Some((digests.as_slice(), self.now()));
        let attempt = self.begin_code_attempt(&user.id, client).await?;
        let check = self.accept_totp(&user.id, Some(&totp), code, confirming);
        if !self.judge(attempt, check).await? {
            self.code_failed(user, Some(&caller.claims.sid), client)
                .await;
            return Err(AuthError::WrongCode);
        }
        self.mfa_changed(user, client, EventKind::MfaEnabled, "enabled")
            .await;
        Ok(codes)
    }

    /// Turns TOTP off (and drops the recovery codes); needs a recent proof.
    pub async fn disable_totp(
        &self,
        caller: &Authenticated,
        client: &Client,
    ) -> Result<(), AuthError> {
        self.require_recent_auth(caller).await?;
        let user = &caller.record;
        if !self.store.remove_totp(&user.id).await? {
            return Err(AuthError::NotFound);
        }
        self.mfa_changed(user, client, EventKind::MfaDisabled, "disabled")
            .await;
        Ok(())
    }

    /// Replaces the recovery codes; needs a recent proof.
    pub async fn regenerate_recovery_codes(
        &self,
        caller: &Authenticated,
        client: &Client,
    ) -> Result<Vec<String>, AuthError> {
        self.require_recent_auth(caller).await?;
        let user = &caller.record;
        let (codes, digests) = recovery_codes()?;
        if !self
            .store
            .replace_recovery_codes(&user.id, &digests, self.now())
            .await?
        {
            return Err(AuthError::NotFound);
        }
        let kind = EventKind::RecoveryCodesRegenerated;
        self.mfa_changed(user, client, kind, "recovery_codes_regenerated")
            .await;
        Ok(codes)
    }

    /// Whether `user` must present a second factor after the password.
    pub(super) async fn needs_second_factor(&self, user: &UserRecord) -> Result<bool, AuthError> {
        Ok(self.store.factors(&user.id).await?.totp_on())
    }

    /// The challenge a right password for an enrolled account yields.
    pub(super) async fn challenge(
        &self,
        user: &UserRecord,
        known_device: bool,
        client: &Client,
    ) -> Result<MfaChallenge, AuthError> {
        let token = random_b64(32)?;
        let now = self.now();
        let record = ChallengeRecord {
            digest: digest(&token),
            user_id: user.id.clone(),
            credential_version: user.credential_version,
            created_at: now,
            expires_at: now + CHALLENGE_TTL,
            attempts: 0,
            user_agent: client.user_agent.clone(),
            known_device,
        };
        self.store.insert_challenge(&record).await?;
        let mut methods = vec!["totp", "recovery_code"];
        if self.webauthn.is_some() && !self.store.passkeys(&user.id).await?.is_empty() {
            methods.push("passkey");
        }
        Ok(MfaChallenge {
            token,
            expires_in: CHALLENGE_TTL,
            methods,
        })
    }

    /// The second step of a sign-in: the challenge and a code from the
    /// authenticator app or a recovery code start the session.
    pub async fn complete_sign_in(
        &self,
        challenge: &str,
        proof: Proof<'_>,
        client: &Client,
    ) -> Result<TokenPair, AuthError> {
        let key = digest(challenge);
        let now = self.now();
        let found = self
            .store
            .try_challenge(&key, now, CHALLENGE_ATTEMPTS)
            .await?
            .ok_or(AuthError::InvalidGrant(BAD_CHALLENGE))?;
        if found.user_agent != client.user_agent {
            // Someone else's device holds the token: it is spent.
            self.store.take_challenge(&key).await?;
            return Err(AuthError::InvalidGrant(BAD_CHALLENGE));
        }
        let user = self
            .store
            .user_by_id(&found.user_id)
            .await?
            .filter(|u| u.credential_version == found.credential_version && !u.disabled)
            .ok_or(AuthError::InvalidGrant(BAD_CHALLENGE))?;
        let amr = match proof {
            Proof::Passkey { ceremony, answer } => {
                let key = self.prove_passkey(&user, ceremony, answer, client).await?;
                format!("pwd {key} mfa")
            }
            _ if self.prove(&user, proof, None, client).await? => MFA_AMR.to_string(),
            _ => return Err(AuthError::WrongCode),
        };
        if !self.store.take_challenge(&key).await? {
            return Err(AuthError::InvalidGrant(BAD_CHALLENGE));
        }
        self.sign_in(&user, found.known_device, None, &amr, client)
            .await
    }

    /// Checks a second factor of `user` on the account's throttle; a wrong
    /// one is recorded. A recovery code is spent and reported.
    pub(super) async fn prove(
        &self,
        user: &UserRecord,
        proof: Proof<'_>,
        session_id: Option<&str>,
        client: &Client,
    ) -> Result<bool, AuthError> {
        if let Proof::Passkey { ceremony, answer } = proof {
            // Nothing to guess: no throttle, and a refusal is only a refusal.
            return Ok(self
                .prove_passkey(user, ceremony, answer, client)
                .await
                .is_ok());
        }
        let attempt = self.begin_code_attempt(&user.id, client).await?;
        let now = self.now();
        let check = async {
            match proof {
                Proof::Totp(code) => {
                    let factors = self.store.factors(&user.id).await?;
                    let totp = factors.totp.as_ref().filter(|_| factors.totp_on());
                    self.accept_totp(&user.id, totp, code, None).await
                }
                Proof::Passkey { .. } => Ok(false),
                Proof::RecoveryCode(code) => {
                    let Some(normal) = normalize_code(code) else {
                        return Ok(false);
                    };
                    Ok(self
                        .store
                        .use_recovery_code(&user.id, &digest(&normal), now)
                        .await?)
                }
            }
        };
        let proved = self.judge(attempt, check).await?;
        if !proved {
            self.code_failed(user, session_id, client).await;
        } else if let Proof::RecoveryCode(_) = proof {
            let kind = EventKind::RecoveryCodeUsed;
            self.mfa_changed(user, client, kind, "recovery_code_used")
                .await;
        }
        Ok(proved)
    }

    async fn begin_code_attempt(
        &self,
        user_id: &str,
        client: &Client,
    ) -> Result<Attempt, AuthError> {
        let ticket = self.hasher.ticket()?;
        let (attempt, _ticket) = self
            .begin_attempt(code_key(user_id), Some(user_id), client, ticket)
            .await?;
        Ok(attempt)
    }

    async fn code_failed(&self, user: &UserRecord, session_id: Option<&str>, client: &Client) {
        self.audit(EventKind::MfaFailed, Some(&user.id), session_id, client)
            .await;
    }

    /// Records a change to a user's second factors and tells them.
    async fn mfa_changed(
        &self,
        user: &UserRecord,
        client: &Client,
        kind: EventKind,
        change: &'static str,
    ) {
        self.audit(kind, Some(&user.id), None, client).await;
        self.tell_mfa_changed(user, client, change).await;
    }

    /// Mails the user the `second_factor` notice and sends `user.mfa_changed`.
    pub(super) async fn tell_mfa_changed(
        &self,
        user: &UserRecord,
        client: &Client,
        change: &'static str,
    ) {
        let left = self.store.factors(&user.id).await.ok();
        let values = vec![
            ("change", change.into()),
            (
                "codes_left",
                left.map(|f| f.recovery_codes_left).unwrap_or(0).into(),
            ),
        ];
        let notice = (Notice::SecondFactor, MailKind::SecondFactor);
        self.send_notice(user, client, notice, values).await;
        let data = json!({ "user_id": user.id, "change": change, "ip": client.ip });
        if let Err(e) = self
            .store
            .send(&self.news("user.mfa_changed", Some(&user.id), data))
            .await
        {
            tracing::warn!(error = %e, "queueing user.mfa_changed failed");
        }
    }

    /// Accepts `code` for `factor` once (its time step above every one
    /// accepted before, whichever instance asks); `confirming` as for
    /// [`Store::use_totp_step`](crate::store::Store::use_totp_step).
    async fn accept_totp(
        &self,
        user_id: &str,
        factor: Option<&TotpRecord>,
        code: &str,
        confirming: Option<(&[String], i64)>,
    ) -> Result<bool, AuthError> {
        let step = match factor {
            Some(f) => self.totp_step(f, code)?,
            None => None,
        };
        match step {
            Some(step) => Ok(self.store.use_totp_step(user_id, step, confirming).await?),
            None => Ok(false),
        }
    }

    /// The time step `code` is right for, if any, with one step of drift.
    fn totp_step(&self, factor: &TotpRecord, code: &str) -> Result<Option<i64>, AuthError> {
        let secret = self.master.open(SEAL_LABEL, &factor.secret)?;
        let totp = self.totp(secret, None)?;
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        let now = u64::try_from(self.now()).unwrap_or(0);
        Ok(totp
            .check(&code, now)
            .and_then(|step| i64::try_from(step).ok()))
    }

    fn totp(&self, secret: Vec<u8>, account: Option<&str>) -> Result<Totp, AuthError> {
        let mut builder = Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(6)
            .with_skew(1)
            .with_step_duration(STEP)
            .with_secret(secret);
        if let Some(account) = account {
            // otpauth labels take no colon.
            builder = builder
                .with_issuer(Some(self.mail.site().replace(':', " ")))
                .with_account_name(account.replace(':', " "));
        }
        builder
            .build()
            .map_err(|e| AuthError::Internal(format!("TOTP: {e}")))
    }
}

/// Fresh recovery codes (`xxxxx-xxxxx`) and their digests.
fn recovery_codes() -> Result<(Vec<String>, Vec<String>), AuthError> {
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    let mut digests = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let mut raw = [0u8; 10];
        random(&mut raw)?;
        let text: String = raw
            .iter()
            .map(|b| char::from(CODE_ALPHABET[usize::from(b % 32)]))
            .collect();
        digests.push(digest(&text));
        codes.push(format!("{}-{}", &text[..5], &text[5..]));
    }
    Ok((codes, digests))
}

/// A recovery code as typed, in its stored form: case, spaces and dashes do
/// not matter, nor the letters Crockford's alphabet reads as digits.
fn normalize_code(code: &str) -> Option<String> {
    let text: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c.to_ascii_lowercase() {
            'o' => '0',
            'i' | 'l' => '1',
            other => other,
        })
        .collect();
    (text.len() == 10 && text.bytes().all(|b| CODE_ALPHABET.contains(&b))).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_read_back_however_they_are_typed() {
        let (codes, digests) = recovery_codes().unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        for (code, stored) in codes.iter().zip(&digests) {
            assert_eq!(code.len(), 11);
            let typed = format!(" {} ", code.to_uppercase().replace('-', " "));
            assert_eq!(digest(&normalize_code(&typed).unwrap()), *stored);
        }
        assert_eq!(normalize_code("0O1Il-abcde").as_deref(), Some("00111abcde"));
        assert_eq!(normalize_code("abcde-fghj"), None);
        assert_eq!(normalize_code("abcde-fghju"), None);
    }
}
