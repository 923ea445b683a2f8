//! Bearer-token authentication for both gRPC and REST: the Juy gateway's JWT
//! (`sub` = Juy user id, `roles`), checked against a configured issuer,
//! audience and keys, in one axum/tower middleware in front of both routers.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use juy_domain::UserId;

use crate::audit::{AuditLog, AuditNote, Call};
use crate::error::ApiError;
use crate::telemetry::RequestId;

/// The role that opens the `Admin` service and `/v1/admin/*`.
pub const ADMIN_ROLE: &str = "admin";

/// Paths served without a token: health, readiness, reflection and the API document.
const PUBLIC_PREFIXES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/healthz",
    "/readyz",
    "/v1/openapi.json",
];

/// Paths that need the admin role.
const ADMIN_PREFIXES: &[&str] = &["/juy.calendar.v1.Admin/", "/v1/admin/"];

/// One key tokens may be signed with.
#[derive(Clone)]
pub enum VerificationKey {
    /// A shared HMAC-SHA256 secret.
    Hs256(Zeroizing<Vec<u8>>),
    /// An RSA public key (PEM), for RS256.
    Rs256Pem(String),
    /// An Ed25519 public key (PEM), for EdDSA.
    EdDsaPem(String),
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Hs256(_) => f.write_str("Hs256(<redacted>)"),
            Self::Rs256Pem(_) => f.write_str("Rs256Pem(..)"),
            Self::EdDsaPem(_) => f.write_str("EdDsaPem(..)"),
        }
    }
}

/// What tokens must satisfy.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The required `iss`.
    pub issuer: String,
    /// The required `aud`.
    pub audience: String,
    /// Accepted keys; a token is valid if any key of its algorithm verifies it.
    pub keys: Vec<VerificationKey>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

/// A key in the configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[error("auth key {index}: {message}")]
pub struct KeyError {
    /// Position of the key in the configuration.
    pub index: usize,
    /// What is wrong with it.
    pub message: String,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The Juy user id (`sub`).
    pub user_id: UserId,
    /// The token's roles.
    pub roles: Vec<String>,
    /// The request's id (`x-request-id`), for the audit trail.
    pub request_id: String,
    /// What the handler tells the audit trail about this call.
    pub audit: AuditNote,
}

impl Caller {
    /// A caller outside any request (benchmarks, tests): a fresh request id, an unread note.
    pub fn new(user_id: UserId, roles: Vec<String>) -> Self {
        Self {
            user_id,
            roles,
            request_id: uuid::Uuid::new_v4().to_string(),
            audit: AuditNote::default(),
        }
    }

    /// Whether the caller holds the admin role.
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == ADMIN_ROLE)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
    exp: u64,
    iss: String,
    aud: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
}

/// Verifies bearer tokens.
pub struct Authenticator {
    keys: Vec<(Algorithm, DecodingKey)>,
    issuer: String,
    audience: String,
    leeway: Duration,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Authenticator {
    /// Builds a verifier; fails naming the first unusable key.
    pub fn new(config: &AuthConfig) -> Result<Self, KeyError> {
        let mut keys = Vec::with_capacity(config.keys.len());
        for (index, key) in config.keys.iter().enumerate() {
            let error = |e: jsonwebtoken::errors::Error| KeyError {
                index,
                message: e.to_string(),
            };
            keys.push(match key {
                VerificationKey::Hs256(secret) => {
                    if secret.len() < 32 {
                        return Err(KeyError {
                            index,
                            message: "an HS256 secret must have at least 32 bytes".into(),
                        });
                    }
                    (Algorithm::HS256, DecodingKey::from_secret(secret))
                }
                VerificationKey::Rs256Pem(pem) => (
                    Algorithm::RS256,
                    DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(error)?,
                ),
                VerificationKey::EdDsaPem(pem) => (
                    Algorithm::EdDSA,
                    DecodingKey::from_ed_pem(pem.as_bytes()).map_err(error)?,
                ),
            });
        }
        if keys.is_empty() {
            return Err(KeyError {
                index: 0,
                message: "at least one key is needed".into(),
            });
        }
        Ok(Self {
            keys,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway: config.leeway,
        })
    }

    /// Checks a bearer token and names its caller.
    pub fn authenticate(&self, token: &str) -> Result<Caller, ApiError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| ApiError::unauthenticated("the bearer token is not a valid JWT"))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        let mut last = None;
        for (_, key) in self.keys.iter().filter(|(alg, _)| *alg == header.alg) {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => {
                    let user_id = UserId::new(data.claims.sub)
                        .map_err(|_| ApiError::unauthenticated("the token's subject is not a valid user id"))?;
                    return Ok(Caller::new(user_id, data.claims.roles));
                }
                Err(e) => last = Some(e),
            }
        }
        use jsonwebtoken::errors::ErrorKind;
        Err(ApiError::unauthenticated(match last.as_ref().map(|e| e.kind()) {
            None => "the token's algorithm is not accepted",
            Some(ErrorKind::ExpiredSignature) => "the token has expired",
            Some(ErrorKind::ImmatureSignature) => "the token is not valid yet",
            Some(ErrorKind::InvalidIssuer) => "the token's issuer is not accepted",
            Some(ErrorKind::InvalidAudience) => "the token's audience is not accepted",
            Some(ErrorKind::MissingRequiredClaim(_)) => "the token lacks a required claim",
            Some(_) => "the token's signature or claims are invalid",
        }))
    }
}

/// Signs an HS256 token, for the `dev` command and tests (the gateway mints real ones).
pub fn sign_hs256(secret: &[u8], issuer: &str, audience: &str, user: &UserId, roles: &[&str], ttl: Duration) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = Claims {
        sub: user.as_str().to_owned(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        exp: now + ttl.as_secs(),
        iss: issuer.to_owned(),
        aud: audience.to_owned(),
        iat: Some(now),
    };
    // Infallible: HS256 signing of a serialisable struct cannot fail.
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap_or_default()
}

fn is_grpc(request: &Request) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

fn reject(grpc: bool, error: ApiError) -> Response {
    if grpc {
        tonic::Status::from(error).into_http::<Body>()
    } else {
        error.into_response()
    }
}

/// What the auth middleware needs: the token verifier and, when calls are
/// audited, the audit log.
#[derive(Debug)]
pub struct Gate {
    auth: Authenticator,
    audit: Option<AuditLog>,
}

impl Gate {
    /// A gate that checks tokens with `auth` and records calls in `audit`.
    pub fn new(auth: Authenticator, audit: Option<AuditLog>) -> Self {
        Self { auth, audit }
    }
}

/// The outcome of a call as a gRPC code name: gRPC errors come as
/// trailers-only answers with `grpc-status` in the headers; a gRPC answer
/// without it has started successfully (its final status follows in the
/// trailers); REST answers carry it in the HTTP status.
fn outcome(grpc: bool, response: &Response) -> &'static str {
    if grpc {
        response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
            .map_or("OK", crate::audit::grpc_code_name)
    } else {
        crate::audit::http_code_name(response.status())
    }
}

/// The middleware: public paths pass; every other request needs a valid
/// bearer token, and admin paths the admin role. The caller is put in the
/// request's extensions for the handlers. Authenticated calls of audited
/// methods, refused ones included, are recorded in the audit trail once the
/// handler has answered (see [`crate::audit`]).
pub async fn require_auth(State(gate): State<Arc<Gate>>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if PUBLIC_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return next.run(request).await;
    }
    let grpc = is_grpc(&request);
    let needs_admin = ADMIN_PREFIXES.iter().any(|p| path.starts_with(p));
    let action = if grpc {
        crate::audit::grpc_action(path)
    } else {
        crate::audit::rest_action(request.method(), path)
    };
    let token = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(token) = token else {
        return reject(grpc, ApiError::unauthenticated("a bearer token is required"));
    };
    let mut caller = match gate.auth.authenticate(token) {
        Ok(caller) => caller,
        Err(error) => return reject(grpc, error),
    };
    if let Some(RequestId(id)) = request.extensions().get::<RequestId>() {
        caller.request_id.clone_from(id);
    }
    let response = if needs_admin && !caller.is_admin() {
        reject(grpc, ApiError::permission_denied("the admin role is required"))
    } else {
        request.extensions_mut().insert(caller.clone());
        next.run(request).await
    };
    let (Some(audit), Some(action)) = (gate.audit.as_ref(), action) else {
        return response;
    };
    let result = outcome(grpc, &response);
    let call = Call {
        user: &caller.user_id,
        roles: &caller.roles,
        action,
        result,
        request_id: &caller.request_id,
    };
    if audit.record(call, &caller.audit).await || !action.read || result != "OK" {
        return response;
    }
    // The data of a read is not released without its audit entry.
    reject(
        grpc,
        ApiError::unavailable("the audit trail cannot be written; try again later"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn authenticator() -> Authenticator {
        Authenticator::new(&AuthConfig {
            issuer: "juy-gateway".into(),
            audience: "juy-calendar".into(),
            keys: vec![VerificationKey::Hs256(Zeroizing::new(SECRET.to_vec()))],
            leeway: Duration::from_secs(0),
        })
        .unwrap()
    }

    fn user() -> UserId {
        UserId::new("u-1").unwrap()
    }

    #[test]
    fn a_valid_token_names_the_caller_and_roles() {
        let token = sign_hs256(
            SECRET,
            "juy-gateway",
            "juy-calendar",
            &user(),
            &["admin"],
            Duration::from_secs(60),
        );
        let caller = authenticator().authenticate(&token).unwrap();
        assert_eq!(caller.user_id, user());
        assert!(caller.is_admin());
    }

    #[test]
    fn wrong_issuer_audience_key_or_garbage_is_rejected() {
        let auth = authenticator();
        let wrong_iss = sign_hs256(SECRET, "other", "juy-calendar", &user(), &[], Duration::from_secs(60));
        let wrong_aud = sign_hs256(SECRET, "juy-gateway", "other", &user(), &[], Duration::from_secs(60));
        let wrong_key = sign_hs256(
            b"ffffffffffffffffffffffffffffffff",
            "juy-gateway",
            "juy-calendar",
            &user(),
            &[],
            Duration::from_secs(60),
        );
        for token in [
            wrong_iss.as_str(),
            wrong_aud.as_str(),
            wrong_key.as_str(),
            "garbage",
            "",
        ] {
            let error = auth.authenticate(token).unwrap_err();
            assert_eq!(error.code, crate::error::ErrorCode::Unauthenticated, "{token}");
        }
    }

    #[test]
    fn an_expired_token_says_so() {
        let claims = Claims {
            sub: "u".into(),
            roles: vec![],
            exp: 1_000,
            iss: "juy-gateway".into(),
            aud: "juy-calendar".into(),
            iat: None,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(
            authenticator().authenticate(&token).unwrap_err().message,
            "the token has expired"
        );
    }

    #[test]
    fn short_hs256_secrets_are_refused_at_start() {
        let error = Authenticator::new(&AuthConfig {
            issuer: "i".into(),
            audience: "a".into(),
            keys: vec![VerificationKey::Hs256(Zeroizing::new(b"short".to_vec()))],
            leeway: Duration::ZERO,
        })
        .unwrap_err();
        assert!(error.to_string().contains("32 bytes"));
    }
}

#[cfg(test)]
mod asymmetric_tests {
    use super::*;

    fn claims(sub: &str) -> Claims {
        Claims {
            sub: sub.into(),
            roles: vec![],
            exp: 4_000_000_000,
            iss: "juy-gateway".into(),
            aud: "juy-calendar".into(),
            iat: None,
        }
    }

    #[test]
    fn eddsa_tokens_verify_with_the_public_key_only() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims("u-ed"),
            &EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
        let auth = Authenticator::new(&AuthConfig {
            issuer: "juy-gateway".into(),
            audience: "juy-calendar".into(),
            keys: vec![
                VerificationKey::Hs256(Zeroizing::new(vec![7u8; 32])),
                VerificationKey::EdDsaPem(pair.public_key_pem()),
            ],
            leeway: Duration::ZERO,
        })
        .unwrap();
        assert_eq!(auth.authenticate(&token).unwrap().user_id.as_str(), "u-ed");

        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims("u-ed"),
            &EncodingKey::from_ed_pem(other.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
        assert!(auth.authenticate(&forged).is_err());
    }

    #[test]
    fn rs256_tokens_verify_with_the_public_key_only() {
        let private = include_str!("../tests/fixtures/rs256-test-only.key.pem");
        let public = include_str!("../tests/fixtures/rs256-test-only.pub.pem");
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &claims("u-rsa"),
            &EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
        )
        .unwrap();
        let auth = Authenticator::new(&AuthConfig {
            issuer: "juy-gateway".into(),
            audience: "juy-calendar".into(),
            keys: vec![VerificationKey::Rs256Pem(public.into())],
            leeway: Duration::ZERO,
        })
        .unwrap();
        assert_eq!(auth.authenticate(&token).unwrap().user_id.as_str(), "u-rsa");
        let mut tampered = token.clone();
        tampered.insert(tampered.len() / 2, 'x');
        assert!(auth.authenticate(&tampered).is_err());
    }

    #[test]
    fn a_token_signed_with_an_algorithm_not_configured_is_rejected() {
        // An HS256 token against an EdDSA-only configuration (no algorithm confusion).
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let auth = Authenticator::new(&AuthConfig {
            issuer: "juy-gateway".into(),
            audience: "juy-calendar".into(),
            keys: vec![VerificationKey::EdDsaPem(pair.public_key_pem())],
            leeway: Duration::ZERO,
        })
        .unwrap();
        let token = sign_hs256(
            pair.public_key_pem().as_bytes(),
            "juy-gateway",
            "juy-calendar",
            &UserId::new("u").unwrap(),
            &[],
            Duration::from_secs(60),
        );
        assert_eq!(
            auth.authenticate(&token).unwrap_err().message,
            "the token's algorithm is not accepted"
        );
    }
}
