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

/// Every console session and pending sign-in of this gateway.
#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<Inner>>);

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

impl Sessions {
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
        let sessions = Sessions::default();
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
        let sessions = Sessions::default();
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
