//! The master key and what is derived from it: sealing of signing keys at rest
//! (AES-256-GCM) and the refresh-token MAC key. The master key file is created
//! with mode 0600 and never logged.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hkdf;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret, SecretString};

pub const MASTER_KEY_FILE: &str = "master.key";

/// 32 secret bytes shared by every instance of a deployment.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    /// Decodes a base64 (standard or URL-safe) 32-byte key.
    pub fn from_base64(text: &str) -> anyhow::Result<Self> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .context("master key is not valid base64")?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("master key must be 32 bytes"))?;
        Ok(Self(key))
    }

    /// The configured key, or the one in `data_dir`, created on first use.
    pub fn load_or_create(
        configured: Option<&SecretString>,
        data_dir: &Path,
    ) -> anyhow::Result<Self> {
        if let Some(text) = configured {
            return Self::from_base64(text.expose_secret());
        }
        let path = data_dir.join(MASTER_KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                return Self::from_base64(&text)
                    .with_context(|| format!("reading {}", path.display()));
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("reading {}", path.display()));
            }
            Err(_) => {}
        }
        let mut key = [0u8; 32];
        random(&mut key)?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        file.write_all(STANDARD.encode(key).as_bytes())?;
        file.sync_all()?;
        Ok(Self(key))
    }

    /// A 32-byte key for one purpose, so no two uses share key material.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"latchkey").extract(&self.0);
        let mut out = [0u8; 32];
        let info = [purpose.as_bytes()];
        // Expanding 32 bytes from SHA-256 HKDF cannot fail.
        if let Ok(okm) = prk.expand(&info, hkdf::HKDF_SHA256) {
            let _ = okm.fill(&mut out);
        }
        out
    }

    /// Encrypts `plain` bound to `label`; output is nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, label: &str, plain: &[u8]) -> anyhow::Result<Vec<u8>> {
        let key = RandomizedNonceKey::new(&AES_256_GCM, &self.derive("signing-key-seal"))
            .map_err(|_| anyhow::anyhow!("cannot build sealing key"))?;
        let mut body = plain.to_vec();
        let nonce = key
            .seal_in_place_append_tag(Aad::from(label.as_bytes()), &mut body)
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Reverses [`seal`](Self::seal); fails on a wrong key or label.
    pub fn open(&self, label: &str, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            bail!("sealed value too short");
        }
        let key = RandomizedNonceKey::new(&AES_256_GCM, &self.derive("signing-key-seal"))
            .map_err(|_| anyhow::anyhow!("cannot build sealing key"))?;
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| anyhow::anyhow!("bad nonce"))?;
        let mut body = body.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(label.as_bytes()), &mut body)
            .map_err(|_| anyhow::anyhow!("cannot decrypt a signing key: wrong master key?"))?;
        Ok(plain.to_vec())
    }
}

/// Fills `buf` from the operating system's CSPRNG.
pub fn random(buf: &mut [u8]) -> anyhow::Result<()> {
    aws_lc_rs::rand::fill(buf).map_err(|_| anyhow::anyhow!("system random generator failed"))
}

/// `n` random bytes as base64url.
pub fn random_b64(n: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; n];
    random(&mut buf)?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}
