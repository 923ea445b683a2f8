//! Page sizes and opaque page tokens (AIP-158). A token carries the sort key
//! of the last item served (keyset paging, so inserts never shift pages) and a
//! fingerprint of the request's other fields, so a token cannot be replayed
//! against a different query.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::ApiError;

/// The page size when the client gives none.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest page size accepted.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Checks a requested page size: 0 means the default; 1 to 1000 are served as asked.
pub fn page_size(requested: i32) -> Result<usize, ApiError> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n > 0 && n as usize <= MAX_PAGE_SIZE => Ok(n as usize),
        _ => Err(ApiError::invalid(
            "page_size",
            format!("must be between 1 and {MAX_PAGE_SIZE}, or 0 for the default"),
        )),
    }
}

/// A stable fingerprint (FNV-1a, the same across builds and replicas) of a request's filters.
pub fn fingerprint(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

#[derive(Serialize, Deserialize)]
struct Token<K> {
    v: u8,
    f: u64,
    k: K,
}

/// Encodes the key of the last item served.
pub fn encode_token<K: Serialize>(fingerprint: u64, key: &K) -> String {
    let json = serde_json::to_vec(&Token {
        v: 1,
        f: fingerprint,
        k: key,
    })
    .unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// Decodes a page token given with a request of this `fingerprint`; an empty token is the first page.
pub fn decode_token<K: DeserializeOwned>(raw: &str, fingerprint: u64) -> Result<Option<K>, ApiError> {
    if raw.is_empty() {
        return Ok(None);
    }
    let bad = || ApiError::invalid("page_token", "is not a token this service issued");
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
    let token: Token<K> = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if token.v != 1 {
        return Err(bad());
    }
    if token.f != fingerprint {
        return Err(ApiError::invalid(
            "page_token",
            "belongs to a request with different filters",
        ));
    }
    Ok(Some(token.k))
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// The token of the next page; empty on the last one.
    pub next_page_token: String,
}

/// Pages a small, fully loaded list: `items` are sorted by `key` (ascending,
/// unique), and the page starts after the key in `page_token`.
pub fn page_in_memory<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    size: usize,
    page_token: &str,
    fingerprint: u64,
) -> Result<Page<T>, ApiError> {
    let after: Option<String> = decode_token(page_token, fingerprint)?;
    let mut rest: Vec<T> = match after {
        Some(after) => items.into_iter().filter(|item| key(item) > after).collect(),
        None => items,
    };
    let next_page_token = if rest.len() > size {
        rest.truncate(size);
        rest.last()
            .map(|last| encode_token(fingerprint, &key(last)))
            .unwrap_or_default()
    } else {
        String::new()
    };
    Ok(Page {
        items: rest,
        next_page_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_bounds() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(1).unwrap(), 1);
        assert_eq!(page_size(1000).unwrap(), 1000);
        for bad in [-1, 1001, i32::MAX, i32::MIN] {
            assert_eq!(page_size(bad).unwrap_err().violations[0].field, "page_size");
        }
    }

    #[test]
    fn tokens_are_bound_to_their_filters() {
        let token = encode_token(fingerprint(&["a"]), &"key".to_owned());
        assert_eq!(
            decode_token::<String>(&token, fingerprint(&["a"])).unwrap().unwrap(),
            "key"
        );
        assert!(decode_token::<String>(&token, fingerprint(&["b"])).is_err());
        assert!(decode_token::<String>("!!!", 0).is_err());
        assert!(decode_token::<String>(&URL_SAFE_NO_PAD.encode("{}"), 0).is_err());
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
    }

    #[test]
    fn in_memory_paging_visits_every_item_once() {
        let items: Vec<u32> = (0..7).collect();
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let page = page_in_memory(items.clone(), |i| format!("{i:04}"), 3, &token, 7).unwrap();
            seen.extend(page.items);
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(seen, items);
    }
}
