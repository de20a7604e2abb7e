//! `berth token create|list|revoke` and `berth whoami`. Admins mint tokens;
//! the secret is printed once, alone on stdout's last line, so scripts can
//! take it with `tail -1`.

use anyhow::{bail, Result};
use berth_proto::v1::{
    CreateTokenRequest, ListTokensRequest, RevokeTokenRequest, Token, WhoAmIRequest,
};
use serde_json::json;

use crate::client::{status_message, Client};
use crate::output::{table, Format};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Mint a token for USER (prints the secret once). With --join: a
    /// one-time token an agent joins with (USER, if given, is the only node
    /// name it may take).
    Create {
        user: Option<String>,
        /// admin, user or viewer.
        #[arg(long, default_value = "user", conflicts_with = "join")]
        role: String,
        /// A node join token instead of a user's.
        #[arg(long)]
        join: bool,
        /// Lifetime, e.g. 90d, 12h (default: never for users, 24h for joins).
        #[arg(long)]
        expires: Option<humantime::Duration>,
    },
    /// Every token's id, user, role and expiry (never the secrets).
    List,
    /// Revoke a token by id, or every token of a user: it stops working at once.
    Revoke { token: String },
}

fn row(t: &Token) -> Vec<String> {
    let when = |ms: i64| {
        if ms == 0 {
            "never".to_string()
        } else {
            chrono::DateTime::from_timestamp_millis(ms)
                .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_default()
        }
    };
    vec![
        t.id.clone(),
        t.user.clone(),
        t.role.clone(),
        when(t.created_ms),
        when(t.expires_ms),
    ]
}

fn json_of(t: &Token) -> serde_json::Value {
    json!({"id": t.id, "user": t.user, "role": t.role, "created_ms": t.created_ms, "expires_ms": t.expires_ms})
}

pub async fn run(client: &Client, cmd: Command, format: Format) -> Result<()> {
    let mut access = client.access();
    match cmd {
        Command::Create {
            user,
            role,
            join,
            expires,
        } => {
            if !join && user.is_none() {
                bail!("say whose token it is: berth token create USER [--role admin|user|viewer]");
            }
            let r = access
                .create_token(CreateTokenRequest {
                    user: user.unwrap_or_default(),
                    role: if join { "join".into() } else { role },
                    ttl_ms: expires.map_or(0, |d| d.as_millis() as i64),
                })
                .await
                .map_err(status_message)?
                .into_inner();
            let t = r.token.unwrap_or_default();
            if format == Format::Json {
                let mut v = json_of(&t);
                v["secret"] = json!(r.secret);
                println!("{v}");
            } else {
                let subject = if join {
                    "a join token".to_string()
                } else {
                    format!("a {} token for {}", t.role, t.user)
                };
                eprintln!("created {subject} (id {}); the secret is shown once:", t.id);
                println!("{}", r.secret);
            }
        }
        Command::List => {
            let tokens = access
                .list_tokens(ListTokensRequest {})
                .await
                .map_err(status_message)?
                .into_inner()
                .tokens;
            if format == Format::Json {
                let v: Vec<_> = tokens.iter().map(json_of).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let rows = tokens.iter().map(row).collect();
                println!(
                    "{}",
                    table(&["ID", "USER", "ROLE", "CREATED", "EXPIRES"], rows)
                );
            }
        }
        Command::Revoke { token } => {
            let revoked = access
                .revoke_token(RevokeTokenRequest { token })
                .await
                .map_err(status_message)?
                .into_inner()
                .revoked;
            for t in revoked {
                println!("revoked {} ({} {})", t.id, t.role, t.user);
            }
        }
    }
    Ok(())
}

pub async fn whoami(client: &Client, format: Format) -> Result<()> {
    let me = client
        .retry(|c| async move { c.access().who_am_i(WhoAmIRequest {}).await })
        .await?;
    if format == Format::Json {
        println!(
            "{}",
            json!({"kind": me.kind, "name": me.name, "role": me.role})
        );
    } else if me.role.is_empty() {
        println!("{} {}", me.kind, me.name);
    } else {
        println!("{} ({})", me.name, me.role);
    }
    Ok(())
}
