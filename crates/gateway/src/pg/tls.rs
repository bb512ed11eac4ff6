//! TLS on both sides: the listener's certificate for clients that send an
//! SSLRequest, and verified TLS to targets configured with `tls`.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use taskgate_policy::config::UpstreamTls;
use tokio_rustls::{TlsAcceptor, TlsConnector};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} from {path}: {error}")]
    Read {
        what: &'static str,
        path: String,
        error: String,
    },
    #[error("{path} holds no certificate")]
    NoCertificate { path: String },
    #[error("invalid TLS setup: {0}")]
    Config(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_error = |error: String| TlsError::Read {
        what: "certificates",
        path: path.display().to_string(),
        error,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

/// The listener's TLS, from a PEM certificate chain and key.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    Ok(TlsAcceptor::from(server_config(cert, key)?))
}

/// HTTPS for the API listener: the same certificate handling, speaking
/// HTTP/1.1 (what the API serves).
pub fn api_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = Arc::unwrap_or_clone(server_config(cert, key)?);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certificates(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Read {
        what: "the private key",
        path: key.display().to_string(),
        error: e.to_string(),
    })?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}

/// Accepts any server certificate: only for `verify = false`, which the
/// config documents as encryption without authentication.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How the gateway opens TLS to one target.
pub struct Upstream {
    pub connector: TlsConnector,
    pub server_name: ServerName<'static>,
}

/// Builds the TLS client for a target at `address` (`host:port`).
pub fn upstream(tls: &UpstreamTls, address: &str) -> Result<Upstream, TlsError> {
    let host = tls.server_name.clone().unwrap_or_else(|| {
        address
            .rsplit_once(':')
            .map_or(address, |(h, _)| h)
            .trim_matches(['[', ']'])
            .to_owned()
    });
    let server_name = ServerName::try_from(host.clone())
        .map_err(|_| TlsError::Config(format!("{host:?} is not a valid TLS server name")))?;
    Ok(Upstream {
        connector: TlsConnector::from(client_config(tls)?),
        server_name,
    })
}

/// The TLS client settings for a target or the shared store: its CA (the
/// system's when none is named), or no verification when `verify = false`.
pub fn client_config(tls: &UpstreamTls) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let config = if tls.verify {
        let mut roots = rustls::RootCertStore::empty();
        match &tls.ca_file {
            Some(path) => {
                for cert in certificates(path)? {
                    roots
                        .add(cert)
                        .map_err(|e| TlsError::Config(e.to_string()))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(TlsError::Config(
                        "no system CA certificates found; set tls.ca_file".into(),
                    ));
                }
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The `tls-server-end-point` channel binding of a certificate (RFC 5929):
/// its DER hashed with the hash of its signature algorithm, SHA-256 where
/// that is MD5 or SHA-1. `None` for a signature algorithm the RFC leaves
/// undefined (Ed25519, RSASSA-PSS), where PostgreSQL offers no binding
/// either.
pub fn end_point_hash(cert: &[u8]) -> Option<Vec<u8>> {
    use sha2::{Digest, Sha256, Sha384, Sha512};
    // Object identifiers of the signature algorithms, as DER content bytes.
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
    let oid = signature_algorithm(cert)?;
    let bits = match oid {
        o if o == ECDSA_SHA1 => 256,
        o if o.len() == RSA.len() + 1 && o.starts_with(RSA) => match o[RSA.len()] {
            0x04 | 0x05 | 0x0b => 256, // md5, sha1, sha256 WithRSAEncryption
            0x0c => 384,
            0x0d => 512,
            _ => return None,
        },
        o if o.len() == ECDSA_SHA2.len() + 1 && o.starts_with(ECDSA_SHA2) => {
            match o[ECDSA_SHA2.len()] {
                0x02 => 256,
                0x03 => 384,
                0x04 => 512,
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(match bits {
        256 => Sha256::digest(cert).to_vec(),
        384 => Sha384::digest(cert).to_vec(),
        _ => Sha512::digest(cert).to_vec(),
    })
}

/// The OID of a certificate's outer `signatureAlgorithm`. Hand-read: the
/// one field needed is the second element of the outer SEQUENCE, and a
/// full X.509 parser would be a large dependency for it.
fn signature_algorithm(cert: &[u8]) -> Option<&[u8]> {
    /// One DER element at the start of `der`: (tag, content, rest).
    fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = der.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }
    let (0x30, certificate, _) = element(cert)? else {
        return None;
    };
    let (0x30, _tbs, rest) = element(certificate)? else {
        return None;
    };
    let (0x30, algorithm, _) = element(rest)? else {
        return None;
    };
    let (0x06, oid, _) = element(algorithm)? else {
        return None;
    };
    Some(oid)
}

/// The end-point binding of the listener's certificate (the chain's first).
pub fn listener_end_point(cert: &Path) -> Result<Option<Vec<u8>>, TlsError> {
    let chain = certificates(cert)?;
    Ok(chain.first().and_then(|c| end_point_hash(c.as_ref())))
}

#[cfg(test)]
mod end_point_tests {
    use super::*;

    #[test]
    fn an_ecdsa_sha256_certificate_binds_with_sha256() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let der = cert.cert.der().to_vec();
        use sha2::Digest;
        assert_eq!(
            end_point_hash(&der),
            Some(sha2::Sha256::digest(&der).to_vec())
        );
        assert_eq!(end_point_hash(&der[..10]), None);
        assert_eq!(end_point_hash(b""), None);
    }
}
