//! The server side of SCRAM-SHA-256 (RFC 5802, RFC 7677), as PostgreSQL
//! runs it: the client proves it knows the task token against the stored
//! verifier, and the server proves it holds that verifier.
//!
//! Hand-written because the crates that speak SCRAM for PostgreSQL
//! (`postgres-protocol`, `tokio-postgres`) implement only the client side.
//! Over TLS, `SCRAM-SHA-256-PLUS` binds the exchange to the channel with
//! `tls-server-end-point` (RFC 5929), as PostgreSQL does: a client that
//! requires channel binding (libpq's `channel_binding=require`) can
//! connect, and one that says it would bind but thinks the server cannot
//! (`y`) is refused when the server offered it, which is a downgrade.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const MECHANISM: &str = "SCRAM-SHA-256";
pub const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// What the server offers to bind the exchange to.
#[derive(Clone, Copy, Debug)]
pub enum Binding<'a> {
    /// No TLS, or a certificate without an end-point binding: only
    /// `SCRAM-SHA-256` is offered.
    None,
    /// `SCRAM-SHA-256-PLUS` is offered too, with this `tls-server-end-point`
    /// data (the certificate's hash).
    EndPoint(&'a [u8]),
}

impl Binding<'_> {
    /// The mechanisms to offer, strongest first.
    pub fn mechanisms(&self) -> &'static [&'static str] {
        match self {
            Binding::None => &[MECHANISM],
            Binding::EndPoint(_) => &[MECHANISM_PLUS, MECHANISM],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("stored SCRAM verifier is malformed")]
    BadVerifier,
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported by this gateway")]
    ChannelBinding,
    #[error("SCRAM nonce does not match")]
    NonceMismatch,
    #[error("password authentication failed")]
    WrongProof,
}

/// A verifier as PostgreSQL stores it:
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
#[derive(Clone)]
pub struct Verifier {
    iterations: u32,
    salt_b64: String,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(<secret>)")
    }
}

fn key(b64: &str) -> Result<[u8; 32], ScramError> {
    STANDARD
        .decode(b64)
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or(ScramError::BadVerifier)
}

impl Verifier {
    pub fn parse(text: &str) -> Result<Verifier, ScramError> {
        let rest = text
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or(ScramError::BadVerifier)?;
        let (params, keys) = rest.split_once('$').ok_or(ScramError::BadVerifier)?;
        let (iterations, salt_b64) = params.split_once(':').ok_or(ScramError::BadVerifier)?;
        let (stored, server) = keys.split_once(':').ok_or(ScramError::BadVerifier)?;
        STANDARD
            .decode(salt_b64)
            .map_err(|_| ScramError::BadVerifier)?;
        Ok(Verifier {
            iterations: iterations.parse().map_err(|_| ScramError::BadVerifier)?,
            salt_b64: salt_b64.to_owned(),
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// A SCRAM exchange after the server's first message.
pub struct Exchange {
    verifier: Verifier,
    /// What the client's `c=` must hold: the GS2 header, and the channel
    /// binding data when the exchange is bound.
    channel: Vec<u8>,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// Reads the client-first message of `mechanism` (one of those `binding`
/// offered) and answers with the server-first one. `server_nonce` must be
/// fresh random printable ASCII without commas.
pub fn start(
    verifier: Verifier,
    mechanism: &str,
    binding: Binding<'_>,
    client_first: &[u8],
    server_nonce: &str,
) -> Result<(Exchange, String), ScramError> {
    let text = std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    // gs2-header: cbind-flag "," [authzid] ","
    let (flag, rest) = text
        .split_once(',')
        .ok_or(ScramError::Malformed("missing GS2 header"))?;
    let plus = mechanism == MECHANISM_PLUS;
    let bound: &[u8] = match (flag, plus, binding) {
        ("n", false, _) => &[],
        // The client could bind but believes the server cannot: the
        // server offered it, so someone took it out of the offer.
        ("y", false, Binding::EndPoint(_)) => return Err(ScramError::ChannelBinding),
        ("y", false, Binding::None) => &[],
        ("p=tls-server-end-point", true, Binding::EndPoint(data)) => data,
        (f, _, _) if f.starts_with("p=") || plus => return Err(ScramError::ChannelBinding),
        _ => return Err(ScramError::Malformed("bad channel-binding flag")),
    };
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or(ScramError::Malformed("missing GS2 header"))?;
    if !authzid.is_empty() {
        return Err(ScramError::Malformed(
            "authorization identity is not supported",
        ));
    }
    let client_nonce = bare
        .split(',')
        .find_map(|attr| attr.strip_prefix("r="))
        .filter(|n| !n.is_empty())
        .ok_or(ScramError::Malformed("missing client nonce"))?;
    if !bare.starts_with("n=") && !bare.starts_with("m=") {
        return Err(ScramError::Malformed("missing user name attribute"));
    }
    if bare.starts_with("m=") {
        return Err(ScramError::Malformed(
            "mandatory extensions are not supported",
        ));
    }
    let nonce = format!("{client_nonce}{server_nonce}");
    let server_first = format!(
        "r={nonce},s={},i={}",
        verifier.salt_b64, verifier.iterations
    );
    let mut channel = format!("{flag},{authzid},").into_bytes();
    channel.extend_from_slice(bound);
    let exchange = Exchange {
        verifier,
        channel,
        client_first_bare: bare.to_owned(),
        server_first: server_first.clone(),
        nonce,
    };
    Ok((exchange, server_first))
}

impl Exchange {
    /// Checks the client's proof; on success returns the server-final
    /// message (`v=<ServerSignature>`) that proves the server to the client.
    pub fn finish(self, client_final: &[u8]) -> Result<String, ScramError> {
        let text =
            std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof_b64) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("missing proof"))?;
        let mut binding = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("c=") {
                binding = Some(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        let binding = binding.ok_or(ScramError::Malformed("missing channel binding"))?;
        if STANDARD.decode(binding).ok().as_deref() != Some(self.channel.as_slice()) {
            return Err(ScramError::ChannelBinding);
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(ScramError::NonceMismatch);
        }
        let proof = STANDARD
            .decode(proof_b64)
            .ok()
            .and_then(|p| <[u8; 32]>::try_from(p).ok())
            .ok_or(ScramError::Malformed("bad proof encoding"))?;
        let auth_message = [
            self.client_first_bare.as_bytes(),
            b",",
            self.server_first.as_bytes(),
            b",",
            without_proof.as_bytes(),
        ];
        let client_signature = hmac(&self.verifier.stored_key, &auth_message);
        let mut client_key = [0u8; 32];
        for (i, byte) in client_key.iter_mut().enumerate() {
            *byte = proof[i] ^ client_signature[i];
        }
        let derived: [u8; 32] = Sha256::digest(client_key).into();
        if !bool::from(derived.ct_eq(&self.verifier.stored_key)) {
            return Err(ScramError::WrongProof);
        }
        let server_signature = hmac(&self.verifier.server_key, &auth_message);
        Ok(format!("v={}", STANDARD.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL's verifier for the password "pencil" with a fixed salt,
    /// computed by the RFC 5802 recipe.
    fn verifier(password: &str) -> Verifier {
        let salt = b"0123456789abcdef";
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, 4096, &mut salted);
        let client_key = hmac(&salted, &[b"Client Key"]);
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        let server = hmac(&salted, &[b"Server Key"]);
        Verifier::parse(&format!(
            "SCRAM-SHA-256$4096:{}${}:{}",
            STANDARD.encode(salt),
            STANDARD.encode(stored),
            STANDARD.encode(server)
        ))
        .unwrap()
    }

    /// Runs the exchange against postgres-protocol's client, an independent
    /// implementation: unbound, or bound to `(client's, server's)` channel
    /// data with the -PLUS mechanism.
    fn run(
        stored_password: &str,
        client_password: &str,
        bound: Option<(&[u8], &[u8])>,
    ) -> Result<(), ScramError> {
        use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
        let (binding, mechanism, offered) = match bound {
            Some((client, server)) => (
                ChannelBinding::tls_server_end_point(client.to_vec()),
                MECHANISM_PLUS,
                Binding::EndPoint(server),
            ),
            None => (ChannelBinding::unsupported(), MECHANISM, Binding::None),
        };
        let mut client = ScramSha256::new(client_password.as_bytes(), binding);
        let (server, server_first) = start(
            verifier(stored_password),
            mechanism,
            offered,
            client.message(),
            "SERVERNONCE123",
        )?;
        client
            .update(server_first.as_bytes())
            .map_err(|_| ScramError::Malformed("client refused server-first"))?;
        let server_final = server.finish(client.message())?;
        client
            .finish(server_final.as_bytes())
            .map_err(|_| ScramError::Malformed("client refused the server signature"))
    }

    fn exchange(stored_password: &str, client_password: &str) -> Result<(), ScramError> {
        run(stored_password, client_password, None)
    }

    fn bound(client_binding: &[u8], server_binding: &[u8]) -> Result<(), ScramError> {
        run("pencil", "pencil", Some((client_binding, server_binding)))
    }

    #[test]
    fn the_right_password_passes_both_ways() {
        assert_eq!(exchange("pencil", "pencil"), Ok(()));
    }

    #[test]
    fn channel_binding_passes_with_the_same_certificate_only() {
        assert_eq!(bound(b"cert-hash", b"cert-hash"), Ok(()));
        assert_eq!(
            bound(b"another-cert", b"cert-hash"),
            Err(ScramError::ChannelBinding)
        );
    }

    #[test]
    fn a_client_told_the_server_cannot_bind_is_refused_when_it_can() {
        let v = || verifier("pencil");
        let downgraded = start(v(), MECHANISM, Binding::EndPoint(b"h"), b"y,,n=,r=abc", "s");
        assert_eq!(downgraded.err(), Some(ScramError::ChannelBinding));
        assert!(start(v(), MECHANISM, Binding::None, b"y,,n=,r=abc", "s").is_ok());
        // PLUS without binding data, and binding data without PLUS.
        let unbound = start(
            v(),
            MECHANISM_PLUS,
            Binding::EndPoint(b"h"),
            b"n,,n=,r=abc",
            "s",
        );
        assert_eq!(unbound.err(), Some(ScramError::ChannelBinding));
        let plain = start(
            v(),
            MECHANISM,
            Binding::EndPoint(b"h"),
            b"p=tls-server-end-point,,n=,r=abc",
            "s",
        );
        assert_eq!(plain.err(), Some(ScramError::ChannelBinding));
    }

    #[test]
    fn a_wrong_password_fails() {
        assert_eq!(exchange("pencil", "pen"), Err(ScramError::WrongProof));
    }

    #[test]
    fn malformed_and_unsupported_messages_are_refused() {
        let v = || verifier("pencil");
        let cases: [(&[u8], ScramError); 5] = [
            (
                b"p=tls-server-end-point,,n=,r=abc",
                ScramError::ChannelBinding,
            ),
            (
                b"x,,n=,r=abc",
                ScramError::Malformed("bad channel-binding flag"),
            ),
            (b"n,,n=", ScramError::Malformed("missing client nonce")),
            (
                b"n,a=bob,n=,r=abc",
                ScramError::Malformed("authorization identity is not supported"),
            ),
            (b"\xff", ScramError::Malformed("not UTF-8")),
        ];
        for (message, want) in cases {
            assert_eq!(
                start(v(), MECHANISM, Binding::None, message, "s").err(),
                Some(want)
            );
        }
        let (ex, _) = start(v(), MECHANISM, Binding::None, b"n,,n=,r=abc", "def").unwrap();
        assert_eq!(
            ex.finish(b"c=biws,r=abcXXX,p=AAAA").err(),
            Some(ScramError::NonceMismatch)
        );
        let (ex, _) = start(v(), MECHANISM, Binding::None, b"n,,n=,r=abc", "def").unwrap();
        assert_eq!(
            ex.finish(b"c=eSws,r=abcdef,p=AAAA").err(),
            Some(ScramError::ChannelBinding)
        );
        assert!(Verifier::parse("md5abc").is_err());
        assert!(Verifier::parse("SCRAM-SHA-256$x:YQ==$AA==:AA==").is_err());
    }
}
