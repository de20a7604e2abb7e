//! Tokens: `berth_ID_SECRET`, 256 random bits of secret. The log keeps the
//! public id and a SHA-256 of the whole token; checking one hashes what was
//! presented and compares in constant time, so neither the log, a snapshot
//! nor a timing reveals a secret. The static bootstrap token (from
//! `berth-controller tls init`, like `nomad acl bootstrap`'s first token) is
//! checked the same way against the hash in the controller's TLS dir.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Identity, Role};
use crate::state::{State, TokenRecord};

/// The bootstrap admin's user name.
pub const BOOTSTRAP_USER: &str = "admin";

/// A new token: (public id, whole secret).
pub fn mint() -> (String, String) {
    let id = hex::encode(rand::random::<[u8; 4]>());
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let token = format!("berth_{id}_{secret}");
    (id, token)
}

pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The public id of a well-formed token.
pub fn id_of(token: &str) -> Option<&str> {
    let rest = token.strip_prefix("berth_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 8 && secret.len() == 64).then_some(id)
}

/// Why a presented token does not authenticate.
#[derive(Debug, PartialEq, Eq)]
pub enum Bad {
    Malformed,
    Unknown,
    Expired,
    /// A join token is for `Join` alone.
    JoinOnly,
}

impl Bad {
    pub fn message(&self) -> &'static str {
        match self {
            Bad::Malformed => "the token is malformed (tokens look like berth_XXXXXXXX_…): check BERTH_TOKEN or the config file",
            Bad::Unknown => "the token is unknown or was revoked: ask an admin for a new one (`berth token create USER`)",
            Bad::Expired => "the token has expired: ask an admin for a new one (`berth token create USER`)",
            Bad::JoinOnly => "a join token only joins an agent (berth-agent --join-token); use a user token",
        }
    }
}

/// The record a token matches, unexpired at `now_ms`.
pub fn lookup<'a>(state: &'a State, token: &str, now_ms: i64) -> Result<&'a TokenRecord, Bad> {
    let id = id_of(token).ok_or(Bad::Malformed)?;
    let rec = state.tokens.get(id).ok_or(Bad::Unknown)?;
    if !same(&hash(token), &rec.hash) {
        return Err(Bad::Unknown);
    }
    if rec.expired(now_ms) {
        return Err(Bad::Expired);
    }
    Ok(rec)
}

/// The user a token authenticates: the bootstrap admin, or a replicated
/// user token.
pub fn authenticate(
    state: &State,
    bootstrap_hash: Option<&str>,
    token: &str,
    now_ms: i64,
) -> Result<Identity, Bad> {
    if let Some(h) = bootstrap_hash {
        if same(&hash(token), h) {
            return Ok(Identity::User {
                name: BOOTSTRAP_USER.into(),
                role: Role::Admin,
            });
        }
    }
    let rec = lookup(state, token, now_ms)?;
    let role = Role::parse(&rec.role).ok_or(Bad::JoinOnly)?;
    Ok(Identity::User {
        name: rec.user.clone(),
        role,
    })
}

/// `valid_user`, as the refusal a request gets; `what` names the field
/// ("user name", "node name").
pub fn check_name(what: &str, name: &str) -> Result<(), tonic::Status> {
    if valid_user(name) {
        return Ok(());
    }
    Err(tonic::Status::invalid_argument(format!(
        "{what} {name:?} must be 1-64 letters, digits, '.', '_' or '-'"
    )))
}

/// A user name can be a token's subject, a label and a path component.
pub fn valid_user(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with(role: &str, expires_ms: i64) -> (State, String) {
        let (id, token) = mint();
        let mut s = State::default();
        s.tokens.insert(
            id.clone(),
            TokenRecord {
                id,
                user: "alice".into(),
                role: role.into(),
                hash: hash(&token),
                created_ms: 0,
                expires_ms,
            },
        );
        (s, token)
    }

    #[test]
    fn a_token_authenticates_its_user_until_it_expires_or_is_revoked() {
        let (mut s, token) = state_with("user", 1000);
        let alice = Identity::User {
            name: "alice".into(),
            role: Role::User,
        };
        assert_eq!(authenticate(&s, None, &token, 999), Ok(alice));
        assert_eq!(authenticate(&s, None, &token, 1000), Err(Bad::Expired));
        s.tokens.clear();
        assert_eq!(authenticate(&s, None, &token, 0), Err(Bad::Unknown));
    }

    #[test]
    fn a_guessed_secret_for_a_real_id_is_unknown() {
        let (s, token) = state_with("admin", 0);
        let mut forged = token.clone();
        forged.replace_range(forged.len() - 4.., "0000");
        if forged != token {
            assert_eq!(authenticate(&s, None, &forged, 0), Err(Bad::Unknown));
        }
        assert_eq!(authenticate(&s, None, "hunter2", 0), Err(Bad::Malformed));
    }

    #[test]
    fn join_tokens_are_not_user_credentials() {
        let (s, token) = state_with("join", 0);
        assert_eq!(authenticate(&s, None, &token, 0), Err(Bad::JoinOnly));
    }

    #[test]
    fn the_bootstrap_token_is_an_admin() {
        let (_, token) = mint();
        let h = hash(&token);
        let id = authenticate(&State::default(), Some(&h), &token, 0).unwrap();
        assert!(id.is_admin());
    }

    #[test]
    fn user_names_are_path_safe() {
        assert!(valid_user("alice.b-2"));
        for bad in ["", "..", "a/b", "a b", "a:b"] {
            assert!(!valid_user(bad), "{bad}");
        }
    }
}
