//! Signing in: at the configured OIDC issuer by the authorization code
//! flow with PKCE (S256), or, for dev identities on a local gateway, by
//! pasting the token. The IdP's access token is verified like any API
//! caller's and then dropped: the session keeps only the identity, and ends
//! no later than the token would have.

use std::time::Duration;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use maud::html;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::session::{COOKIE_NAME, LOGIN_COOKIE, MAX_SESSION, set_cookie};
use super::{CsrfForm, Refused, Viewer, layout};
use crate::api::{ApiError, AppState};
use crate::identity::AuthError;

/// How long the gateway waits for the IdP's discovery and token endpoints.
const IDP_TIMEOUT: Duration = Duration::from_secs(10);

fn secure(state: &AppState) -> bool {
    state.public_url.starts_with("https://")
}

fn redirect_uri(state: &AppState) -> String {
    format!("{}/ui/callback", state.public_url.trim_end_matches('/'))
}

/// A POST sent by another site (`Sec-Fetch-Site`, or an `Origin` that is
/// not this one) is refused before anything else, sign-in included.
pub fn check_same_origin(headers: &HeaderMap) -> Result<(), Refused> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    // Browsers that send Sec-Fetch-Site say it outright; for others the
    // Origin, when sent, must be this host.
    let same = match text("sec-fetch-site") {
        Some(site) => matches!(site, "same-origin" | "none"),
        None => match (text(header::ORIGIN.as_str()), text(header::HOST.as_str())) {
            (Some(origin), Some(host)) => origin.split("://").nth(1) == Some(host),
            (Some(_), None) => false,
            (None, _) => true,
        },
    };
    if same {
        Ok(())
    } else {
        Err(Refused::Api(ApiError::forbidden(
            "this form was sent from another site",
        )))
    }
}

#[derive(Deserialize)]
pub struct SignInNotice {
    error: Option<String>,
}

pub async fn page(State(state): State<AppState>, Query(notice): Query<SignInNotice>) -> Response {
    let issuer = state.config.console.issuer.clone();
    let dev = !state.config.identity.dev.is_empty();
    layout::bare(
        "Sign in",
        html! {
            main.narrow {
                h1 { "Sign in to the console" }
                @if let Some(error) = &notice.error {
                    p.error role="alert" { (layout::shown(error)) }
                }
                @if let Some(issuer) = &issuer {
                    div.panel {
                        p { "Sign in at your identity provider (" (layout::shown(issuer)) ")." }
                        a.button href="/ui/login/oidc" { "Sign in with " (layout::shown(issuer)) }
                    }
                }
                @if dev {
                    div.panel {
                        p.muted { "Local gateway: sign in as a dev identity by pasting its token. Never on a shared gateway." }
                        form method="post" action="/ui/login/token" {
                            label for="token" { "Dev token" }
                            " "
                            input type="password" id="token" name="token" autocomplete="off" required;
                            " "
                            button type="submit" { "Sign in" }
                        }
                    }
                }
                @if issuer.is_none() && !dev {
                    p.muted { "No sign-in is configured: set [console] issuer and client_id." }
                }
            }
        },
    )
    .into_response()
}

fn to_login(error: &str) -> Response {
    let mut url = url::Url::parse("http://x/ui/login").ok();
    if let Some(u) = url.as_mut() {
        u.query_pairs_mut().append_pair("error", error);
    }
    let target = url.map_or_else(
        || "/ui/login".to_owned(),
        |u| format!("/ui/login?{}", u.query().unwrap_or_default()),
    );
    Redirect::to(&target).into_response()
}

/// Opens a session and sends the browser on to the console. The page that
/// does it is served from here, so the navigation to `/ui` starts on this
/// site and the `SameSite=Strict` cookie goes with it.
async fn signed_in(
    state: &AppState,
    identity: taskgate_policy::Identity,
    lifetime: Duration,
) -> Response {
    let (id, lifetime) = match state.console.open(identity, lifetime).await {
        Ok(opened) => opened,
        Err(e) => return Refused::Api(ApiError::internal(e)).into_response(),
    };
    let page = layout::bare(
        "Signed in",
        html! {
            meta http-equiv="refresh" content="0;url=/ui/reviews";
            main.narrow { p { "Signed in. " a href="/ui/reviews" { "Continue" } } }
        },
    );
    let mut response = page.into_response();
    let cookies = [
        set_cookie(COOKIE_NAME, &id, lifetime, secure(state), true),
        set_cookie(LOGIN_COOKIE, "", Duration::ZERO, secure(state), false),
    ];
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

#[derive(Deserialize)]
pub struct TokenForm {
    token: String,
}

/// A dev identity pasting its token. Tokens of other providers are
/// refused here: they sign in at their IdP.
pub async fn with_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    if let Err(refused) = check_same_origin(&headers) {
        return refused.into_response();
    }
    match state.auth.authenticate(form.token.trim()).await {
        Ok(identity) if identity.issuer == "dev" => signed_in(&state, identity, MAX_SESSION).await,
        Ok(_) => to_login("sign in with your identity provider, not by pasting its token"),
        Err(AuthError::Invalid(reason)) => to_login(&reason),
        Err(AuthError::NotMine) => to_login("that token is not valid here"),
    }
}

async fn discover(http: &reqwest::Client, issuer: &str) -> Result<(String, String), String> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let doc: Value = http
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("cannot read {url}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("{url} is not JSON: {e}"))?;
    let endpoint = |key: &str| {
        doc.get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("{url} names no {key}"))
    };
    Ok((
        endpoint("authorization_endpoint")?,
        endpoint("token_endpoint")?,
    ))
}

/// The console issuer's URL (the config may name it).
fn issuer_url(state: &AppState) -> Option<String> {
    let wanted = state.config.console.issuer.as_deref()?;
    state
        .config
        .identity
        .oidc
        .iter()
        .find(|i| i.issuer == wanted || i.name.as_deref() == Some(wanted))
        .map(|i| i.issuer.clone())
}

fn http() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(IDP_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())
}

/// Sends the browser to the IdP with a fresh state and PKCE
/// challenge, remembered under a cookie of this browser's.
pub async fn start(State(state): State<AppState>) -> Response {
    let (Some(issuer), Some(client_id)) =
        (issuer_url(&state), state.config.console.client_id.clone())
    else {
        return to_login("signing in at an identity provider is not configured");
    };
    let discovered = match http() {
        Ok(http) => discover(&http, &issuer).await,
        Err(e) => Err(e),
    };
    let (authorize, _) = match discovered {
        Ok(endpoints) => endpoints,
        Err(e) => {
            tracing::warn!(error = %e, "console sign-in: issuer discovery failed");
            return to_login(
                "the identity provider cannot be reached; the gateway's log has details",
            );
        }
    };
    let secrets = (|| {
        Ok::<_, crate::token::RandomnessError>((
            crate::token::new_secret()?,
            crate::token::new_secret()?,
        ))
    })();
    let Ok((login_state, verifier)) = secrets else {
        return Refused::Api(ApiError::internal("no randomness")).into_response();
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let Ok(mut url) = url::Url::parse(&authorize) else {
        return to_login("the identity provider's authorization endpoint is not a URL");
    };
    let mut scopes = vec!["openid".to_owned()];
    scopes.extend(
        state
            .config
            .console
            .scopes
            .iter()
            .filter(|s| *s != "openid")
            .cloned(),
    );
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", &redirect_uri(&state))
        .append_pair("scope", &scopes.join(" "))
        .append_pair("state", &login_state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let key = match state.console.begin_login(login_state, verifier).await {
        Ok(key) => key,
        Err(e) => return Refused::Api(ApiError::internal(e)).into_response(),
    };
    let mut response = Redirect::to(url.as_str()).into_response();
    // Lax: it must come back with the IdP's redirect, a cross-site GET.
    let cookie = set_cookie(
        LOGIN_COOKIE,
        &key,
        Duration::from_secs(600),
        secure(&state),
        false,
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The seconds until the JWT's `exp` (already verified by the provider).
fn lifetime_of(token: &str) -> Duration {
    let exp = token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|claims| claims.get("exp").and_then(Value::as_u64));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    exp.map_or(MAX_SESSION, |exp| {
        Duration::from_secs(exp.saturating_sub(now))
    })
}

/// The IdP sends the browser back: the state must be this browser's, the
/// code is exchanged with the PKCE verifier, the token verified.
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(back): Query<Callback>,
) -> Response {
    if let Some(error) = back.error {
        let detail = back.error_description.unwrap_or_default();
        return to_login(&format!("the identity provider refused: {error} {detail}"));
    }
    let (Some(code), Some(returned_state)) = (back.code, back.state) else {
        return to_login("the identity provider's answer had no code");
    };
    let Some(login) = state.console.finish_login(&headers, &returned_state).await else {
        return to_login(
            "this sign-in was not started in this browser, or took too long: start again",
        );
    };
    let (Some(issuer), Some(client_id)) =
        (issuer_url(&state), state.config.console.client_id.clone())
    else {
        return to_login("signing in at an identity provider is not configured");
    };
    let exchanged = async {
        let http = http()?;
        let (_, token_endpoint) = discover(&http, &issuer).await?;
        let answer: Value = http
            .post(&token_endpoint)
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", redirect_uri(&state).as_str()),
                ("client_id", client_id.as_str()),
                ("code_verifier", login.verifier.as_str()),
            ])
            .send()
            .await
            .map_err(|e| format!("token endpoint: {e}"))?
            .json()
            .await
            .map_err(|e| format!("token endpoint answer: {e}"))?;
        answer
            .get("access_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                let error = answer
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("no access_token");
                format!("the token endpoint answered {error}")
            })
    }
    .await;
    let token = match exchanged {
        Ok(token) => token,
        Err(e) => {
            tracing::warn!(error = %e, "console sign-in: code exchange failed");
            return to_login(
                "the identity provider did not give a token; the gateway's log has details",
            );
        }
    };
    match state.auth.authenticate(&token).await {
        Ok(identity) => {
            tracing::info!(subject = ?identity.subject, issuer = %identity.issuer, "console sign-in");
            signed_in(&state, identity, lifetime_of(&token)).await
        }
        Err(AuthError::Invalid(reason)) => to_login(&format!(
            "the identity provider's token was not accepted: {reason} (the console needs an access token for the gateway's audience, as `taskgate login` gets)"
        )),
        Err(AuthError::NotMine) => {
            to_login("the identity provider's token is from no configured issuer")
        }
    }
}

pub async fn logout(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Refused> {
    viewer.check_form(&headers, &form.csrf)?;
    state.console.close(&headers).await;
    let mut response = Redirect::to("/ui/login").into_response();
    if let Ok(value) = HeaderValue::from_str(&set_cookie(
        COOKIE_NAME,
        "",
        Duration::ZERO,
        secure(&state),
        true,
    )) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn forms_from_other_sites_are_refused() {
        let ok = |h: &[(&'static str, &'static str)]| check_same_origin(&headers(h)).is_ok();
        assert!(ok(&[("sec-fetch-site", "same-origin")]));
        assert!(!ok(&[("sec-fetch-site", "cross-site")]));
        assert!(!ok(&[("sec-fetch-site", "same-site")]));
        assert!(ok(&[("origin", "http://gw:8080"), ("host", "gw:8080")]));
        assert!(!ok(&[
            ("origin", "http://evil.example"),
            ("host", "gw:8080")
        ]));
        assert!(!ok(&[("origin", "null"), ("host", "gw:8080")]));
        assert!(ok(&[("host", "gw:8080")]));
    }
}
