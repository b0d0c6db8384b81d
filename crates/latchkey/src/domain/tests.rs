//! The rules of sessions and credentials, tested on [`Auth`] itself: an
//! in-memory SQLite database, a manual clock and cheap hashing, no server and
//! no HTTP. Each test takes milliseconds; the HTTP suite keeps what only HTTP
//! shows (status codes, headers, cookies, wire shapes).

use std::sync::Arc;

use super::clock::{Clock, ManualClock, SystemClock};
use super::keys::KeyRing;
use super::mail::{MailConfig, MailKind, Mailer, Message, Notice, Templates, Verification};
use super::password::{Argon2Params, Hasher, PasswordPolicy};
use super::secrets::MasterKey;
use super::service::Parts;
use super::{Auth, AuthConfig, AuthError, Client, TokenPair};
use crate::store::sqlite::SqliteStore;
use latchkey_verify::SigningAlg;

const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "violet kettle harbour";
const OTHER_PASSWORD: &str = "amber lantern meadow";
const GRACE: i64 = 10;
const IDLE: i64 = 7 * 24 * 3600;
const ACCESS: i64 = 300;

/// A deployment of one: the service, its clock, and a registered user.
struct World {
    auth: Arc<Auth>,
    clock: Arc<ManualClock>,
    client: Client,
}

async fn world() -> World {
    world_with(|_| {}).await
}

async fn world_with(configure: impl FnOnce(&mut AuthConfig)) -> World {
    // Deadlines are judged at the database's clock too: start at the real time.
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let store = Arc::new(memory_store().await);
    let master = master_key();
    let keys = KeyRing::open(
        store.as_ref(),
        master.clone(),
        SigningAlg::EdDSA,
        clock.now(),
    )
    .await
    .expect("keys");
    let cheap = Argon2Params {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };
    let mut config = AuthConfig {
        issuer: "https://auth.example.com".into(),
        audience: "https://auth.example.com".into(),
        access_ttl: ACCESS,
        refresh_idle_ttl: IDLE,
        session_ttl: 30 * 24 * 3600,
        reuse_grace: GRACE,
        reauth_max_age: 600,
        leeway: 5,
        account_failure_limit: 5,
        account_daily_failure_limit: 50,
    };
    configure(&mut config);
    let parts = Parts {
        store,
        clock: clock.clone(),
        keys: Arc::new(keys),
        hasher: Hasher::new(cheap, 2, 8).expect("hasher"),
        policy: PasswordPolicy { min_length: 8 },
        mail: mailer(&master),
        hook_policy: Default::default(),
        webauthn: None,
    };
    let auth = Arc::new(Auth::new(parts, &master, config));
    let client = Client::default();
    auth.register(EMAIL, PASSWORD, None, None, &client)
        .await
        .expect("register");
    World {
        auth,
        clock,
        client,
    }
}

impl World {
    async fn login(&self, password: &str) -> Result<TokenPair, AuthError> {
        match self.auth.login(EMAIL, password, None, &self.client).await? {
            super::mfa::SignIn::Done(pair) => Ok(pair),
            super::mfa::SignIn::SecondFactor(_) => panic!("no second factor is enrolled here"),
        }
    }

    async fn refresh(&self, pair: &TokenPair) -> Result<TokenPair, AuthError> {
        let token = pair.refresh_token.expose().to_string();
        self.auth.refresh(&token, &self.client).await
    }

    async fn access_works(&self, pair: &TokenPair) -> bool {
        self.auth.authenticate(&pair.access_token).await.is_ok()
    }
}

/// A migrated SQLite database in memory.
async fn memory_store() -> SqliteStore {
    let store = SqliteStore::connect("sqlite::memory:", 1)
        .await
        .expect("in-memory database");
    store.migrate().await.expect("migrate");
    store
}

fn master_key() -> MasterKey {
    MasterKey::from_base64(&"A".repeat(43)).expect("master key")
}

fn is_invalid_grant(result: Result<TokenPair, AuthError>) -> bool {
    matches!(result, Err(AuthError::InvalidGrant(_)))
}

#[tokio::test]
async fn a_refresh_rotates_the_token_and_the_next_one_continues_the_chain() {
    let w = world().await;
    let first = w.login(PASSWORD).await.expect("login");
    let second = w.refresh(&first).await.expect("rotate");
    assert_eq!(second.session_id, first.session_id);
    assert_ne!(second.refresh_token.expose(), first.refresh_token.expose());
    let third = w.refresh(&second).await.expect("rotate again");
    assert!(w.access_works(&third).await);
}

#[tokio::test]
async fn the_previous_token_within_the_grace_gets_the_current_successor() {
    let w = world().await;
    let first = w.login(PASSWORD).await.expect("login");
    let second = w.refresh(&first).await.expect("rotate");
    w.clock.advance(GRACE - 1);
    // A client whose answer was lost retries with the token it still has.
    let again = w.refresh(&first).await.expect("within the grace");
    assert_eq!(again.refresh_token.expose(), second.refresh_token.expose());
    assert!(w.access_works(&second).await, "the session lives on");
}

#[tokio::test]
async fn reuse_after_the_grace_ends_the_whole_session() {
    let w = world().await;
    let first = w.login(PASSWORD).await.expect("login");
    let second = w.refresh(&first).await.expect("rotate");
    w.clock.advance(GRACE + 1);
    assert!(
        is_invalid_grant(w.refresh(&first).await),
        "reuse is refused"
    );
    // The thief and the owner lose the session alike.
    assert!(is_invalid_grant(w.refresh(&second).await));
    assert!(!w.access_works(&second).await);
    let other = w.login(PASSWORD).await.expect("a new login is unaffected");
    assert!(w.access_works(&other).await);
}

#[tokio::test]
async fn a_token_two_generations_old_is_theft_even_within_the_grace() {
    let w = world().await;
    let first = w.login(PASSWORD).await.expect("login");
    let second = w.refresh(&first).await.expect("rotate");
    let third = w.refresh(&second).await.expect("rotate again");
    assert!(is_invalid_grant(w.refresh(&first).await));
    assert!(
        is_invalid_grant(w.refresh(&third).await),
        "the session ended"
    );
    assert!(!w.access_works(&third).await);
}

#[tokio::test]
async fn with_no_grace_the_second_use_of_a_token_ends_the_session() {
    let w = world_with(|c| c.reuse_grace = 0).await;
    let first = w.login(PASSWORD).await.expect("login");
    let second = w.refresh(&first).await.expect("rotate");
    assert!(is_invalid_grant(w.refresh(&first).await));
    assert!(is_invalid_grant(w.refresh(&second).await));
}

#[tokio::test]
async fn rotation_never_extends_the_absolute_session_lifetime() {
    let w = world_with(|c| {
        c.session_ttl = 120;
        c.refresh_idle_ttl = 100;
    })
    .await;
    let mut pair = w.login(PASSWORD).await.expect("login");
    let ends = pair.session_expires_at;
    for step in [50, 50, 19] {
        w.clock.advance(step);
        pair = w.refresh(&pair).await.expect("rotate");
        assert_eq!(pair.session_expires_at, ends, "rotation moved the end");
    }
    w.clock.advance(2);
    assert!(is_invalid_grant(w.refresh(&pair).await));
}

#[tokio::test]
async fn an_access_token_dies_with_its_session_before_its_own_expiry() {
    let w = world_with(|c| {
        c.access_ttl = 600;
        c.session_ttl = 120;
        c.refresh_idle_ttl = 60;
    })
    .await;
    let pair = w.login(PASSWORD).await.expect("login");
    w.clock.advance(30);
    assert!(w.access_works(&pair).await);
    w.clock.advance(95);
    assert!(!w.access_works(&pair).await);
}

#[tokio::test]
async fn a_refresh_token_unused_for_the_idle_time_expires() {
    let w = world().await;
    let pair = w.login(PASSWORD).await.expect("login");
    w.clock.advance(IDLE - 60);
    let kept = w.refresh(&pair).await.expect("used in time");
    w.clock.advance(IDLE + 1);
    assert!(is_invalid_grant(w.refresh(&kept).await));
}

#[tokio::test]
async fn an_access_token_is_refused_once_expired() {
    let w = world().await;
    let pair = w.login(PASSWORD).await.expect("login");
    assert!(w.access_works(&pair).await);
    w.clock.advance(ACCESS + 5 + 1);
    assert!(!w.access_works(&pair).await, "past exp and the leeway");
}

#[tokio::test]
async fn failures_escalate_to_a_block_that_holds_even_the_right_password() {
    let w = world().await;
    for _ in 0..5 {
        assert!(is_invalid_grant(w.login(OTHER_PASSWORD).await));
    }
    // The last free failure blocks the account for a while.
    let blocked = w.login(PASSWORD).await;
    let Err(AuthError::Throttled { retry_after }) = blocked else {
        panic!("expected a block, got {blocked:?}");
    };
    assert!(retry_after >= 1);
    w.clock.advance(retry_after as i64 + 1);
    w.login(PASSWORD).await.expect("the block has passed");
    // Success resets the count: a single new failure does not block.
    assert!(is_invalid_grant(w.login(OTHER_PASSWORD).await));
    w.login(PASSWORD).await.expect("not blocked");
}

#[tokio::test]
async fn disabling_a_user_refuses_their_tokens_and_logins_until_enabled() {
    let w = world().await;
    let pair = w.login(PASSWORD).await.expect("login");
    w.auth
        .disable_user(EMAIL, &super::Actor::cli())
        .await
        .expect("disable");
    assert!(!w.access_works(&pair).await);
    assert!(is_invalid_grant(w.refresh(&pair).await));
    assert!(is_invalid_grant(w.login(PASSWORD).await));
    w.auth
        .enable_user(EMAIL, &super::Actor::cli())
        .await
        .expect("enable");
    assert!(!w.access_works(&pair).await, "ended sessions stay ended");
    w.clock.advance(1);
    let fresh = w.login(PASSWORD).await.expect("login again");
    assert!(w.access_works(&fresh).await);
}

#[tokio::test]
async fn a_password_change_ends_every_session_but_the_one_it_starts() {
    let w = world().await;
    let phone = w.login(PASSWORD).await.expect("phone");
    let laptop = w.login(PASSWORD).await.expect("laptop");
    let caller = w.auth.authenticate(&laptop.access_token).await.expect("me");
    let changed = w
        .auth
        .change_password(&caller, PASSWORD, OTHER_PASSWORD, &w.client)
        .await
        .expect("change");
    for old in [&phone, &laptop] {
        assert!(!w.access_works(old).await);
        assert!(is_invalid_grant(w.refresh(old).await));
    }
    assert!(w.access_works(&changed).await);
    w.refresh(&changed).await.expect("the new session rotates");
    assert!(is_invalid_grant(w.login(PASSWORD).await), "old password");
    w.login(OTHER_PASSWORD).await.expect("new password");
}

#[tokio::test]
async fn a_wrong_current_password_changes_nothing() {
    let w = world().await;
    let pair = w.login(PASSWORD).await.expect("login");
    let caller = w.auth.authenticate(&pair.access_token).await.expect("me");
    let refused = w
        .auth
        .change_password(&caller, OTHER_PASSWORD, "quiet orchard lamp", &w.client)
        .await;
    assert!(matches!(refused, Err(AuthError::InvalidCredentials)));
    assert!(w.access_works(&pair).await);
    w.login(PASSWORD).await.expect("the password is unchanged");
}

/// A mailer with the built-in templates and every notice on.
fn mailer(master: &MasterKey) -> Mailer {
    let config = MailConfig {
        app_url: "https://app.example.com".into(),
        verification: Verification::Optional,
        notices: Notice::ALL.to_vec(),
        reset_ttl: 1800,
        verify_ttl: 86_400,
        email_change_ttl: 3600,
        cancel_ttl: 7 * 86_400,
    };
    Mailer::new(config, None, master.clone()).expect("built-in templates")
}

#[test]
fn the_language_of_mail_is_the_stored_locale_then_accept_language_then_english() {
    let templates = Templates::load(None).expect("templates");
    assert_eq!(templates.pick(Some("fr-CA"), Some("en")), "fr");
    assert_eq!(
        templates.pick(Some("xx"), Some("de, fr;q=0.8, en;q=0.5")),
        "fr"
    );
    assert_eq!(templates.pick(None, Some("en;q=0.2, fr;q=0.9")), "fr");
    assert_eq!(templates.pick(None, Some("fr;q=0, de")), "en");
    assert_eq!(templates.pick(None, Some("*")), "en");
    assert_eq!(templates.pick(None, None), "en");
}

#[test]
fn every_message_renders_in_every_built_in_language_with_html_escaped() {
    let templates = Templates::load(None).expect("templates");
    for lang in ["en", "fr"] {
        for kind in MailKind::ALL {
            let context = [
                ("site", "app.example.com"),
                ("name", "<b>Ann & Bob</b>"),
                ("email", "ann@example.com"),
                ("new_email", "new@example.com"),
                ("link", "https://app.example.com/x#token=abc"),
                ("cancel_link", "https://app.example.com/c#token=def"),
                ("reset_link", "https://app.example.com/forgot-password"),
                ("time", "2026-12-04 05:00 UTC"),
            ]
            .into_iter()
            .map(|(k, v)| (k, minijinja::Value::from(v)))
            .chain([("valid_minutes", 30.into()), ("valid_hours", 24.into())])
            .collect();
            let m = templates.render(kind, lang, context).expect("render");
            assert!(
                !m.subject.is_empty() && !m.subject.contains('\n'),
                "{lang}/{kind:?}"
            );
            assert!(m.text.contains("app.example.com"), "{lang}/{kind:?}");
            assert!(
                !m.html.contains("<b>Ann"),
                "{lang}/{kind:?}: the name is escaped"
            );
            assert!(m.html.contains(&format!("lang=\"{lang}\"")));
        }
    }
}

#[tokio::test]
async fn a_sealed_message_opens_only_under_its_master_key() {
    let master = master_key();
    let other = MasterKey::from_base64(&format!("{}A", "B".repeat(42))).expect("master key");
    let mail = mailer(&master)
        .compose(MailKind::Test, "ann@example.com", "en", vec![], 0)
        .expect("compose");
    assert!(!String::from_utf8_lossy(&mail.sealed).contains("Test message"));
    let message = Message::open(&master, &mail.sealed).expect("open");
    assert_eq!(message.to, "ann@example.com");
    assert!(Message::open(&other, &mail.sealed).is_err());
}

/// Reloads of the signing keys overlap (the periodic one, the JWKS, an
/// unknown `kid`, a rotation): one that read the clock before another must
/// never land after it with the keys of that earlier moment, or a rotated-in
/// key would stop signing until the next reload.
#[tokio::test]
async fn a_reload_that_read_the_clock_earlier_never_undoes_a_newer_one() {
    let store = memory_store().await;
    let master = master_key();
    let now = SystemClock.now();
    let keys = KeyRing::open(&store, master.clone(), SigningAlg::EdDSA, now)
        .await
        .expect("keys");
    let lead = super::admin::KEY_PUBLISH_LEAD;
    let (kid, _) = super::keys::add_key(
        &store,
        &master,
        SigningAlg::EdDSA,
        now,
        now + lead,
        now + lead + ACCESS,
        |_| Default::default(),
    )
    .await
    .expect("add key");
    keys.reload(&store, now + lead).await.expect("reload");
    assert_eq!(keys.signing_kid(), kid, "the new key signs once active");
    keys.reload(&store, now).await.expect("late reload");
    assert_eq!(
        keys.signing_kid(),
        kid,
        "a late, older reload changed nothing"
    );
}
