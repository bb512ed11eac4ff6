//! Console sessions: a random id in an `HttpOnly`, `SameSite=Strict`
//! cookie (`Secure` behind TLS), the signed-in identity kept on the
//! gateway's side only (never the IdP's token), a CSRF token per session,
//! and an end no later than the token's own expiry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use subtle::ConstantTimeEq;
use taskgate_policy::Identity;
use taskgate_store::postgres::PgConsole;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "tg_console";
/// The cookie that ties an IdP sign-in to the browser that began it.
pub const LOGIN_COOKIE: &str = "tg_console_login";
/// The longest a session lasts, whatever the token says (dev tokens never
/// expire).
pub const MAX_SESSION: Duration = Duration::from_secs(8 * 60 * 60);
/// How long a sign-in at the IdP may take.
const LOGIN_WINDOW: Duration = Duration::from_secs(10 * 60);

#[derive(Clone)]
pub struct Session {
    pub identity: Identity,
    pub csrf: String,
    expires: Instant,
}

/// A sign-in begun at the IdP: what the callback must match.
#[derive(Clone)]
pub struct PendingLogin {
    pub state: String,
    pub verifier: String,
    started: Instant,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Session>,
    logins: HashMap<String, PendingLogin>,
}

/// Console sessions and pending sign-ins kept in this gateway's memory.
#[derive(Clone, Default)]
pub struct Memory(Arc<Mutex<Inner>>);

/// Every console session and pending sign-in: in this gateway's memory, or
/// in the fleet's shared store, so any node serves a signed-in browser.
#[derive(Clone)]
pub enum Sessions {
    Memory(Memory),
    Shared(Arc<PgConsole>),
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::Memory(Memory::default())
    }
}

/// What the shared store keeps of a cookie's value: its SHA-256, so a
/// reader of the store cannot sign in with it.
fn stored_key(value: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    Sha256::digest(value.as_bytes()).to_vec()
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Randomness(#[from] crate::token::RandomnessError),
    #[error("the console's sessions cannot be stored: {0}")]
    Store(String),
}

/// Runs shared-store work off the async threads (its client blocks).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> taskgate_store::Result<T> + Send + 'static,
) -> Result<T, SessionError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(SessionError::Store(e.to_string())),
        Err(e) => Err(SessionError::Store(e.to_string())),
    }
}

impl Sessions {
    /// Opens a session for `identity` for `lifetime` (capped at
    /// [`MAX_SESSION`]); returns its id and lifetime.
    pub async fn open(
        &self,
        identity: Identity,
        lifetime: Duration,
    ) -> Result<(String, Duration), SessionError> {
        match self {
            Sessions::Memory(memory) => Ok(memory.open(identity, lifetime)?),
            Sessions::Shared(store) => {
                let (id, csrf) = (random_id()?, random_id()?);
                let lifetime = lifetime.min(MAX_SESSION);
                let json = serde_json::to_string(&identity)
                    .map_err(|e| SessionError::Store(e.to_string()))?;
                let (store, key) = (Arc::clone(store), stored_key(&id));
                blocking(move || store.open(&key, &json, &csrf, lifetime)).await?;
                Ok((id, lifetime))
            }
        }
    }

    /// The live session the request's cookie names. A store that cannot
    /// be read signs no one in.
    pub async fn get(&self, headers: &HeaderMap) -> Option<Session> {
        match self {
            Sessions::Memory(memory) => memory.get(headers),
            Sessions::Shared(store) => {
                let key = stored_key(&cookie(headers, COOKIE_NAME)?);
                let store = Arc::clone(store);
                let found = match blocking(move || store.get(&key)).await {
                    Ok(found) => found?,
                    Err(error) => {
                        tracing::warn!(%error, "cannot read a console session");
                        return None;
                    }
                };
                Some(Session {
                    identity: serde_json::from_str(&found.identity).ok()?,
                    csrf: found.csrf,
                    expires: Instant::now() + found.remaining,
                })
            }
        }
    }

    pub async fn close(&self, headers: &HeaderMap) {
        match self {
            Sessions::Memory(memory) => memory.close(headers),
            Sessions::Shared(store) => {
                let Some(id) = cookie(headers, COOKIE_NAME) else {
                    return;
                };
                let (store, key) = (Arc::clone(store), stored_key(&id));
                if let Err(error) = blocking(move || store.close(&key)).await {
                    tracing::warn!(%error, "cannot end a console session");
                }
            }
        }
    }

    /// Remembers a sign-in begun at the IdP; returns the key its cookie holds.
    pub async fn begin_login(
        &self,
        state: String,
        verifier: String,
    ) -> Result<String, SessionError> {
        match self {
            Sessions::Memory(memory) => Ok(memory.begin_login(state, verifier)?),
            Sessions::Shared(store) => {
                let key = random_id()?;
                let (store, stored) = (Arc::clone(store), stored_key(&key));
                blocking(move || store.begin_login(&stored, &state, &verifier, LOGIN_WINDOW))
                    .await?;
                Ok(key)
            }
        }
    }

    /// Takes the sign-in the browser's cookie names, once, if `state` is its.
    pub async fn finish_login(&self, headers: &HeaderMap, state: &str) -> Option<PendingLogin> {
        match self {
            Sessions::Memory(memory) => memory.finish_login(headers, state),
            Sessions::Shared(store) => {
                let key = stored_key(&cookie(headers, LOGIN_COOKIE)?);
                let store = Arc::clone(store);
                let (stored_state, verifier) =
                    blocking(move || store.finish_login(&key, LOGIN_WINDOW))
                        .await
                        .ok()??;
                same(&stored_state, state).then(|| PendingLogin {
                    state: stored_state,
                    verifier,
                    started: Instant::now(),
                })
            }
        }
    }
}

use crate::token::new_secret as random_id;

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// `Set-Cookie` for a session cookie: scoped to `/ui`, unreadable by script.
pub fn set_cookie(
    name: &str,
    value: &str,
    max_age: Duration,
    secure: bool,
    strict: bool,
) -> String {
    format!(
        "{name}={value}; Path=/ui; Max-Age={}; HttpOnly; SameSite={}{}",
        max_age.as_secs(),
        if strict { "Strict" } else { "Lax" },
        if secure { "; Secure" } else { "" }
    )
}

impl Memory {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a session for `identity` until `expires` (capped at
    /// [`MAX_SESSION`]); returns its id and lifetime.
    pub fn open(
        &self,
        identity: Identity,
        lifetime: Duration,
    ) -> Result<(String, Duration), crate::token::RandomnessError> {
        let id = random_id()?;
        let csrf = random_id()?;
        let lifetime = lifetime.min(MAX_SESSION);
        let mut inner = self.lock();
        let now = Instant::now();
        inner.sessions.retain(|_, s| s.expires > now);
        inner.sessions.insert(
            id.clone(),
            Session {
                identity,
                csrf,
                expires: now + lifetime,
            },
        );
        Ok((id, lifetime))
    }

    /// The live session the request's cookie names.
    pub fn get(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE_NAME)?;
        let mut inner = self.lock();
        match inner.sessions.get(&id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                inner.sessions.remove(&id);
                None
            }
            None => None,
        }
    }

    pub fn close(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, COOKIE_NAME) {
            self.lock().sessions.remove(&id);
        }
    }

    /// Remembers a sign-in begun at the IdP; returns the key its cookie holds.
    pub fn begin_login(
        &self,
        state: String,
        verifier: String,
    ) -> Result<String, crate::token::RandomnessError> {
        let key = random_id()?;
        let mut inner = self.lock();
        inner
            .logins
            .retain(|_, l| l.started.elapsed() < LOGIN_WINDOW);
        inner.logins.insert(
            key.clone(),
            PendingLogin {
                state,
                verifier,
                started: Instant::now(),
            },
        );
        Ok(key)
    }

    /// Takes the sign-in the browser's cookie names, once, if `state` is its.
    pub fn finish_login(&self, headers: &HeaderMap, state: &str) -> Option<PendingLogin> {
        let key = cookie(headers, LOGIN_COOKIE)?;
        let login = self.lock().logins.remove(&key)?;
        let fresh = login.started.elapsed() < LOGIN_WINDOW;
        (fresh && same(&login.state, state)).then_some(login)
    }
}

/// Compares secrets in constant time.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(cookie).unwrap_or(HeaderValue::from_static("")),
        );
        h
    }

    fn alice() -> Identity {
        Identity {
            subject: "alice".into(),
            issuer: "dev".into(),
            kind: taskgate_policy::IdentityKind::Human,
            groups: vec![],
            claims: Default::default(),
        }
    }

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_ends() {
        let sessions = Memory::default();
        let Ok((id, _)) = sessions.open(alice(), Duration::from_secs(60)) else {
            panic!("no randomness")
        };
        let found = sessions.get(&headers(&format!("other=1; {COOKIE_NAME}={id}")));
        assert_eq!(found.map(|s| s.identity.subject), Some("alice".into()));
        assert!(
            sessions
                .get(&headers(&format!("{COOKIE_NAME}=forged")))
                .is_none()
        );
        sessions.close(&headers(&format!("{COOKIE_NAME}={id}")));
        assert!(
            sessions
                .get(&headers(&format!("{COOKIE_NAME}={id}")))
                .is_none()
        );
        let Ok((short, _)) = sessions.open(alice(), Duration::ZERO) else {
            panic!("no randomness")
        };
        assert!(
            sessions
                .get(&headers(&format!("{COOKIE_NAME}={short}")))
                .is_none()
        );
    }

    #[test]
    fn a_sign_in_finishes_once_in_the_browser_that_began_it() {
        let sessions = Memory::default();
        let Ok(key) = sessions.begin_login("st".into(), "v".into()) else {
            panic!("no randomness")
        };
        let browser = headers(&format!("{LOGIN_COOKIE}={key}"));
        assert!(sessions.finish_login(&browser, "other-state").is_none());
        // A wrong state spends the sign-in too.
        let Ok(key) = sessions.begin_login("st".into(), "v".into()) else {
            panic!("no randomness")
        };
        let browser = headers(&format!("{LOGIN_COOKIE}={key}"));
        assert!(sessions.finish_login(&browser, "st").is_some());
        assert!(sessions.finish_login(&browser, "st").is_none());
        assert!(sessions.finish_login(&headers("x=1"), "st").is_none());
    }

    #[test]
    fn cookies_are_strict_and_unreadable_by_script() {
        let c = set_cookie(COOKIE_NAME, "abc", Duration::from_secs(5), true, true);
        assert_eq!(
            c,
            "tg_console=abc; Path=/ui; Max-Age=5; HttpOnly; SameSite=Strict; Secure"
        );
    }
}
