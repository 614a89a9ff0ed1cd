//! Session credentials: what the client holds, and what the server keeps.
//!
//! A credential (a cookie value, a token) is a secret: whoever has it *is*
//! the user. It must therefore never become an identifier that travels —
//! a [`SessionId`] names Redis channels, appears in logs and in the
//! `Debug` output of a [`Principal`](crate::Principal). So a session has
//! two values:
//!
//! - the **credential**, 128 random bits, given to the client once and
//!   stored by the server only as its SHA-256 [`credential_digest`];
//! - the **session id**, another 128 random bits, unrelated to the
//!   credential, which is all the rest of the system ever sees.
//!
//! Someone who reads the session table, the hub's channel list or the logs
//! learns digests and session ids, neither of which can be turned back into
//! a credential.
//!
//! ```
//! use sse_core::auth::{IssuedSession, credential_digest};
//!
//! let issued = IssuedSession::generate()?;
//! assert_eq!(issued.credential().len(), 32);
//! assert_ne!(issued.id().as_str(), issued.credential());
//! // Store the digest, never the credential.
//! assert_eq!(credential_digest(issued.credential()).len(), 64);
//! # Ok::<(), sse_core::auth::RandomUnavailable>(())
//! ```

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::SessionId;

/// A new session: the credential for the client and the session id for
/// everything else. See the [module docs](self).
#[derive(Clone)]
pub struct IssuedSession {
    credential: String,
    id: SessionId,
}

/// The operating system's random number generator failed, so no
/// credential could be issued (a predictable one would be worse).
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the operating system's random number generator failed ({0}); no session was created, retry later"
)]
pub struct RandomUnavailable(String);

impl IssuedSession {
    /// Draws a fresh credential and an unrelated session id, 128 random
    /// bits each, from the operating system's generator.
    pub fn generate() -> Result<Self, RandomUnavailable> {
        Ok(Self {
            credential: random_hex()?,
            id: SessionId::from(random_hex()?),
        })
    }

    /// The secret to hand to the client (the cookie value, the token).
    pub fn credential(&self) -> &str {
        &self.credential
    }

    /// The session's public name: what principals, hubs and logs carry.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The digest to store instead of the credential.
    pub fn digest(&self) -> String {
        credential_digest(&self.credential)
    }

    /// The credential and the session id.
    pub fn into_parts(self) -> (String, SessionId) {
        (self.credential, self.id)
    }
}

impl std::fmt::Debug for IssuedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedSession")
            .field("id", &self.id)
            .field("credential", &"<redacted>")
            .finish()
    }
}

/// The SHA-256 of a credential, as 64 lowercase hex digits: what session
/// stores keep and look credentials up by.
///
/// Credentials are 128 random bits, so a plain (unsalted, unkeyed) hash is
/// enough: there is no dictionary to try.
///
/// ```
/// use sse_core::auth::credential_digest;
/// assert_eq!(
///     credential_digest("abc"),
///     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/// );
/// ```
pub fn credential_digest(credential: &str) -> String {
    hex(&Sha256::digest(credential.as_bytes()))
}

fn random_hex() -> Result<String, RandomUnavailable> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| RandomUnavailable(error.to_string()))?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_credentials_are_unrelated_and_fresh() {
        let a = IssuedSession::generate().unwrap();
        let b = IssuedSession::generate().unwrap();
        assert_ne!(a.credential(), b.credential());
        assert_ne!(a.id(), b.id());
        assert!(!format!("{a:?}").contains(a.credential()));
        assert_ne!(a.digest(), a.id().as_str());
    }
}
