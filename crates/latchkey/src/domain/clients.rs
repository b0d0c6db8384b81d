//! Resource servers: their credentials, token introspection (RFC 7662) and
//! the revocation feed they follow to refuse revoked access tokens within
//! seconds without calling the server per request.

use aws_lc_rs::digest;
use latchkey_verify::Claims;
use latchkey_verify::wire::{RevocationEntry, RevocationPage};
use subtle::ConstantTimeEq;

use super::events::EventKind;
use super::secrets::random_b64;
use super::{Actor, Auth, AuthError, ResourceClient};
use crate::store::{ClientRecord, RevocationRecord};

/// Prefix of client secrets, so secret scanners can find leaked ones.
pub const SECRET_PREFIX: &str = "lk_cs_";
/// Longest page of the feed.
pub const MAX_PAGE: i64 = 10_000;

fn secret_hash(secret: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, secret.as_bytes())
        .as_ref()
        .to_vec()
}

impl Auth {
    /// Creates a client (an admin client when `admin`: it may call the admin
    /// API); the secret is returned once and only its hash kept.
    pub async fn add_client(
        &self,
        name: &str,
        admin: bool,
        actor: &Actor,
    ) -> Result<(ResourceClient, String), AuthError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(AuthError::InvalidRequest(
                "a client name is 1 to 100 printable characters".into(),
            ));
        }
        let secret = format!("{SECRET_PREFIX}{}", random_b64(32)?);
        let client = ClientRecord {
            id: format!("lk_client_{}", random_b64(12)?),
            name: name.to_string(),
            secret_hash: secret_hash(&secret),
            created_at: self.now(),
            admin,
        };
        self.store.insert_client(&client).await?;
        let role = if admin { "admin client" } else { "client" };
        let detail = Some(format!("{role} {} ({})", client.id, client.name));
        self.audit_admin(actor, EventKind::ClientAdded, None, None, detail)
            .await;
        Ok((ResourceClient::from(&client), secret))
    }

    pub async fn list_clients(&self) -> Result<Vec<ResourceClient>, AuthError> {
        let clients = self.store.list_clients().await?;
        Ok(clients.iter().map(ResourceClient::from).collect())
    }

    pub async fn remove_client(&self, id: &str, actor: &Actor) -> Result<(), AuthError> {
        if !self.store.delete_client(id).await? {
            return Err(AuthError::NotFound);
        }
        let detail = Some(format!("client {id}"));
        self.audit_admin(actor, EventKind::ClientRemoved, None, None, detail)
            .await;
        Ok(())
    }

    /// Checks a client's credentials in constant time; an unknown id costs
    /// the same comparison.
    pub async fn authenticate_client(
        &self,
        id: &str,
        secret: &str,
    ) -> Result<ResourceClient, AuthError> {
        client_matches(self.store.client(id).await?, secret)
    }

    /// Introspection for the client `id`: the claims of an active access
    /// token, or `None` for anything else (expired, revoked, forged, a
    /// refresh token), and only to a client whose credentials hold. The
    /// client and the token's state are read together. No token is
    /// `invalid_request`, once the client is known.
    pub async fn introspect_for_client(
        &self,
        id: &str,
        secret: &str,
        token: Option<&str>,
    ) -> Result<Option<Claims>, AuthError> {
        let Some(token) = token else {
            self.authenticate_client(id, secret).await?;
            return Err(AuthError::InvalidRequest("token is required".into()));
        };
        let now = self.now();
        let (claims, kid) = match self.verify_access_token(token, now).await {
            Ok(verified) => verified,
            Err(AuthError::InvalidToken(_)) => {
                self.authenticate_client(id, secret).await?;
                return Ok(None);
            }
            Err(other) => return Err(other),
        };
        let (state, client) = self
            .store
            .access_state_and_client(&claims.sub, &claims.sid, &kid, id)
            .await?;
        client_matches(client, secret)?;
        match self.admit(claims, &kid, state, now) {
            Ok(caller) => Ok(Some(caller.claims)),
            Err(AuthError::InvalidToken(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// Seconds the feed keeps revocations: at least an access token's lifetime.
    pub fn revocation_retention(&self) -> i64 {
        (self.config.access_ttl + self.config.leeway).max(24 * 3600)
    }

    /// One page of the revocation feed after `after` (0: from the oldest kept).
    pub async fn revocation_page(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<RevocationPage, AuthError> {
        if after < 0 || !(1..=MAX_PAGE).contains(&limit) {
            return Err(AuthError::InvalidRequest(format!(
                "after must be ≥ 0 and limit 1 to {MAX_PAGE}"
            )));
        }
        if after > 0
            && self
                .store
                .oldest_revocation()
                .await?
                .is_some_and(|oldest| after + 1 < oldest)
        {
            return Err(AuthError::CursorExpired);
        }
        let mut rows = self.store.revocations_after(after, limit + 1).await?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        // Cursors are in commit order on both backends (SQLite has one
        // writer; PostgreSQL hands out positions under a row lock held to
        // commit), so no entry can appear later below a cursor read here.
        let next_cursor = rows.last().map_or(after, |r| r.cursor);
        Ok(RevocationPage {
            has_more: more,
            entries: rows.into_iter().filter_map(entry).collect(),
            next_cursor,
            retention_seconds: self.revocation_retention(),
        })
    }
}

/// The client, if `secret` is its secret: compared in constant time, and an
/// unknown client costs the same comparison.
fn client_matches(client: Option<ClientRecord>, secret: &str) -> Result<ResourceClient, AuthError> {
    let presented = secret_hash(secret);
    let expected = client
        .as_ref()
        .map_or(&[0u8; 32][..], |c| &c.secret_hash[..]);
    let matches: bool = presented.ct_eq(expected).into();
    match client {
        Some(c) if matches => Ok(ResourceClient::from(&c)),
        _ => Err(AuthError::InvalidClient),
    }
}

fn entry(r: RevocationRecord) -> Option<RevocationEntry> {
    if let ("key", Some(kid)) = (r.kind.as_str(), &r.kid) {
        return Some(RevocationEntry::Key {
            cursor: r.cursor,
            kid: kid.clone(),
            revoked_at: r.revoked_at,
        });
    }
    match (r.kind.as_str(), r.session_id, r.not_before) {
        ("session", Some(sid), _) => Some(RevocationEntry::Session {
            cursor: r.cursor,
            sid,
            sub: r.user_id,
            revoked_at: r.revoked_at,
        }),
        ("user", _, Some(not_before)) => Some(RevocationEntry::User {
            cursor: r.cursor,
            sub: r.user_id,
            not_before,
            revoked_at: r.revoked_at,
        }),
        _ => None,
    }
}
