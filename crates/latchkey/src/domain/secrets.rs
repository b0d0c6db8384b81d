//! The master key and what is derived from it: sealing of signing keys at rest
//! (AES-256-GCM) and the refresh-token MAC key. The master key file is created
//! with mode 0600 and never logged.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hkdf;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret, SecretString};

pub const MASTER_KEY_FILE: &str = "master.key";

/// What can go wrong with the master key and what it protects.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("master key is not valid base64")]
    NotBase64,
    #[error("master key must be 32 bytes")]
    WrongLength,
    #[error(
        "master key file {path} can be read by other users; make it private with `chmod 600 {path}`"
    )]
    Exposed { path: PathBuf },
    #[error("master key file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: Box<SecretError>,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sealing failed")]
    Seal,
    #[error("sealed value is malformed")]
    Malformed,
    #[error("cannot decrypt a signing key: wrong master key?")]
    Open,
    #[error("system random generator failed")]
    Random,
}

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
    pub fn from_base64(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|_| SecretError::NotBase64)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretError::WrongLength)?;
        Ok(Self(key))
    }

    /// The configured key, or the one in `data_dir`, created on first use.
    pub fn load_or_create(
        configured: Option<&SecretString>,
        data_dir: &Path,
    ) -> Result<Self, SecretError> {
        if let Some(text) = configured {
            return Self::from_base64(text.expose_secret());
        }
        let path = data_dir.join(MASTER_KEY_FILE);
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| SecretError::Io {
                action,
                path,
                source,
            }
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&path)
                    .map_err(io("reading", &path))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(SecretError::Exposed { path });
                }
                return Self::from_base64(&text).map_err(|e| SecretError::File {
                    path,
                    source: Box::new(e),
                });
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("reading", &path)(e));
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
            .map_err(io("creating", &path))?;
        file.write_all(STANDARD.encode(key).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io("writing", &path))?;
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
    pub fn seal(&self, label: &str, plain: &[u8]) -> Result<Vec<u8>, SecretError> {
        let key = RandomizedNonceKey::new(&AES_256_GCM, &self.derive("signing-key-seal"))
            .map_err(|_| SecretError::Seal)?;
        let mut body = plain.to_vec();
        let nonce = key
            .seal_in_place_append_tag(Aad::from(label.as_bytes()), &mut body)
            .map_err(|_| SecretError::Seal)?;
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Reverses [`seal`](Self::seal); fails on a wrong key or label.
    pub fn open(&self, label: &str, sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < NONCE_LEN {
            return Err(SecretError::Malformed);
        }
        let key = RandomizedNonceKey::new(&AES_256_GCM, &self.derive("signing-key-seal"))
            .map_err(|_| SecretError::Open)?;
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Malformed)?;
        let mut body = body.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(label.as_bytes()), &mut body)
            .map_err(|_| SecretError::Open)?;
        Ok(plain.to_vec())
    }
}

/// Fills `buf` from the operating system's CSPRNG.
pub fn random(buf: &mut [u8]) -> Result<(), SecretError> {
    aws_lc_rs::rand::fill(buf).map_err(|_| SecretError::Random)
}

/// `n` random bytes as base64url.
pub fn random_b64(n: usize) -> Result<String, SecretError> {
    let mut buf = vec![0u8; n];
    random(&mut buf)?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}
