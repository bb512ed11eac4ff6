//! The gateway's own connection to the target database, logged in with
//! the credential for the grant's access level. The client never sees the
//! credential: errors name the connection and the server's SQLSTATE only.

use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use taskgate_policy::Secret;
use taskgate_wire_pg::backend::{self, Authentication, BackendMessage};
use taskgate_wire_pg::encode::frontend as enc;
use taskgate_wire_pg::frame::{self, Direction, Frame, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ClientStream;

/// Longest wait to reach a target, and again to be logged in, unless its
/// connection sets `connect_timeout`.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const SCRAM: &str = "SCRAM-SHA-256";
const SCRAM_PLUS: &str = "SCRAM-SHA-256-PLUS";

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot reach {address}: {error}")]
    Unreachable {
        address: String,
        error: std::io::Error,
    },
    #[error("timed out logging in to {address}")]
    Timeout { address: String },
    #[error("the server refused the gateway's login (SQLSTATE {sqlstate}): {message}")]
    Refused { sqlstate: String, message: String },
    #[error(
        "the server asks for the password in clear text over an unencrypted connection; configure tls for the connection or use scram-sha-256"
    )]
    CleartextRefused,
    #[error("the server asks for a password, and the credential has none")]
    NoPassword,
    #[error("the server offers no authentication method the gateway supports ({0})")]
    Unsupported(String),
    #[error("the server's SCRAM exchange failed: {0}")]
    Scram(std::io::Error),
    #[error("the server does not offer TLS, and the connection requires it")]
    NoTls,
    #[error("TLS to the server failed: {0}")]
    Tls(std::io::Error),
    #[error("the server broke the protocol during login: {0}")]
    Protocol(String),
    #[error("connection to the server failed during login: {0}")]
    Io(#[from] std::io::Error),
}

impl UpstreamError {
    /// What the client is told: the kind of failure, never the
    /// credential's user or the server's wording about it.
    pub fn client_message(&self, connection: &str) -> String {
        let what = match self {
            UpstreamError::Unreachable { .. } => "the database is unreachable".to_owned(),
            UpstreamError::Timeout { .. } => "the database did not answer in time".to_owned(),
            UpstreamError::NoTls | UpstreamError::Tls(_) => "TLS to the database failed".to_owned(),
            UpstreamError::Refused { sqlstate, .. } => {
                format!("the database refused the gateway's login (SQLSTATE {sqlstate})")
            }
            _ => "the gateway could not log in to the database".to_owned(),
        };
        format!("connection {connection}: {what}; the gateway's log has details")
    }
}

/// A logged-in server connection, ready for queries.
pub struct Upstream {
    pub stream: ClientStream,
    /// Bytes already read past the login's ReadyForQuery.
    pub buf: BytesMut,
    /// ParameterStatus messages, raw, to pass on to the client.
    pub parameter_status: Vec<u8>,
    pub key: Option<(u32, Vec<u8>)>,
}

async fn read_frame(stream: &mut ClientStream, buf: &mut BytesMut) -> Result<Frame, UpstreamError> {
    loop {
        if let Some(f) = frame::decode(buf, Direction::Backend, &Limits::default())
            .map_err(|e| UpstreamError::Protocol(e.to_string()))?
        {
            return Ok(f);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(UpstreamError::Protocol(
                "the server closed the connection".into(),
            ));
        }
    }
}

/// Connects to `address` and logs in as `user` with `params` as the
/// startup parameters (user and database among them), within `timeout`
/// for the connection and again for the login.
pub async fn connect(
    address: &str,
    tls: Option<&super::tls::Upstream>,
    params: &[(&str, &str)],
    password: Option<&Secret>,
    timeout: Duration,
) -> Result<Upstream, UpstreamError> {
    let mut stream = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| UpstreamError::Timeout {
            address: address.to_owned(),
        })?
        .map_err(|error| UpstreamError::Unreachable {
            address: address.to_owned(),
            error,
        })?;
    stream.set_nodelay(true)?;
    let mut end_point = None;
    let stream: ClientStream = match tls {
        None => Box::new(stream),
        Some(tls) => {
            let mut request = 8i32.to_be_bytes().to_vec();
            request.extend_from_slice(&taskgate_wire_pg::startup::SSL_REQUEST_CODE.to_be_bytes());
            stream.write_all(&request).await?;
            let mut answer = [0u8; 1];
            stream.read_exact(&mut answer).await?;
            if answer[0] != b'S' {
                return Err(UpstreamError::NoTls);
            }
            let tls_stream = tls
                .connector
                .connect(tls.server_name.clone(), stream)
                .await
                .map_err(UpstreamError::Tls)?;
            end_point = tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|cert| super::tls::end_point_hash(cert.as_ref()));
            Box::new(tls_stream)
        }
    };
    let channel = Channel {
        encrypted: tls.is_some(),
        end_point,
    };
    tokio::time::timeout(timeout, login(stream, params, password, channel))
        .await
        .map_err(|_| UpstreamError::Timeout {
            address: address.to_owned(),
        })?
}

/// What the connection to the target is: encrypted or not, and the
/// target certificate's `tls-server-end-point` binding when there is one.
struct Channel {
    encrypted: bool,
    end_point: Option<Vec<u8>>,
}

async fn login(
    mut stream: ClientStream,
    params: &[(&str, &str)],
    password: Option<&Secret>,
    channel: Channel,
) -> Result<Upstream, UpstreamError> {
    let encrypted = channel.encrypted;
    let user = params
        .iter()
        .find(|(k, _)| *k == "user")
        .map(|(_, v)| *v)
        .unwrap_or_default();
    stream
        .write_all(&taskgate_wire_pg::startup::encode(params))
        .await?;
    let mut buf = BytesMut::with_capacity(8192);
    let mut scram: Option<ScramSha256> = None;
    let mut parameter_status = Vec::new();
    let mut key = None;
    loop {
        let frame = read_frame(&mut stream, &mut buf).await?;
        let message =
            backend::decode(&frame).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
        let reply = match message {
            BackendMessage::Authentication(auth) => match auth {
                Authentication::Ok => None,
                Authentication::CleartextPassword => {
                    // Anyone on the path (or answering at the address)
                    // would read it.
                    if !encrypted {
                        return Err(UpstreamError::CleartextRefused);
                    }
                    let password = password.ok_or(UpstreamError::NoPassword)?;
                    Some(enc::password(password.expose()))
                }
                Authentication::Md5Password { salt } => {
                    let password = password.ok_or(UpstreamError::NoPassword)?;
                    let hash = md5_hash(user.as_bytes(), password.expose().as_bytes(), salt);
                    Some(enc::password(&hash))
                }
                Authentication::Sasl { mechanisms } => {
                    let password = password.ok_or(UpstreamError::NoPassword)?;
                    // Bound to the TLS channel where the target offers it,
                    // so a man in the middle holding another certificate
                    // cannot relay the exchange.
                    let (mechanism, binding) = match &channel.end_point {
                        Some(end_point) if mechanisms.contains(&SCRAM_PLUS) => (
                            SCRAM_PLUS,
                            ChannelBinding::tls_server_end_point(end_point.clone()),
                        ),
                        _ if !mechanisms.contains(&SCRAM) => {
                            return Err(UpstreamError::Unsupported(mechanisms.join(", ")));
                        }
                        Some(_) => (SCRAM, ChannelBinding::unrequested()),
                        None => (SCRAM, ChannelBinding::unsupported()),
                    };
                    let client = ScramSha256::new(password.expose().as_bytes(), binding);
                    let first = enc::sasl_initial_response(mechanism, client.message());
                    scram = Some(client);
                    Some(first)
                }
                Authentication::SaslContinue(data) => {
                    let client = scram.as_mut().ok_or_else(|| {
                        UpstreamError::Protocol("SASL continue out of order".into())
                    })?;
                    client.update(data).map_err(UpstreamError::Scram)?;
                    Some(enc::sasl_response(client.message()))
                }
                Authentication::SaslFinal(data) => {
                    let mut client = scram
                        .take()
                        .ok_or_else(|| UpstreamError::Protocol("SASL final out of order".into()))?;
                    client.finish(data).map_err(UpstreamError::Scram)?;
                    None
                }
                Authentication::Unsupported(code) => {
                    return Err(UpstreamError::Unsupported(format!(
                        "authentication request {code}"
                    )));
                }
            },
            BackendMessage::ParameterStatus { .. } => {
                parameter_status.extend_from_slice(&frame.raw);
                None
            }
            BackendMessage::BackendKeyData {
                process_id,
                secret_key,
            } => {
                key = Some((process_id, secret_key.to_vec()));
                None
            }
            BackendMessage::ErrorResponse(fields) => {
                return Err(UpstreamError::Refused {
                    sqlstate: fields.code.to_owned(),
                    message: fields.message.to_owned(),
                });
            }
            BackendMessage::ReadyForQuery(_) => {
                return Ok(Upstream {
                    stream,
                    buf,
                    parameter_status,
                    key,
                });
            }
            BackendMessage::NoticeResponse(_) | BackendMessage::NegotiateProtocolVersion => None,
            other => {
                return Err(UpstreamError::Protocol(format!(
                    "unexpected {other:?} during login"
                )));
            }
        };
        if let Some(bytes) = reply {
            stream.write_all(&bytes).await?;
        }
    }
}

/// Sends a CancelRequest for an upstream backend, as the protocol wants:
/// on a new connection, which the server closes.
pub async fn cancel(address: &str, process_id: u32, secret_key: &[u8]) -> std::io::Result<()> {
    let mut stream = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let mut packet = ((12 + secret_key.len()) as i32).to_be_bytes().to_vec();
    packet.extend_from_slice(&taskgate_wire_pg::startup::CANCEL_REQUEST_CODE.to_be_bytes());
    packet.extend_from_slice(&process_id.to_be_bytes());
    packet.extend_from_slice(secret_key);
    stream.write_all(&packet).await?;
    let mut sink = [0u8; 16];
    let _ = stream.read(&mut sink).await;
    Ok(())
}
