//! The messages the gateway writes itself: to clients (errors, notices,
//! the authentication exchange, its own key data) and to servers (startup
//! and authentication answers). Everything else is forwarded as it came.

/// A message with its header: type byte and length.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(tag);
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    // A NUL inside would end the string early; no text we send has one,
    // but a client-controlled name could.
    out.extend(s.bytes().filter(|&b| b != 0));
    out.push(0);
}

/// Server-to-client messages.
pub mod backend {
    use super::{cstr, message};

    fn auth(code: u32, data: &[u8]) -> Vec<u8> {
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(data);
        message(b'R', &body)
    }

    pub fn authentication_ok() -> Vec<u8> {
        auth(0, &[])
    }

    pub fn authentication_sasl(mechanisms: &[&str]) -> Vec<u8> {
        let mut data = Vec::new();
        for m in mechanisms {
            cstr(&mut data, m);
        }
        data.push(0);
        auth(10, &data)
    }

    pub fn sasl_continue(data: &[u8]) -> Vec<u8> {
        auth(11, data)
    }

    pub fn sasl_final(data: &[u8]) -> Vec<u8> {
        auth(12, data)
    }

    pub fn parameter_status(name: &str, value: &str) -> Vec<u8> {
        let mut body = Vec::new();
        cstr(&mut body, name);
        cstr(&mut body, value);
        message(b'S', &body)
    }

    pub fn backend_key_data(process_id: u32, secret_key: &[u8]) -> Vec<u8> {
        let mut body = process_id.to_be_bytes().to_vec();
        body.extend_from_slice(secret_key);
        message(b'K', &body)
    }

    pub fn ready_for_query(status: u8) -> Vec<u8> {
        message(b'Z', &[status])
    }

    /// The `routine` field of every error and notice the gateway makes.
    pub const GATEWAY_ROUTINE: &str = "taskgate";

    fn fields(
        tag: u8,
        severity: &str,
        code: &str,
        message_text: &str,
        hint: Option<&str>,
    ) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, value) in [
            (b'S', severity),
            (b'V', severity),
            (b'C', code),
            (b'M', message_text),
            // The routine: tells the gateway's own errors from the
            // database's (the MCP tools answer them apart).
            (b'R', GATEWAY_ROUTINE),
        ] {
            body.push(kind);
            cstr(&mut body, value);
        }
        if let Some(hint) = hint {
            body.push(b'H');
            cstr(&mut body, hint);
        }
        body.push(0);
        message(tag, &body)
    }

    /// An ErrorResponse. `severity` is `ERROR` or `FATAL`.
    pub fn error(severity: &str, code: &str, message_text: &str, hint: Option<&str>) -> Vec<u8> {
        fields(b'E', severity, code, message_text, hint)
    }

    /// A NoticeResponse at `NOTICE` severity.
    pub fn notice(code: &str, message_text: &str, hint: Option<&str>) -> Vec<u8> {
        fields(b'N', "NOTICE", code, message_text, hint)
    }
}

/// Client-to-server messages.
pub mod frontend {
    use super::{cstr, message};

    pub fn password(password: &str) -> Vec<u8> {
        let mut body = Vec::new();
        cstr(&mut body, password);
        message(b'p', &body)
    }

    pub fn sasl_initial_response(mechanism: &str, data: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        cstr(&mut body, mechanism);
        body.extend_from_slice(&(data.len() as i32).to_be_bytes());
        body.extend_from_slice(data);
        message(b'p', &body)
    }

    pub fn sasl_response(data: &[u8]) -> Vec<u8> {
        message(b'p', data)
    }

    pub fn query(sql: &str) -> Vec<u8> {
        let mut body = Vec::new();
        cstr(&mut body, sql);
        message(b'Q', &body)
    }

    pub fn parse(name: &str, sql: &str, param_types: &[u32]) -> Vec<u8> {
        let mut body = Vec::new();
        cstr(&mut body, name);
        cstr(&mut body, sql);
        body.extend_from_slice(&(param_types.len() as i16).to_be_bytes());
        for t in param_types {
            body.extend_from_slice(&t.to_be_bytes());
        }
        message(b'P', &body)
    }

    /// A Bind with text parameters and text results.
    pub fn bind(portal: &str, statement: &str, params: &[Option<&[u8]>]) -> Vec<u8> {
        let mut body = Vec::new();
        cstr(&mut body, portal);
        cstr(&mut body, statement);
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&(params.len() as i16).to_be_bytes());
        for p in params {
            match p {
                None => body.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    body.extend_from_slice(v);
                }
            }
        }
        body.extend_from_slice(&0i16.to_be_bytes());
        message(b'B', &body)
    }

    pub fn execute(portal: &str, max_rows: i32) -> Vec<u8> {
        let mut body = Vec::new();
        cstr(&mut body, portal);
        body.extend_from_slice(&max_rows.to_be_bytes());
        message(b'E', &body)
    }

    pub fn sync() -> Vec<u8> {
        message(b'S', &[])
    }

    pub fn flush() -> Vec<u8> {
        message(b'H', &[])
    }

    /// Describe of a statement (`b'S'`) or a portal (`b'P'`).
    pub fn describe(target: u8, name: &str) -> Vec<u8> {
        let mut body = vec![target];
        cstr(&mut body, name);
        message(b'D', &body)
    }

    /// Close of a statement (`b'S'`) or a portal (`b'P'`).
    pub fn close(target: u8, name: &str) -> Vec<u8> {
        let mut body = vec![target];
        cstr(&mut body, name);
        message(b'C', &body)
    }

    pub fn terminate() -> Vec<u8> {
        message(b'X', &[])
    }
}
