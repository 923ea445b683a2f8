//! Linking Google and Microsoft accounts (authorisation code flow with PKCE
//! S256), reading the linked account's identity, keeping its access token
//! fresh, and revoking it.
//!
//! - [`OAuthClients`] knows each provider's endpoints (configuration; the
//!   defaults are the real Google and Microsoft ones) and speaks the protocol
//!   through the `oauth2` crate over our own `reqwest` client.
//! - [`StoredCredentials`] is what an account's encrypted `credentials_enc`
//!   column holds: OAuth tokens or a CalDAV password.
//! - [`TokenManager`] hands provider clients an [`juy_providers::Authorizer`]
//!   per account: tokens are refreshed shortly before they expire and after a
//!   401, one refresh at a time per account (in-process mutex + a row lock in
//!   PostgreSQL, so replicas share it too), a rotated refresh token replaces
//!   the old one in the same transaction, and `invalid_grant` marks the account
//!   `reauth_required` and stops work on it.
//!
//! Scopes are least-privilege: linking asks for read scopes; write scopes are
//! asked for only when the user wants Juy to write to a calendar
//! ([`Access::Write`]), as incremental consent.

#![forbid(unsafe_code)]

mod clients;
mod credentials;
mod tokens;

pub use clients::{
    Access, AuthorizationRequest, Identity, OAuthClients, OAuthError, ProviderEndpoints, TokenSet, google, microsoft,
    scopes_allow_write, scopes_for,
};
pub use credentials::StoredCredentials;
pub use tokens::{REAUTH_REASON, TokenManager};
