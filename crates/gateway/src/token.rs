//! Identifiers, task tokens, and what is stored of them: a SHA-256 for
//! bearer checks and a SCRAM-SHA-256 verifier for the PostgreSQL listener.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use taskgate_policy::Secret;
use taskgate_store::TaskSecrets;

/// PBKDF2 rounds in the SCRAM verifier: PostgreSQL's default. The token has
/// 256 bits of entropy, so the rounds guard nothing a guess could find;
/// they are here because clients expect the standard exchange.
pub const SCRAM_ITERATIONS: u32 = 4096;
const TOKEN_BYTES: usize = 32;
const ID_BYTES: usize = 8;
const SALT_BYTES: usize = 16;

#[derive(Debug, thiserror::Error)]
#[error("the system has no randomness available: {0}")]
pub struct RandomnessError(String);

fn random<const N: usize>() -> Result<[u8; N], RandomnessError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| RandomnessError(e.to_string()))?;
    Ok(bytes)
}

/// A new id with a type prefix: `tsk_1f2e3d4c5b6a7988`.
pub fn new_id(prefix: &str) -> Result<String, RandomnessError> {
    Ok(format!("{prefix}_{}", hex::encode(random::<ID_BYTES>()?)))
}

/// 32 random bytes, URL-safe: a session id, CSRF token, OAuth state or
/// PKCE verifier.
pub fn new_secret() -> Result<String, RandomnessError> {
    Ok(URL_SAFE_NO_PAD.encode(random::<32>()?))
}

/// A new task token, URL-safe so it fits in a connection string.
pub fn new_token() -> Result<Secret, RandomnessError> {
    Ok(Secret::new(format!(
        "tgt_{}",
        URL_SAFE_NO_PAD.encode(random::<TOKEN_BYTES>()?)
    )))
}

pub fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The verifier PostgreSQL would store for this password (RFC 5802/7677):
/// `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`. Tokens are ASCII,
/// so SASLprep leaves them unchanged.
pub fn scram_verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

/// A fresh server nonce for a SCRAM exchange: random, printable, no commas.
pub fn scram_nonce() -> Result<String, RandomnessError> {
    Ok(STANDARD.encode(random::<18>()?))
}

/// A gateway-issued cancel key: process id and secret, both random, so a
/// client learns nothing about the upstream backend.
pub fn cancel_key() -> Result<(u32, [u8; 4]), RandomnessError> {
    let bytes = random::<8>()?;
    Ok((
        u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        [bytes[4], bytes[5], bytes[6], bytes[7]],
    ))
}

/// What the store keeps of a freshly issued token.
pub fn secrets_for(token: &Secret) -> Result<TaskSecrets, RandomnessError> {
    let salt = random::<SALT_BYTES>()?;
    Ok(TaskSecrets {
        token_sha256: sha256(token.expose()),
        scram_verifier: scram_verifier(token.expose(), &salt, SCRAM_ITERATIONS),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verifier PostgreSQL 15 stored for `CREATE ROLE .. PASSWORD 'tgt_pencil'`.
    #[test]
    fn verifier_matches_what_postgresql_computes() {
        let from_postgres = "SCRAM-SHA-256$4096:9V5dP77F7ycTj+dpX8yWqg==$zIam+fWXUB/zdtG3PXMv0h1xZ55/4Ws2Z70GFH37PsI=:xYDRn5y4w17JL7p7mU09HAIXfi97YAvPVAih8v65LYk=";
        let salt = STANDARD.decode("9V5dP77F7ycTj+dpX8yWqg==").unwrap();
        assert_eq!(scram_verifier("tgt_pencil", &salt, 4096), from_postgres);
    }

    #[test]
    fn ids_and_tokens_are_fresh_and_url_safe() {
        let (a, b) = (new_id("tsk").unwrap(), new_id("tsk").unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 20);
        let token = new_token().unwrap();
        assert!(token.expose().starts_with("tgt_"));
        assert!(
            token.expose()[4..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }
}
