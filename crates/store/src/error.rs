//! The one error type of the store, in its callers' terms.

use juy_crypto::CryptoError;
use juy_domain::CalendarId;

/// What went wrong while reading or writing the store.
///
/// Messages never contain plaintext of encrypted columns or secrets.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for does not exist, or belongs to another user.
    #[error("{what} {id} not found")]
    NotFound {
        /// What was looked for, e.g. `calendar`.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// Write mode was asked for a calendar the provider does not let us write to.
    #[error("calendar {calendar_id} is not writable")]
    CalendarNotWritable {
        /// The calendar.
        calendar_id: CalendarId,
    },
    /// The row changed since the caller read it (optimistic concurrency): read again and retry.
    #[error("{what} {id} changed meanwhile")]
    Changed {
        /// What changed, e.g. `meeting`.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The caller passed arguments the store cannot act on.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// No connection to the database could be had (pool exhausted, database down).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Any other failure reported by the database.
    #[error("database error: {0}")]
    Database(String),
    /// A migration could not be applied or reverted.
    #[error("migration failed: {0}")]
    Migration(String),
    /// Keys could not be wrapped or unwrapped (e.g. a master key version is missing).
    #[error("encryption failure: {0}")]
    Crypto(#[from] CryptoError),
    /// A stored row cannot be decoded or decrypted.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl From<diesel::result::Error> for StoreError {
    fn from(err: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match err {
            Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _) | Error::BrokenTransactionManager => {
                Self::Unavailable(err.to_string())
            }
            other => Self::Database(other.to_string()),
        }
    }
}

impl From<diesel::ConnectionError> for StoreError {
    fn from(err: diesel::ConnectionError) -> Self {
        Self::Unavailable(err.to_string())
    }
}
