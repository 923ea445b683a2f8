//! Master keys, data keys, and the sealed format.
//!
//! Sealed value layout: `[format = 1][key version: u32 BE][nonce: 12][ciphertext ‖ tag: 16]`.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore as _;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{Aad, CryptoError};

const FORMAT: u8 = 1;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;

/// 32 bytes of AES-256 key material, zeroised on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct KeyBytes([u8; KEY_LEN]);

impl KeyBytes {
    fn random() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let array: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::InvalidKey(format!("a key must be {KEY_LEN} bytes")))?;
        Ok(Self(array))
    }

    fn seal(&self, version: u32, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let cipher = Aes256Gcm::new(&self.0.into());
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        // Infallible: AES-GCM only fails for plaintexts over 64 GiB.
        #[allow(clippy::expect_used)]
        let sealed = cipher
            .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad })
            .expect("plaintext within AES-GCM limits");
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.push(FORMAT);
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let (_, nonce, body) = split(sealed)?;
        let cipher = Aes256Gcm::new(&self.0.into());
        cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: body, aad })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Authentication)
    }
}

fn split(sealed: &[u8]) -> Result<(u32, [u8; NONCE_LEN], &[u8]), CryptoError> {
    if sealed.len() < HEADER_LEN + TAG_LEN || sealed[0] != FORMAT {
        return Err(CryptoError::Malformed);
    }
    let version = u32::from_be_bytes([sealed[1], sealed[2], sealed[3], sealed[4]]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[5..HEADER_LEN]);
    Ok((version, nonce, &sealed[HEADER_LEN..]))
}

/// The version of the key that sealed `sealed` (a data key's or a master key's).
pub fn sealed_key_version(sealed: &[u8]) -> Result<u32, CryptoError> {
    split(sealed).map(|(version, _, _)| version)
}

/// One version of the master key: the key-encryption key.
#[derive(Clone)]
pub struct MasterKey(KeyBytes);

impl MasterKey {
    /// A fresh random master key.
    pub fn generate() -> Self {
        Self(KeyBytes::random())
    }

    /// Decodes a base64 master key of 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| CryptoError::InvalidKey("a master key must be base64".into()))?,
        );
        KeyBytes::from_slice(&bytes).map(Self)
    }

    /// The key as base64, for `keygen` to print once.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.0.0))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// All master key versions in service: the newest wraps, every one unwraps.
#[derive(Clone)]
pub struct MasterKeyring {
    keys: BTreeMap<u32, MasterKey>,
}

impl MasterKeyring {
    /// A keyring from `(version, key)` pairs; the highest version is active.
    pub fn new(keys: impl IntoIterator<Item = (u32, MasterKey)>) -> Result<Self, CryptoError> {
        let mut map = BTreeMap::new();
        for (version, key) in keys {
            if version == 0 {
                return Err(CryptoError::InvalidKey("key versions start at 1".into()));
            }
            if map.insert(version, key).is_some() {
                return Err(CryptoError::InvalidKey(format!("key version {version} appears twice")));
            }
        }
        if map.is_empty() {
            return Err(CryptoError::EmptyKeyring);
        }
        Ok(Self { keys: map })
    }

    /// Parses `VERSION:BASE64` entries separated by commas or newlines
    /// (blank lines and `#` comments allowed), e.g. `2:abc…=,1:def…=`.
    pub fn parse(spec: &str) -> Result<Self, CryptoError> {
        let mut keys = Vec::new();
        for entry in spec.split([',', '\n']).map(str::trim) {
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let (version, key) = entry
                .split_once(':')
                .ok_or_else(|| CryptoError::InvalidKey("each master key must be written VERSION:BASE64".into()))?;
            let version: u32 = version
                .trim()
                .parse()
                .map_err(|_| CryptoError::InvalidKey("a master key version must be a positive integer".into()))?;
            keys.push((version, MasterKey::from_base64(key)?));
        }
        Self::new(keys)
    }

    /// The version new data keys are wrapped with.
    pub fn active_version(&self) -> u32 {
        // Infallible: `new` refuses an empty keyring.
        self.keys.keys().next_back().copied().unwrap_or_default()
    }

    /// Every version held, oldest first.
    pub fn versions(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    /// Wraps a data key with the active master key, bound to `aad` (the key's owner).
    pub fn wrap(&self, key: &DataKey, aad: &Aad) -> WrappedDataKey {
        let version = self.active_version();
        let master = &self.keys[&version];
        WrappedDataKey {
            master_version: version,
            bytes: master.0.seal(version, &key.key.0, aad.as_bytes()),
        }
    }

    /// Unwraps a data key of version `data_key_version` with whichever master version wrapped it.
    pub fn unwrap(&self, wrapped: &[u8], data_key_version: u32, aad: &Aad) -> Result<DataKey, CryptoError> {
        let master_version = sealed_key_version(wrapped)?;
        let master = self
            .keys
            .get(&master_version)
            .ok_or(CryptoError::UnknownKeyVersion(master_version))?;
        let bytes = master.0.open(wrapped, aad.as_bytes())?;
        Ok(DataKey {
            version: data_key_version,
            key: KeyBytes::from_slice(&bytes)?,
        })
    }

    /// Re-wraps a wrapped data key under the active master version
    /// (for `rotate-keys`); the data key itself, and so every ciphertext, is unchanged.
    pub fn rewrap(&self, wrapped: &[u8], data_key_version: u32, aad: &Aad) -> Result<WrappedDataKey, CryptoError> {
        let key = self.unwrap(wrapped, data_key_version, aad)?;
        Ok(self.wrap(&key, aad))
    }
}

impl fmt::Debug for MasterKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKeyring")
            .field("versions", &self.versions())
            .finish()
    }
}

/// A data key as stored: sealed by master key `master_version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedDataKey {
    /// The master key version that wrapped it.
    pub master_version: u32,
    /// The sealed key.
    pub bytes: Vec<u8>,
}

/// One user's data-encryption key.
#[derive(Clone)]
pub struct DataKey {
    version: u32,
    key: KeyBytes,
}

impl DataKey {
    /// A fresh random data key with the given version.
    pub fn generate(version: u32) -> Self {
        Self {
            version,
            key: KeyBytes::random(),
        }
    }

    /// This key's version, recorded in every ciphertext it seals.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Encrypts `plaintext` for the place `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &Aad) -> Vec<u8> {
        self.key.seal(self.version, plaintext, aad.as_bytes())
    }

    /// Decrypts a value sealed by this key for the place `aad`.
    pub fn open(&self, sealed: &[u8], aad: &Aad) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let version = sealed_key_version(sealed)?;
        if version != self.version {
            return Err(CryptoError::UnknownKeyVersion(version));
        }
        self.key.open(sealed, aad.as_bytes())
    }

    /// Encrypts a text.
    pub fn seal_str(&self, plaintext: &str, aad: &Aad) -> Vec<u8> {
        self.seal(plaintext.as_bytes(), aad)
    }

    /// Decrypts a text sealed by [`DataKey::seal_str`].
    pub fn open_string(&self, sealed: &[u8], aad: &Aad) -> Result<String, CryptoError> {
        let bytes = self.open(sealed, aad)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| CryptoError::Malformed)
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("version", &self.version)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aad() -> Aad {
        Aad::new("user_calendar_events", "title", &["user-1", "row-1"])
    }

    #[test]
    fn seal_and_open_round_trip() {
        let key = DataKey::generate(1);
        let sealed = key.seal_str("Dentist", &aad());
        assert!(
            !sealed.windows(7).any(|w| w == b"Dentist"),
            "no plaintext in the ciphertext"
        );
        assert_eq!(key.open_string(&sealed, &aad()).unwrap(), "Dentist");
        assert_eq!(sealed_key_version(&sealed).unwrap(), 1);
    }

    #[test]
    fn the_same_plaintext_seals_differently_each_time() {
        let key = DataKey::generate(1);
        assert_ne!(key.seal_str("x", &aad()), key.seal_str("x", &aad()));
    }

    #[test]
    fn tampering_anywhere_fails_authentication() {
        let key = DataKey::generate(1);
        let sealed = key.seal_str("Board meeting", &aad());
        for i in HEADER_LEN..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                key.open(&bad, &aad()).unwrap_err(),
                CryptoError::Authentication,
                "byte {i}"
            );
        }
        let mut bad = sealed.clone();
        bad[0] = 9;
        assert_eq!(key.open(&bad, &aad()).unwrap_err(), CryptoError::Malformed);
        assert_eq!(key.open(&sealed[..10], &aad()).unwrap_err(), CryptoError::Malformed);
    }

    #[test]
    fn a_value_copied_to_another_row_or_column_does_not_open() {
        let key = DataKey::generate(1);
        let sealed = key.seal_str("Board meeting", &aad());
        let other_row = Aad::new("user_calendar_events", "title", &["user-1", "row-2"]);
        let other_column = Aad::new("user_calendar_events", "location", &["user-1", "row-1"]);
        assert_eq!(key.open(&sealed, &other_row).unwrap_err(), CryptoError::Authentication);
        assert_eq!(
            key.open(&sealed, &other_column).unwrap_err(),
            CryptoError::Authentication
        );
    }

    #[test]
    fn aad_parts_cannot_be_shifted_between_fields() {
        assert_ne!(Aad::new("ab", "c", &[]), Aad::new("a", "bc", &[]));
    }

    #[test]
    fn another_users_key_cannot_open() {
        let sealed = DataKey::generate(1).seal_str("x", &aad());
        assert_eq!(
            DataKey::generate(1).open(&sealed, &aad()).unwrap_err(),
            CryptoError::Authentication
        );
    }

    #[test]
    fn rotation_keeps_old_versions_readable_and_wraps_with_the_newest() {
        let v1 = MasterKey::generate();
        let old = MasterKeyring::new([(1, v1.clone())]).unwrap();
        let owner = Aad::new("user_data_keys", "wrapped_key", &["user-1", "1"]);
        let data_key = DataKey::generate(1);
        let sealed = data_key.seal_str("secret", &aad());
        let wrapped_v1 = old.wrap(&data_key, &owner);
        assert_eq!(wrapped_v1.master_version, 1);

        let rotated = MasterKeyring::new([(1, v1), (2, MasterKey::generate())]).unwrap();
        assert_eq!(rotated.active_version(), 2);
        // The old wrapping still opens under the new ring...
        let unwrapped = rotated.unwrap(&wrapped_v1.bytes, 1, &owner).unwrap();
        assert_eq!(unwrapped.open_string(&sealed, &aad()).unwrap(), "secret");
        // ...and re-wrapping moves it to version 2 without touching the data.
        let wrapped_v2 = rotated.rewrap(&wrapped_v1.bytes, 1, &owner).unwrap();
        assert_eq!(wrapped_v2.master_version, 2);
        let only_v2 = MasterKeyring::new([(2, rotated.keys[&2].clone())]).unwrap();
        let again = only_v2.unwrap(&wrapped_v2.bytes, 1, &owner).unwrap();
        assert_eq!(again.open_string(&sealed, &aad()).unwrap(), "secret");
        // A ring without version 1 cannot open the old wrapping.
        assert_eq!(
            only_v2.unwrap(&wrapped_v1.bytes, 1, &owner).unwrap_err(),
            CryptoError::UnknownKeyVersion(1)
        );
    }

    #[test]
    fn a_wrapped_key_is_bound_to_its_owner() {
        let ring = MasterKeyring::new([(1, MasterKey::generate())]).unwrap();
        let wrapped = ring.wrap(&DataKey::generate(1), &Aad::new("k", "k", &["alice"]));
        assert_eq!(
            ring.unwrap(&wrapped.bytes, 1, &Aad::new("k", "k", &["bob"]))
                .unwrap_err(),
            CryptoError::Authentication
        );
    }

    #[test]
    fn keyring_parsing_names_the_problem() {
        let a = MasterKey::generate().to_base64();
        let b = MasterKey::generate().to_base64();
        let ring = MasterKeyring::parse(&format!("# keys\n1:{}\n2:{}\n", *a, *b)).unwrap();
        assert_eq!(ring.versions(), vec![1, 2]);
        assert_eq!(MasterKeyring::parse("").unwrap_err(), CryptoError::EmptyKeyring);
        assert!(matches!(
            MasterKeyring::parse("nope").unwrap_err(),
            CryptoError::InvalidKey(_)
        ));
        assert!(
            matches!(MasterKeyring::parse("1:aGVsbG8=").unwrap_err(), CryptoError::InvalidKey(m) if m.contains("32 bytes"))
        );
        assert!(
            matches!(MasterKeyring::parse(&format!("1:{},1:{}", *a, *b)).unwrap_err(), CryptoError::InvalidKey(m) if m.contains("twice"))
        );
    }

    #[test]
    fn debug_never_prints_key_material() {
        let key = MasterKey::generate();
        let text = format!("{key:?} {:?}", DataKey::generate(3));
        assert!(!text.contains(&*key.to_base64()));
        assert!(text.contains("redacted"));
    }
}
