//! Who is asking for a page: a bearer token, the login cookie, or
//! `?token=` (what `berth dashboard` prints), checked against the
//! replicated token table as the gRPC guard checks it. A token in the URL
//! is swapped at once for an HttpOnly cookie and the browser sent on to
//! the same page without it, so it stays out of the address bar.

use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use berth_proto::web::{self, BoxFuture, Gate, Refusal, Viewer, TOKEN_COOKIE};

use super::html;
use super::App;
use crate::api::auth::{tokens, Identity, Role};
use crate::core::{convert, Controller};

/// Admits a token of a user of any role (viewers are the least, and may
/// read): what `rules::method` asks of the API's read methods.
pub struct TokenGate {
    pub ctl: Arc<Controller>,
    pub bootstrap_hash: Option<String>,
}

impl TokenGate {
    pub fn check(&self, token: Option<&str>) -> Result<Viewer, Refusal> {
        let token = token.ok_or_else(web::no_token)?;
        let now = convert::now_ms();
        let id = self
            .ctl
            .read(|s| tokens::authenticate(s, self.bootstrap_hash.as_deref(), token, now))
            .map_err(|bad| Refusal::Unauthenticated(bad.message().into()))?;
        match id {
            Identity::User { name, role } if role >= Role::Viewer => Ok(Viewer {
                name,
                role: role.word().into(),
            }),
            other => Err(Refusal::Forbidden(format!(
                "{} may not read this; use a user's token",
                other.describe()
            ))),
        }
    }
}

impl Gate for TokenGate {
    fn admit<'a>(&'a self, token: Option<&'a str>) -> BoxFuture<'a, Result<Viewer, Refusal>> {
        Box::pin(async move { self.check(token) })
    }
}

/// The viewer of a page at `here`; otherwise the response to send: the
/// login page, or (for `?token=`) the redirect that sets the cookie.
pub fn page_viewer(
    gate: &TokenGate,
    headers: &HeaderMap,
    url_token: Option<&str>,
    here: &str,
) -> Result<Viewer, Box<Response>> {
    if let Some(token) = url_token {
        return Err(Box::new(match gate.check(Some(token)) {
            Ok(_) => signed_in(token, here),
            Err(r) => login_page(StatusCode::UNAUTHORIZED, Some(&refusal_text(&r)), here),
        }));
    }
    let token = web::bearer(headers).or_else(|| web::cookie_token(headers));
    let had = token.is_some();
    gate.check(token.as_deref()).map_err(|r| {
        Box::new(match r {
            Refusal::Forbidden(m) => login_page(StatusCode::FORBIDDEN, Some(&m), here),
            _ if !had => login_page(StatusCode::UNAUTHORIZED, None, here),
            r => login_page(StatusCode::UNAUTHORIZED, Some(&refusal_text(&r)), here),
        })
    })
}

fn refusal_text(r: &Refusal) -> String {
    match r {
        Refusal::Unauthenticated(m) | Refusal::Forbidden(m) | Refusal::Unavailable(m) => m.clone(),
    }
}

/// Sets the cookie and sends the browser on to `next` (a path here).
fn signed_in(token: &str, next: &str) -> Response {
    let cookie =
        format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=43200");
    let mut resp = Redirect::to(safe_next(next)).into_response();
    if let Ok(v) = cookie.parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Only a path on this site: never `//elsewhere` or a full URL.
fn safe_next(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/"
    }
}

fn login_page(code: StatusCode, error: Option<&str>, next: &str) -> Response {
    let error = error
        .map(|e| format!("<p class=\"error\">{}</p>", html::esc(e)))
        .unwrap_or_default();
    let body = format!(
        "<main class=\"login\"><h1>Berth</h1>{error}\
         <p>Sign in with a Berth token (a viewer's is enough). <code>berth dashboard</code> prints a link that signs you in.</p>\
         <form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label>Token <input type=\"password\" name=\"token\" autocomplete=\"off\" required></label>\
         <button type=\"submit\">Sign in</button></form></main>",
        html::esc(safe_next(next))
    );
    let mut resp = (
        code,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html::document("Berth: sign in", &body, false),
    )
        .into_response();
    if code == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"berth\""),
        );
    }
    resp
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    token: String,
    #[serde(default)]
    next: String,
}

#[derive(serde::Deserialize, Default)]
pub struct NextQuery {
    #[serde(default)]
    next: Option<String>,
}

pub async fn login_form(Query(q): Query<NextQuery>) -> Response {
    login_page(StatusCode::OK, None, q.next.as_deref().unwrap_or("/"))
}

pub async fn login(State(app): State<App>, Form(f): Form<LoginForm>) -> Response {
    let token = f.token.trim();
    match app.gate.check(Some(token)) {
        Ok(_) => signed_in(token, &f.next),
        Err(r) => login_page(StatusCode::UNAUTHORIZED, Some(&refusal_text(&r)), &f.next),
    }
}

pub async fn logout() -> Response {
    let mut resp = Redirect::to("/login").into_response();
    let cookie = format!("{TOKEN_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
    if let Ok(v) = cookie.parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_never_sends_the_browser_off_site() {
        assert_eq!(safe_next("/jobs/abc"), "/jobs/abc");
        assert_eq!(safe_next("//evil.example/"), "/");
        assert_eq!(safe_next("https://evil.example/"), "/");
        assert_eq!(safe_next("/\\evil.example"), "/");
    }
}
