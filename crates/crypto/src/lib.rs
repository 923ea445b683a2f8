//! Envelope encryption for everything the Calendar Service keeps secret:
//! AES-256-GCM under per-user data keys, which are themselves wrapped by a
//! versioned master key ([`MasterKeyring`]).
//!
//! Each ciphertext records the version of the key that sealed it and a random
//! 96-bit nonce; [`Aad`] binds it to the row and column it belongs to, so a
//! value copied elsewhere fails to open. Destroying a user's data keys makes
//! every ciphertext of theirs unreadable, backups included (crypto-shredding).
//!
//! This crate knows nothing of SQL, HTTP or configuration sources: callers
//! hand it key material and bytes. Key material is zeroised on drop and never
//! printed by `Debug`.
#![forbid(unsafe_code)]

mod keys;

pub use keys::{DataKey, MasterKey, MasterKeyring, WrappedDataKey, sealed_key_version};

/// What went wrong while handling keys or ciphertexts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A key is not 32 bytes of base64, or a key list is malformed.
    #[error("invalid key material: {0}")]
    InvalidKey(String),
    /// The keyring holds no key.
    #[error("the master keyring is empty")]
    EmptyKeyring,
    /// A ciphertext names a key version the caller does not hold.
    #[error("no key of version {0} is available")]
    UnknownKeyVersion(u32),
    /// A ciphertext is too short or of an unknown format.
    #[error("malformed ciphertext")]
    Malformed,
    /// Authentication failed: wrong key, wrong associated data, or tampering.
    #[error("ciphertext failed authentication")]
    Authentication,
}

/// Associated data: the place a ciphertext belongs to (table, column and the
/// row's key). Opening a ciphertext with any other place fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aad(Vec<u8>);

impl Aad {
    /// The place `table.column` of the row keyed by `row_key` parts.
    pub fn new(table: &str, column: &str, row_key: &[&str]) -> Self {
        // Length-prefix every part so that no two different places encode alike.
        let mut out = Vec::with_capacity(64);
        for part in [table, column].iter().chain(row_key) {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        Self(out)
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}
