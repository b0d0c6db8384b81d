//! The `latchkey` command line: `serve`, `migrate`, `version` and the admin
//! commands, which work directly on the database (also while a server runs).

mod import;
mod mail;
mod webhooks;

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use latchkey_verify::SigningAlg;

pub use self::import::ImportFrom;
pub use self::mail::MailCommand;
pub use self::webhooks::WebhooksCommand;
use crate::app::{App, open_store, open_store_migrating};
use crate::config::{DeploymentArgs, ServerArgs, Settings, SettingsArgs};
use crate::domain::AuthError;
use crate::domain::agents::device_name;
use crate::domain::clock::SystemClock;
use crate::domain::clock::rfc3339;
use crate::domain::secrets::MasterKey;
use crate::domain::text::printable;
use crate::domain::{Actor, Session, User};
use crate::store::snapshot::SNAPSHOT_VERSION;
use crate::store::{Snapshot, StoreError};

#[derive(Debug, Parser)]
#[command(
    name = "latchkey",
    version,
    about = "Self-hosted token authentication server"
)]
pub struct Cli {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The settings this command was given: the server's from `serve`'s
    /// flags (or their variables), from the environment for other commands.
    pub fn settings_args(&self) -> anyhow::Result<SettingsArgs> {
        let server = match &self.command {
            Command::Serve(server) => server.as_ref().clone(),
            _ => ServerArgs::from_env().context("reading LATCHKEY_* variables")?,
        };
        Ok(SettingsArgs {
            deployment: self.deployment.clone(),
            server,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (no configuration needed).
    Serve(Box<ServerArgs>),
    /// Apply database migrations and exit.
    Migrate {
        /// Do not take PostgreSQL's migration lock (an advisory lock), for
        /// databases without one such as CockroachDB: run it once, from one
        /// host, before any instance starts. SQLite takes no such lock.
        #[arg(long)]
        no_lock: bool,
    },
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// List or revoke a user's sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// List or rotate signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage client credentials: resource servers (introspection, revocation feed) and admin clients (admin API and console).
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Test mail delivery and look at the outbox.
    #[command(subcommand)]
    Mail(MailCommand),
    /// Manage the endpoints security events are delivered to.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Write every user, session, key and event of the database to a file, to
    /// move the deployment to another database (the file holds password
    /// hashes: keep it secret).
    Export {
        /// Output file (created with mode 0600; default standard output).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Load an export into the configured database, which must be empty (the
    /// same master key must be configured, so sessions and keys keep
    /// working); or bring users from another system: `import django`,
    /// `import users`.
    #[command(args_conflicts_with_subcommands = true)]
    Import {
        /// The file written by `latchkey export`.
        #[arg(long)]
        input: Option<PathBuf>,
        #[command(subcommand)]
        from: Option<ImportFrom>,
    },
    /// Print the version.
    Version,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user; the password is read from standard input.
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: Option<String>,
        /// Read the password from standard input (required: never pass it as an argument).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List users.
    List {
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
    /// Show one user.
    Show { user: String },
    /// Disable a user and revoke all their sessions.
    Disable { user: String },
    /// Enable a disabled user.
    Enable { user: String },
    /// Set a user's password (read from standard input); every session of the user ends.
    SetPassword {
        user: String,
        /// Read the password from standard input (required: never pass it as an argument).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Mark a user's email address verified.
    VerifyEmail { user: String },
    /// Remove a user's second factors (authenticator app, recovery codes and
    /// passkeys), for one who lost them: the password alone signs in again.
    ResetMfa { user: String },
    /// Delete a user and revoke all their sessions.
    Delete { user: String },
    /// A user's security events, newest first (a deleted user's by id).
    Events {
        user: String,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List a user's live sessions.
    List {
        #[arg(long)]
        user: String,
    },
    /// Revoke one session of a user, all of a user's, or (`--all`) every
    /// session of every user: the step that follows restoring a backup.
    Revoke {
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        user: Option<String>,
        #[arg(long, requires = "user")]
        session: Option<String>,
        /// Every session of every user; also acknowledges a restored database.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List signing keys.
    List,
    /// Start signing with a new key; old keys stay published until their tokens expire.
    Rotate {
        /// Algorithm of the new key (default: the configured signing_alg).
        #[arg(long)]
        alg: Option<SigningAlg>,
        /// Sign with the new key at once instead of after it has been
        /// published for two minutes (for a compromised key; verifiers with a
        /// cached JWKS may refuse new tokens until they refetch it).
        #[arg(long)]
        now: bool,
    },
    /// Withdraw a leaked key at once: it leaves the JWKS and every token it
    /// signed is refused, by every instance and by verifiers that follow the
    /// revocation feed. A key that signs now is first replaced by a new one.
    Revoke {
        /// The key id; one that begins with `-` is taken as it is.
        #[arg(allow_hyphen_values = true)]
        kid: String,
        /// Algorithm of the replacement key, if one is needed (default: signing_alg).
        #[arg(long)]
        alg: Option<SigningAlg>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Create credentials for a resource server (or, with `--admin`, for a
    /// caller of the admin API); the secret is shown once.
    Add {
        name: String,
        /// An admin client: it may call /admin/v1 and sign in to the console.
        #[arg(long)]
        admin: bool,
    },
    /// List clients.
    List,
    /// Remove a client's credentials.
    Remove { id: String },
}

/// Runs a command other than `serve`.
pub async fn run_admin(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve(_) => bail!("serve is not an admin command"),
        Command::Version => println!("latchkey {}", env!("CARGO_PKG_VERSION")),
        Command::Migrate { no_lock } => {
            open_store_migrating(&settings, !no_lock).await?;
            println!("migrations applied to {}", settings.database_url.redacted());
        }
        Command::Export { output } => export(&settings, output.as_deref()).await?,
        Command::Import { input, from } => match (input, from) {
            (Some(input), None) => import(&settings, &input).await?,
            (None, Some(from)) => import::run(from, settings).await?,
            _ => bail!("give --input FILE (an export), or `import django` or `import users`"),
        },
        Command::Users(cmd) => {
            users(cmd, &App::build(settings, Arc::new(SystemClock)).await?).await?
        }
        Command::Sessions(cmd) => {
            sessions(cmd, &App::build(settings, Arc::new(SystemClock)).await?).await?
        }
        Command::Clients(cmd) => {
            clients(cmd, &App::build(settings, Arc::new(SystemClock)).await?).await?
        }
        Command::Keys(cmd) => {
            keys(cmd, &App::build(settings, Arc::new(SystemClock)).await?).await?
        }
        Command::Mail(cmd) => {
            mail::run(cmd, &App::build(settings, Arc::new(SystemClock)).await?).await?
        }
        Command::Webhooks(cmd) => {
            webhooks::run(cmd, &App::build(settings, Arc::new(SystemClock)).await?).await?
        }
    }
    Ok(())
}

/// The password piped to standard input, without its final line break.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("reading the password from standard input")?;
    let trimmed = password
        .strip_suffix('\n')
        .map(|p| p.strip_suffix('\r').unwrap_or(p))
        .unwrap_or(&password);
    Ok(trimmed.to_string())
}

fn explain(e: AuthError) -> anyhow::Error {
    match e {
        AuthError::NotFound => anyhow::anyhow!("no such user, session or client"),
        other => anyhow::anyhow!("{other}"),
    }
}

async fn users(cmd: UsersCommand, app: &App) -> anyhow::Result<()> {
    let auth = &app.state.auth;
    match cmd {
        UsersCommand::Add {
            email,
            name,
            password_stdin: _,
        } => {
            let password = password_from_stdin()?;
            let user = auth
                .add_user(&email, &password, name.as_deref(), &Actor::cli())
                .await
                .map_err(explain)?;
            println!("created user {} <{}>", user.id, printable(&user.email));
        }
        UsersCommand::SetPassword {
            user,
            password_stdin: _,
        } => {
            let password = password_from_stdin()?;
            let user = auth
                .set_password(&user, &password, &Actor::cli())
                .await
                .map_err(explain)?;
            println!(
                "password set for {} <{}>; every session of the user ended",
                user.id,
                printable(&user.email)
            );
        }
        UsersCommand::ResetMfa { user } => {
            let (user, totp, passkeys) = auth
                .reset_second_factors(&user, &Actor::cli())
                .await
                .map_err(explain)?;
            let app = if totp { "removed" } else { "was not set up" };
            println!(
                "{} <{}>: authenticator app {app}; {passkeys} passkey(s) removed",
                user.id,
                printable(&user.email)
            );
        }
        UsersCommand::VerifyEmail { user } => {
            let user = auth
                .verify_email(&user, &Actor::cli())
                .await
                .map_err(explain)?;
            println!("verified {} <{}>", user.id, printable(&user.email));
        }
        UsersCommand::List { limit, offset } => {
            println!("{:<36}  {:<32}  {:<8}  CREATED", "ID", "EMAIL", "STATUS");
            for u in auth.list_users(limit, offset, "").await.map_err(explain)? {
                println!(
                    "{:<36}  {:<32}  {:<8}  {}",
                    u.id,
                    printable(&u.email),
                    status(&u),
                    rfc3339(u.created_at)
                );
            }
        }
        UsersCommand::Show { user } => {
            let (u, sessions) = auth.user_sessions(&user).await.map_err(explain)?;
            print_user(&u, sessions.len());
            let (totp, passkeys) = auth.second_factors_of(&u.id).await.map_err(explain)?;
            println!("two-step:       {}", if totp { "on" } else { "off" });
            println!("passkeys:       {passkeys}");
        }
        UsersCommand::Disable { user } => {
            let u = auth
                .disable_user(&user, &Actor::cli())
                .await
                .map_err(explain)?;
            println!(
                "disabled {} <{}>; all sessions revoked",
                u.id,
                printable(&u.email)
            );
        }
        UsersCommand::Enable { user } => {
            let u = auth
                .enable_user(&user, &Actor::cli())
                .await
                .map_err(explain)?;
            println!("enabled {} <{}>", u.id, printable(&u.email));
        }
        UsersCommand::Delete { user } => {
            let u = auth
                .delete_user(&user, &Actor::cli())
                .await
                .map_err(explain)?;
            println!(
                "deleted {} <{}>; all sessions revoked",
                u.id,
                printable(&u.email)
            );
        }
        UsersCommand::Events { user, limit } => {
            let events = auth.user_events(&user, limit).await.map_err(explain)?;
            if events.is_empty() {
                bail!("no events for {user}");
            }
            println!("{:<20}  {:<24}  {:<15}  DETAIL", "TIME", "EVENT", "IP");
            for e in events {
                println!(
                    "{:<20}  {:<24}  {:<15}  {}",
                    rfc3339(e.created_at),
                    e.kind,
                    e.ip.as_deref().unwrap_or("-"),
                    printable(e.detail.as_deref().unwrap_or(""))
                );
            }
        }
    }
    Ok(())
}

fn status(u: &User) -> &'static str {
    if u.disabled { "disabled" } else { "active" }
}

fn print_user(u: &User, live_sessions: usize) {
    println!("id:             {}", u.id);
    println!("email:          {}", printable(&u.email));
    println!(
        "name:           {}",
        printable(u.name.as_deref().unwrap_or("-"))
    );
    println!("status:         {}", status(u));
    println!("email_verified: {}", u.email_verified);
    println!("created_at:     {}", rfc3339(u.created_at));
    println!("live sessions:  {live_sessions}");
}

async fn sessions(cmd: SessionsCommand, app: &App) -> anyhow::Result<()> {
    let auth = &app.state.auth;
    match cmd {
        SessionsCommand::List { user } => {
            let (_, sessions) = auth.user_sessions(&user).await.map_err(explain)?;
            println!(
                "{:<36}  {:<20}  {:<20}  {:<15}  {:<24}  USER AGENT",
                "SESSION", "CREATED", "LAST USED", "IP", "DEVICE"
            );
            for s in &sessions {
                print_session(s);
            }
        }
        SessionsCommand::Revoke {
            user: Some(user),
            session,
            all: false,
        } => {
            let n = auth
                .admin_revoke_sessions(&user, session.as_deref(), &Actor::cli())
                .await
                .map_err(explain)?;
            println!("revoked {n} session(s)");
        }
        SessionsCommand::Revoke { .. } => {
            let (sessions, users) = auth
                .revoke_everything(&Actor::cli())
                .await
                .map_err(explain)?;
            // Adopts the database's new identity here, as every server will.
            auth.check_restore(&app.state.guard).await?;
            println!(
                "revoked {sessions} session(s) of {users} user(s); every access token issued so far is refused"
            );
        }
    }
    Ok(())
}

fn print_session(s: &Session) {
    let agent = s.user_agent.as_deref();
    let device = agent.and_then(device_name).unwrap_or_else(|| "-".into());
    println!(
        "{:<36}  {:<20}  {:<20}  {:<15}  {:<24}  {}",
        s.id,
        rfc3339(s.created_at),
        rfc3339(s.last_used_at),
        s.ip.as_deref().unwrap_or("-"),
        printable(&device),
        printable(agent.unwrap_or("-"))
    );
}

async fn keys(cmd: KeysCommand, app: &App) -> anyhow::Result<()> {
    let auth = &app.state.auth;
    match cmd {
        KeysCommand::List => {
            let (signing, now) = (auth.signing_kid(), auth.now());
            println!(
                "{:<16}  {:<6}  {:<20}  {:<20}  {:<20}  STATE",
                "KID", "ALG", "PUBLISHED", "SIGNS FROM", "PUBLISHED UNTIL"
            );
            for k in auth.list_keys().await.map_err(explain)? {
                let state = match () {
                    _ if k.kid == signing => "signing",
                    _ if k.activates_at > now => "published, not yet signing",
                    _ if k.retired_at.is_some_and(|r| r <= now) => "retired",
                    _ => "active",
                };
                let until = k.expires_at.map_or_else(|| "-".to_string(), rfc3339);
                println!(
                    "{:<16}  {:<6}  {:<20}  {:<20}  {:<20}  {state}",
                    k.kid,
                    k.alg,
                    rfc3339(k.created_at),
                    rfc3339(k.activates_at),
                    until
                );
            }
        }
        KeysCommand::Rotate { alg, now } => {
            let alg = alg.unwrap_or(app.settings.signing_alg);
            let (kid, from) = auth
                .rotate_keys(alg, now, &Actor::cli())
                .await
                .map_err(explain)?;
            println!(
                "published {kid} ({alg}); it signs from {} on, and the previous keys stay published until their tokens expire",
                rfc3339(from)
            );
        }
        KeysCommand::Revoke { kid, alg } => {
            let alg = alg.unwrap_or(app.settings.signing_alg);
            let replacement = match auth.withdraw_key(alg, &kid, &Actor::cli()).await {
                Err(AuthError::NotFound) => bail!("no published signing key has the kid {kid}"),
                other => other.map_err(explain)?,
            };
            if let Some(new) = replacement {
                println!("{kid} was signing: {new} ({alg}) signs from now on");
            }
            println!("withdrew {kid}: it left the JWKS, and every token it signed is refused");
        }
    }
    Ok(())
}

async fn export(settings: &Settings, output: Option<&Path>) -> anyhow::Result<()> {
    let snapshot = open_store(settings).await?.export().await?;
    let json = serde_json::to_vec(&snapshot)?;
    match output {
        Some(path) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            file.write_all(&json)?;
            file.sync_all()?;
            eprintln!(
                "exported {} users, {} sessions, {} keys to {}",
                snapshot.users.len(),
                snapshot.sessions.len(),
                snapshot.signing_keys.len(),
                path.display()
            );
        }
        None => std::io::stdout().write_all(&json)?,
    }
    Ok(())
}

async fn import(settings: &Settings, input: &Path) -> anyhow::Result<()> {
    let text = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let snapshot: Snapshot =
        serde_json::from_slice(&text).context("the file is not a latchkey export")?;
    if snapshot.version != SNAPSHOT_VERSION {
        bail!(
            "unsupported export version {} (expected {SNAPSHOT_VERSION})",
            snapshot.version
        );
    }
    // Fail before writing anything if the keys cannot be opened here.
    let master = MasterKey::load_or_create(settings.master_key.as_ref(), &settings.data_dir)?;
    for key in &snapshot.signing_keys {
        master.open(&key.kid, &key.private_key).with_context(|| {
            format!("signing key {} cannot be decrypted: configure the master key of the exported deployment", key.kid)
        })?;
    }
    let store = open_store(settings).await?;
    match store.import(&snapshot).await {
        Err(StoreError::Conflict) => {
            bail!("the target database is not empty; import needs a fresh database")
        }
        other => other?,
    }
    println!(
        "imported {} users, {} sessions, {} keys into {}",
        snapshot.users.len(),
        snapshot.sessions.len(),
        snapshot.signing_keys.len(),
        settings.database_url.redacted()
    );
    Ok(())
}

async fn clients(cmd: ClientsCommand, app: &App) -> anyhow::Result<()> {
    let auth = &app.state.auth;
    match cmd {
        ClientsCommand::Add { name, admin } => {
            let (client, secret) = auth
                .add_client(&name, admin, &Actor::cli())
                .await
                .map_err(explain)?;
            println!("client_id:     {}", client.id);
            println!("client_secret: {secret}");
            eprintln!(
                "The secret is shown only this once; store it in the resource server's secret store."
            );
        }
        ClientsCommand::List => {
            println!("{:<28}  {:<20}  {:<8}  NAME", "ID", "CREATED", "ROLE");
            for c in auth.list_clients().await.map_err(explain)? {
                let name = printable(&c.name);
                let role = if c.admin { "admin" } else { "resource" };
                println!(
                    "{:<28}  {:<20}  {role:<8}  {name}",
                    c.id,
                    rfc3339(c.created_at)
                );
            }
        }
        ClientsCommand::Remove { id } => {
            auth.remove_client(&id, &Actor::cli())
                .await
                .map_err(explain)?;
            println!("removed client {id}");
        }
    }
    Ok(())
}
