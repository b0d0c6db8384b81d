//! The `Store` contract, run against both backends at the Store level: what
//! the domain relies on from any database (compare-and-set rotation,
//! serialised throttle steps, revocation counts and feed rows, import and
//! prune boundaries), each proven on SQLite and on PostgreSQL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey::store::postgres::PgStore;
use latchkey::store::sqlite::SqliteStore;
use latchkey::store::{
    Delivery, EmailTokenRecord, EndedEvents, EventQuery, EventTally, NewEvent, NewMail, Outgoing,
    PruneBefore, Redeem, RevokeReason, SessionRecord, Store, StoreError, ThrottleRecord,
    TokenPurpose, UserRecord, WebhookRecord,
};

use crate::backend::{Backend, PgDatabase, require_postgres};

/// A migrated store on `backend` and what keeps its database alive.
struct Fixture {
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
}

async fn fixture(backend: Backend) -> Option<Fixture> {
    let dir = tempfile::TempDir::new().expect("temp dir");
    match backend {
        Backend::Sqlite => {
            let url = format!("sqlite://{}", dir.path().join("store.db").display());
            let store = SqliteStore::connect(&url, 4).await.expect("open sqlite");
            store.migrate().await.expect("migrate sqlite");
            Some(Fixture {
                store: Arc::new(store),
                _dir: dir,
                _pg: None,
            })
        }
        Backend::Postgres => {
            if !require_postgres("the Store contract on PostgreSQL") {
                return None;
            }
            let pg = PgDatabase::create().await;
            let store = PgStore::connect(&pg.url, 8, Duration::from_secs(10))
                .await
                .expect("open postgres");
            store.migrate().await.expect("migrate postgres");
            Some(Fixture {
                store: Arc::new(store),
                _dir: dir,
                _pg: Some(pg),
            })
        }
    }
}

/// One contract, as a test per backend.
macro_rules! contract {
    ($name:ident) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                if let Some(f) = fixture(Backend::Sqlite).await {
                    super::$name(&f.store).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                if let Some(f) = fixture(Backend::Postgres).await {
                    super::$name(&f.store).await;
                }
            }
        }
    };
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn user(id: &str) -> UserRecord {
    UserRecord {
        id: id.into(),
        email: format!("{id}@example.com"),
        email_normalized: format!("{id}@example.com"),
        name: None,
        password_hash: "hash-1".into(),
        email_verified: false,
        disabled: false,
        not_before: 0,
        created_at: now(),
        credential_version: 0,
        locale: None,
    }
}

fn session(id: &str, user_id: &str) -> SessionRecord {
    let t = now();
    SessionRecord {
        id: id.into(),
        user_id: user_id.into(),
        salt: vec![7; 16],
        generation: 0,
        rotated_at: None,
        created_at: t,
        last_used_at: t,
        idle_expires_at: t + 3600,
        expires_at: t + 86_400,
        revoked_at: None,
        user_agent: Some("test".into()),
        ip: None,
        auth_time: t,
        amr: "pwd".into(),
    }
}

/// A user with `sessions` live sessions named `{id}-s{n}`.
async fn user_with_sessions(store: &dyn Store, id: &str, sessions: usize) {
    store
        .insert_user(&user(id), &Outgoing::default())
        .await
        .expect("insert user");
    for n in 0..sessions {
        let started = store
            .insert_session(&session(&format!("{id}-s{n}"), id), 0, &Outgoing::default())
            .await
            .expect("insert session");
        assert!(started);
    }
}

async fn feed(store: &dyn Store) -> Vec<(String, Option<String>, String)> {
    store
        .revocations_after(0, 1000)
        .await
        .expect("feed")
        .into_iter()
        .map(|r| (r.kind, r.session_id, r.user_id))
        .collect()
}

contract!(calls_sent_at_once_each_get_their_own_answer);
/// Reads and rotations that arrive together may share one statement (the
/// PostgreSQL backend coalesces them): each caller still gets the answer for
/// its own row, a missing or mismatched row is `None` for that caller only,
/// and two rotations of one session in the same burst still have one winner.
async fn calls_sent_at_once_each_get_their_own_answer(store: &Arc<dyn Store>) {
    let users: Vec<String> = (0..8).map(|n| format!("u{n}")).collect();
    for id in &users {
        user_with_sessions(store.as_ref(), id, 2).await;
    }
    let t = now();
    let revoked = store
        .revoke_session("u3-s1", RevokeReason::Logout, t, &Outgoing::default())
        .await
        .expect("revoke");
    assert!(revoked);
    store
        .insert_client(&latchkey::store::ClientRecord {
            id: "api".into(),
            name: "api".into(),
            secret_hash: vec![1; 32],
            created_at: t,
            admin: false,
        })
        .await
        .expect("client");

    let mut states = tokio::task::JoinSet::new();
    let mut owners = tokio::task::JoinSet::new();
    let mut clients = tokio::task::JoinSet::new();
    let mut rotations = tokio::task::JoinSet::new();
    for round in 0..4 {
        for (n, user) in users.iter().enumerate() {
            for s in 0..2 {
                let session = format!("{user}-s{s}");
                // The right owner, another user, and a session that is not there.
                for (asked, expect) in [
                    (user.clone(), true),
                    (users[(n + 1) % users.len()].clone(), false),
                ] {
                    let (store, session) = (store.clone(), session.clone());
                    states.spawn(async move {
                        let got = store.access_state(&asked, &session, "kid-1").await;
                        (asked, session, expect, got.expect("access state"))
                    });
                }
                let (store2, session2) = (store.clone(), session.clone());
                owners.spawn(async move {
                    let got = store2.session_and_owner(&session2).await;
                    (session2, got.expect("session and owner"))
                });
                if round < 2 {
                    // Two rotations of every session from generation 0.
                    let (store3, session3) = (store.clone(), session.clone());
                    rotations.spawn(async move {
                        let won = store3.advance_session(&session3, 0, t, t + 3600).await;
                        (session3, won.expect("advance"))
                    });
                }
            }
        }
        let store4 = store.clone();
        states.spawn(async move {
            let got = store4.access_state("u0", "missing", "kid-1").await;
            (
                "u0".into(),
                "missing".into(),
                false,
                got.expect("access state"),
            )
        });
        for id in ["api", "nobody"] {
            let store5 = store.clone();
            clients.spawn(async move { (id, store5.client(id).await.expect("client")) });
        }
    }
    for (asked, session, expect, got) in states.join_all().await {
        match got {
            Some(state) => {
                assert!(expect, "{asked} is not the owner of {session}");
                assert_eq!(state.user.id, asked);
                assert_eq!(state.session_revoked, session == "u3-s1", "{session}");
                assert!(!state.key_withdrawn);
            }
            None => assert!(!expect, "{asked} owns {session}"),
        }
    }
    for (session, got) in owners.join_all().await {
        let (record, usable) = got.expect("the session is there");
        assert_eq!(record.id, session);
        assert!(usable);
    }
    for (id, got) in clients.join_all().await {
        assert_eq!(got.map(|c| c.id), (id == "api").then(|| id.to_string()));
    }
    let mut winners = std::collections::BTreeMap::<String, usize>::new();
    for (session, won) in rotations.join_all().await {
        *winners.entry(session).or_default() += usize::from(won);
    }
    for (session, count) in winners {
        let expected = usize::from(session != "u3-s1");
        assert_eq!(count, expected, "winners of the rotation of {session}");
    }
}

contract!(one_rotation_wins_a_race_for_a_generation);
async fn one_rotation_wins_a_race_for_a_generation(store: &Arc<dyn Store>) {
    user_with_sessions(store.as_ref(), "ada", 1).await;
    let t = now();
    let attempts = (0..16).map(|_| {
        let store = store.clone();
        async move { store.advance_session("ada-s0", 0, t, t + 3600).await }
    });
    let won = tokio::task::JoinSet::from_iter(attempts).join_all().await;
    let winners = won
        .into_iter()
        .filter(|r| *r.as_ref().expect("advance"))
        .count();
    assert_eq!(winners, 1, "exactly one compare-and-set succeeds");
    let s = store
        .session("ada-s0")
        .await
        .expect("read")
        .expect("session");
    assert_eq!(s.generation, 1);
    assert!(
        !store
            .advance_session("ada-s0", 0, t, t + 3600)
            .await
            .expect("stale")
    );
    assert!(
        store
            .advance_session("ada-s0", 1, t, t + 3600)
            .await
            .expect("next")
    );
}

contract!(a_revoked_or_expired_session_never_advances);
async fn a_revoked_or_expired_session_never_advances(store: &Arc<dyn Store>) {
    user_with_sessions(store.as_ref(), "bob", 2).await;
    let t = now();
    assert!(
        store
            .revoke_session("bob-s0", RevokeReason::Logout, t, &Outgoing::default())
            .await
            .expect("revoke")
    );
    assert!(
        !store
            .revoke_session("bob-s0", RevokeReason::Logout, t, &Outgoing::default())
            .await
            .expect("again")
    );
    assert!(
        !store
            .advance_session("bob-s0", 0, t, t + 3600)
            .await
            .expect("revoked")
    );
    // The database's own clock counts too: a caller's time in the past
    // cannot revive a session whose deadline has passed.
    let mut old = session("bob-old", "bob");
    old.expires_at = t - 10;
    assert!(
        store
            .insert_session(&old, 0, &Outgoing::default())
            .await
            .expect("insert")
    );
    assert!(
        !store
            .advance_session("bob-old", 0, t - 100, t + 3600)
            .await
            .expect("expired")
    );
    let live: Vec<String> = store
        .live_sessions("bob", t - 100)
        .await
        .expect("live")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(live, ["bob-s1"]);
}

contract!(a_session_starts_only_at_the_current_credential_version);
async fn a_session_starts_only_at_the_current_credential_version(store: &Arc<dyn Store>) {
    user_with_sessions(store.as_ref(), "cy", 1).await;
    let t = now();
    let version = store
        .change_password("cy", 0, "hash-2", t, &Outgoing::default())
        .await
        .expect("change")
        .expect("version was current");
    assert_eq!(version, 1);
    assert_eq!(
        store
            .change_password("cy", 0, "hash-3", t, &Outgoing::default())
            .await
            .expect("stale"),
        None
    );
    assert!(
        !store
            .insert_session(&session("cy-late", "cy"), 0, &Outgoing::default())
            .await
            .expect("old version")
    );
    assert!(
        store
            .insert_session(&session("cy-new", "cy"), 1, &Outgoing::default())
            .await
            .expect("new version")
    );
    // A rehash only replaces the hash it verified.
    assert!(
        !store
            .replace_password_hash("cy", "hash-1", "rehash", t)
            .await
            .expect("old hash")
    );
    assert!(
        store
            .replace_password_hash("cy", "hash-2", "rehash", t)
            .await
            .expect("current")
    );
    store
        .set_user_disabled("cy", true, t, &Outgoing::default())
        .await
        .expect("disable");
    assert!(
        !store
            .insert_session(&session("cy-off", "cy"), 1, &Outgoing::default())
            .await
            .expect("disabled")
    );
    let old = store.session("cy-s0").await.expect("read").expect("kept");
    assert!(
        old.revoked_at.is_some(),
        "the password change ended the old session"
    );
}

contract!(bulk_revocations_count_and_feed_each_session);
async fn bulk_revocations_count_and_feed_each_session(store: &Arc<dyn Store>) {
    user_with_sessions(store.as_ref(), "dee", 3).await;
    user_with_sessions(store.as_ref(), "eve", 2).await;
    let t = now();
    let revoked = store
        .revoke_user_sessions(
            "dee",
            Some("dee-s0"),
            RevokeReason::LogoutAll,
            t,
            Some(t),
            &Outgoing::default(),
        )
        .await
        .expect("revoke others");
    assert_eq!(revoked, 2);
    let mut rows = feed(store.as_ref()).await;
    rows.sort();
    assert_eq!(
        rows,
        [
            ("session".into(), Some("dee-s1".into()), "dee".into()),
            ("session".into(), Some("dee-s2".into()), "dee".into()),
            ("user".into(), None, "dee".into()),
        ]
    );
    let dee = store.user_by_id("dee").await.expect("read").expect("dee");
    assert_eq!((dee.credential_version, dee.not_before), (1, t));

    let (sessions, users) = store.revoke_everything(t, "renamed").await.expect("all");
    assert_eq!((sessions, users), (3, 2), "dee-s0 and eve's two were live");
    assert_eq!(store.restore_guard().await.expect("guard").0, "renamed");
    let user_rows = feed(store.as_ref())
        .await
        .into_iter()
        .filter(|r| r.0 == "user")
        .count();
    assert_eq!(user_rows, 3, "one entry per user, after dee's own");
    for id in ["dee", "eve"] {
        let u = store.user_by_id(id).await.expect("read").expect("user");
        assert_eq!(
            u.not_before,
            t + 1,
            "tokens of this very second are refused"
        );
    }
    assert!(
        store
            .live_sessions("eve", t)
            .await
            .expect("live")
            .is_empty()
    );
}

contract!(throttle_steps_on_one_key_serialise);
async fn throttle_steps_on_one_key_serialise(store: &Arc<dyn Store>) {
    fn fail(r: &ThrottleRecord) -> ThrottleRecord {
        ThrottleRecord {
            failures: r.failures + 1,
            blocked_until: if r.failures + 1 >= 5 { 1_000 } else { 0 },
            updated_at: r.updated_at + 1,
            ..r.clone()
        }
    }
    let steps = (0..12).map(|_| {
        let store = store.clone();
        async move { store.step_throttle("acct:x", &fail).await }
    });
    let mut seen: Vec<i64> = tokio::task::JoinSet::from_iter(steps)
        .join_all()
        .await
        .into_iter()
        .map(|r| r.expect("step").failures)
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..12).collect::<Vec<_>>(), "no step lost or doubled");
    let look = |r: &ThrottleRecord| r.clone();
    let armed = store.step_throttle("acct:x", &look).await.expect("look");
    assert_eq!((armed.failures, armed.blocked_until), (12, 1_000));
    // A look changes nothing, and another key starts from zero.
    assert_eq!(
        store.step_throttle("acct:x", &look).await.expect("look"),
        armed
    );
    let fresh = store.step_throttle("acct:y", &look).await.expect("fresh");
    assert_eq!((fresh.failures, fresh.blocked_until), (0, 0));
}

contract!(import_refuses_a_database_that_holds_data);
async fn import_refuses_a_database_that_holds_data(store: &Arc<dyn Store>) {
    user_with_sessions(store.as_ref(), "fay", 1).await;
    let snapshot = store.export().await.expect("export");
    assert_eq!(snapshot.users.len(), 1);
    assert!(matches!(
        store.import(&snapshot).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.export().await.expect("export"),
        snapshot,
        "nothing changed"
    );
}

contract!(cursors_continue_above_an_imported_snapshot);
async fn cursors_continue_above_an_imported_snapshot(store: &Arc<dyn Store>) {
    // The source: a SQLite store with revocations, the oldest pruned.
    let source = fixture(Backend::Sqlite).await.expect("sqlite");
    let src = source.store.as_ref();
    user_with_sessions(src, "gus", 3).await;
    let t = now();
    for (n, at) in [(0, t - 100), (1, t - 50), (2, t)] {
        src.revoke_session(
            &format!("gus-s{n}"),
            RevokeReason::Logout,
            at,
            &Outgoing::default(),
        )
        .await
        .expect("revoke");
    }
    let everything = PruneBefore {
        sessions: 0,
        revocations: t - 60,
        events: 0,
        throttles: 0,
        keys: 0,
        mail: 0,
        tokens: 0,
    };
    assert_eq!(src.prune(everything, 100).await.expect("prune"), 1);
    let snapshot = src.export().await.expect("export");
    assert_eq!(snapshot.revocation_cursor, 3);
    assert_eq!(snapshot.revocations.len(), 2);

    store.import(&snapshot).await.expect("import");
    assert_eq!(
        store.export().await.expect("export"),
        snapshot,
        "a faithful copy"
    );
    assert_eq!(store.oldest_revocation().await.expect("oldest"), Some(2));
    user_with_sessions(store.as_ref(), "hal", 1).await;
    store
        .revoke_session("hal-s0", RevokeReason::Logout, t, &Outgoing::default())
        .await
        .expect("revoke");
    let after = store.revocations_after(3, 10).await.expect("after");
    assert_eq!(after.len(), 1);
    assert!(after[0].cursor > 3, "no cursor a verifier holds is reused");
}

contract!(prune_deletes_only_what_is_older_than_each_cut_off);
async fn prune_deletes_only_what_is_older_than_each_cut_off(store: &Arc<dyn Store>) {
    user_with_sessions(store.as_ref(), "ida", 0).await;
    let t = now();
    for (id, expires_at) in [("ida-old", t - 10), ("ida-edge", t), ("ida-new", t + 10)] {
        let mut s = session(id, "ida");
        s.expires_at = expires_at;
        assert!(
            store
                .insert_session(&s, 0, &Outgoing::default())
                .await
                .expect("insert")
        );
    }
    let cut = PruneBefore {
        sessions: t,
        revocations: 0,
        events: 0,
        throttles: 0,
        keys: 0,
        mail: 0,
        tokens: 0,
    };
    assert_eq!(store.prune(cut, 100).await.expect("prune"), 1);
    assert!(store.session("ida-old").await.expect("read").is_none());
    assert!(
        store.session("ida-edge").await.expect("read").is_some(),
        "the cut-off itself is kept"
    );
    // A batch bounds each kind.
    for n in 0..5 {
        let mut s = session(&format!("ida-b{n}"), "ida");
        s.expires_at = t - 20;
        assert!(
            store
                .insert_session(&s, 0, &Outgoing::default())
                .await
                .expect("insert")
        );
    }
    assert_eq!(store.prune(cut, 2).await.expect("batch"), 2);
    assert_eq!(store.prune(cut, 100).await.expect("rest"), 3);
    assert_eq!(store.prune(cut, 100).await.expect("none"), 0);
}

fn token(digest: &str, user_id: &str, purpose: TokenPurpose, expires_at: i64) -> EmailTokenRecord {
    EmailTokenRecord {
        digest: digest.into(),
        user_id: user_id.into(),
        purpose: purpose.as_str().into(),
        email: format!("{user_id}@example.com"),
        created_at: now(),
        expires_at,
    }
}

fn mail(to: &str) -> NewMail {
    NewMail {
        recipient: to.into(),
        kind: "test".into(),
        sealed: vec![1, 2, 3],
        created_at: now(),
    }
}

contract!(a_mailed_token_is_redeemed_once_even_when_raced);
async fn a_mailed_token_is_redeemed_once_even_when_raced(store: &Arc<dyn Store>) {
    user_with_sessions(store.as_ref(), "rex", 2).await;
    let t = now();
    let outgoing = Outgoing {
        tokens: vec![token("d-rex", "rex", TokenPurpose::ResetPassword, t + 600)],
        mails: vec![mail("rex@example.com")],
        ..Default::default()
    };
    store.send(&outgoing).await.expect("send");
    let attempts = (0..8).map(|i| {
        let store = store.clone();
        async move {
            let hash = format!("hash-{i}");
            let redeem = Redeem::ResetPassword { hash: &hash };
            store
                .redeem_email_token("d-rex", "rex", redeem, now(), &Outgoing::default())
                .await
                .expect("redeem")
        }
    });
    let won = tokio::task::JoinSet::from_iter(attempts)
        .join_all()
        .await
        .into_iter()
        .filter(|won| *won)
        .count();
    assert_eq!(won, 1, "one reset per token");
    let user = store.user_by_id("rex").await.expect("read").expect("user");
    assert_eq!(user.credential_version, 1, "the reset cut the user once");
    assert!(user.email_verified, "the mail proved the address");
    assert!(
        store
            .live_sessions("rex", t)
            .await
            .expect("sessions")
            .is_empty()
    );
    // Another user's id, or an expired token, never redeems.
    let expired = Outgoing {
        tokens: vec![token("d-old", "rex", TokenPurpose::VerifyEmail, t - 1)],
        mails: vec![],
        ..Default::default()
    };
    store.send(&expired).await.expect("send");
    let verify = Redeem::VerifyEmail;
    assert!(
        !store
            .redeem_email_token("d-old", "rex", verify, t, &Outgoing::default())
            .await
            .expect("redeem")
    );
    user_with_sessions(store.as_ref(), "sue", 0).await;
    let live = Outgoing {
        tokens: vec![token("d-new", "rex", TokenPurpose::VerifyEmail, t + 600)],
        mails: vec![],
        ..Default::default()
    };
    store.send(&live).await.expect("send");
    assert!(
        !store
            .redeem_email_token("d-new", "sue", verify, t, &Outgoing::default())
            .await
            .expect("redeem")
    );
    assert!(
        store
            .redeem_email_token("d-new", "rex", verify, t, &Outgoing::default())
            .await
            .expect("redeem")
    );
}

contract!(takers_of_due_mail_never_take_the_same_message);
async fn takers_of_due_mail_never_take_the_same_message(store: &Arc<dyn Store>) {
    let t = now();
    let outgoing = Outgoing {
        tokens: vec![],
        mails: (0..30)
            .map(|i| mail(&format!("m{i}@example.com")))
            .collect(),
        ..Default::default()
    };
    store.send(&outgoing).await.expect("send");
    let takers = (0..4).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.claim_mail(t, t + 120, 10).await.expect("claim") })
    });
    let mut taken: Vec<i64> = Vec::new();
    for taker in takers.collect::<Vec<_>>() {
        taken.extend(taker.await.expect("task").iter().map(|m| m.id));
    }
    let mut unique = taken.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        taken.len(),
        "a message taken twice: {taken:?}"
    );
    assert_eq!(taken.len(), 30);
    // Leased: nothing is due again until the lease ends, then all of it is.
    assert!(
        store
            .claim_mail(t + 60, t + 180, 50)
            .await
            .expect("claim")
            .is_empty()
    );
    let again = store.claim_mail(t + 121, t + 300, 50).await.expect("claim");
    assert_eq!(again.len(), 30);
    assert!(again.iter().all(|m| m.attempts == 2));
    // Sent: the content is erased and the message is never taken again.
    let first = again[0].id;
    store
        .finish_mail(first, &Delivery::Sent { at: t + 122 })
        .await
        .expect("finish");
    let failed = again[1].id;
    let error = "550 no such mailbox".to_string();
    store
        .finish_mail(failed, &Delivery::Failed { at: t + 122, error })
        .await
        .expect("finish");
    let unsent = store.unsent_mail(100).await.expect("unsent");
    assert_eq!(unsent.len(), 29);
    assert!(unsent.iter().all(|m| m.id != first));
    assert!(
        unsent
            .iter()
            .any(|m| m.id == failed && m.failed_at.is_some())
    );
    assert_eq!(store.retry_failed_mail(t + 130).await.expect("retry"), 1);
    // Old sent and failed mail is pruned with expired tokens.
    let cut = PruneBefore {
        sessions: 0,
        revocations: 0,
        events: 0,
        throttles: 0,
        keys: 0,
        mail: t + 123,
        tokens: 0,
    };
    assert_eq!(store.prune(cut, 100).await.expect("prune"), 1);
}

contract!(a_change_names_the_sessions_it_ended_in_its_own_transaction);
async fn a_change_names_the_sessions_it_ended_in_its_own_transaction(store: &Arc<dyn Store>) {
    user_with_sessions(store.as_ref(), "fay", 3).await;
    let named = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
    let news = || {
        let named = named.clone();
        Outgoing {
            ended: Some(EndedEvents(Arc::new(move |ids: &[String]| {
                let mut ids = ids.to_vec();
                ids.sort();
                named.lock().expect("lock").push(ids);
                Vec::new()
            }))),
            ..Default::default()
        }
    };
    let t = now();
    let revoked = store
        .revoke_user_sessions(
            "fay",
            Some("fay-s0"),
            RevokeReason::LogoutAll,
            t,
            None,
            &news(),
        )
        .await
        .expect("revoke others");
    assert_eq!(revoked, 2);
    assert!(
        store
            .set_user_disabled("fay", true, t, &news())
            .await
            .expect("disable")
    );
    // Disabling ended the one session left; a refused start writes nothing.
    let hook = WebhookRecord {
        id: "wh_all".into(),
        url: "https://hooks.example.com/".into(),
        events: "*".into(),
        secret: vec![1; 8],
        created_at: t,
        disabled_at: None,
    };
    store.insert_webhook(&hook).await.expect("add webhook");
    let login = |sid: &str| Outgoing {
        events: vec![latchkey::domain::webhooks::event(
            "user.login",
            Some("fay"),
            serde_json::json!({ "session_id": sid }),
            t,
        )],
        ..Default::default()
    };
    assert!(
        !store
            .insert_session(&session("fay-late", "fay"), 1, &login("fay-late"))
            .await
            .expect("refused")
    );
    assert!(
        store
            .deliveries("wh_all", 10)
            .await
            .expect("deliveries")
            .is_empty(),
        "an event for a session that was not started"
    );
    assert!(
        store
            .set_user_disabled("fay", false, t, &Outgoing::default())
            .await
            .expect("enable")
    );
    assert!(
        store
            .insert_session(&session("fay-new", "fay"), 1, &login("fay-new"))
            .await
            .expect("started")
    );
    let sent = store.deliveries("wh_all", 10).await.expect("deliveries");
    assert_eq!(sent.len(), 1);
    assert!(sent[0].payload.contains("fay-new"));
    assert!(
        store
            .session("fay-s0")
            .await
            .expect("read")
            .expect("kept")
            .revoked_at
            .is_some()
    );
    assert_eq!(
        *named.lock().expect("lock"),
        [
            vec!["fay-s1".to_string(), "fay-s2".to_string()],
            vec!["fay-s0".to_string()]
        ]
    );
}

contract!(summaries_count_each_event_once_even_when_raced);
async fn summaries_count_each_event_once_even_when_raced(store: &Arc<dyn Store>) {
    let t = now();
    for i in 0..30 {
        let event = NewEvent {
            user_id: (i % 3 != 0).then(|| format!("u{}", i % 2)),
            session_id: None,
            kind: "login_throttled".into(),
            ip: Some(format!("192.0.2.{}", i % 4)),
            user_agent: None,
            detail: None,
            created_at: t - 30 + i % 20,
            actor: None,
        };
        store
            .insert_event(&event, &Outgoing::default())
            .await
            .expect("insert event");
    }
    let counted = Arc::new(Mutex::new(0i64));
    let summarisers = (0..6).map(|_| {
        let (store, counted) = (store.clone(), counted.clone());
        tokio::spawn(async move {
            let build = move |counts: &[EventTally], _from: i64| {
                *counted.lock().expect("lock") += counts.iter().map(|c| c.count).sum::<i64>();
                Outgoing::default()
            };
            store
                .tally_events("login_throttled", t - 60, t, 60, &build)
                .await
                .expect("tally")
        })
    });
    for summariser in summarisers.collect::<Vec<_>>() {
        assert_eq!(
            summariser.await.expect("task"),
            t,
            "the position moved to t"
        );
    }
    assert_eq!(
        *counted.lock().expect("lock"),
        30,
        "each event counted once"
    );
    // Not due again until a period has passed.
    let never = |_: &[EventTally], _: i64| -> Outgoing { panic!("summarised too soon") };
    assert_eq!(
        store
            .tally_events("login_throttled", t - 60, t + 59, 60, &never)
            .await
            .expect("tally"),
        t
    );
}

contract!(operators_find_users_by_address_prefix_and_events_by_user_kind_and_time);
async fn operators_find_users_by_address_prefix_and_events_by_user_kind_and_time(
    store: &Arc<dyn Store>,
) {
    for id in ["ann", "anna", "bob", "an_x"] {
        store
            .insert_user(&user(id), &Outgoing::default())
            .await
            .expect("user");
    }
    let found = |users: Vec<UserRecord>| users.into_iter().map(|u| u.id).collect::<Vec<_>>();
    let mut ann = found(store.list_users(10, 0, "ann").await.expect("list"));
    ann.sort();
    assert_eq!(ann, ["ann", "anna"]);
    // `_` and `%` are characters, not patterns.
    assert_eq!(
        found(store.list_users(10, 0, "an_").await.expect("list")),
        ["an_x"]
    );
    assert_eq!(store.list_users(10, 0, "").await.expect("list").len(), 4);
    assert_eq!(store.list_users(2, 2, "").await.expect("list").len(), 2);

    let t = now();
    for i in 0..12i64 {
        let event = NewEvent {
            user_id: Some(if i % 2 == 0 { "ann" } else { "bob" }.into()),
            kind: if i % 3 == 0 { "login_failed" } else { "login" }.into(),
            created_at: t - 100 + i * 10,
            actor: (i == 11).then(|| "client:lk_client_x".to_string()),
            ..Default::default()
        };
        store
            .insert_event(&event, &Outgoing::default())
            .await
            .expect("event");
    }
    let search = |q: EventQuery| async move { store.search_events(&q).await.expect("search") };
    let all = search(EventQuery {
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(all.len(), 12);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert_eq!(all[0].actor.as_deref(), Some("client:lk_client_x"));
    let ann_failed = search(EventQuery {
        user_id: Some("ann".into()),
        kind: Some("login_failed".into()),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(ann_failed.len(), 2, "i = 0 and 6");
    let window = search(EventQuery {
        since: Some(t - 60),
        until: Some(t - 30),
        limit: 100,
        ..Default::default()
    })
    .await;
    let times: Vec<i64> = window.iter().map(|e| e.created_at - t).collect();
    assert_eq!(times, [-40, -50, -60]);
    let first = search(EventQuery {
        limit: 5,
        ..Default::default()
    })
    .await;
    let next = search(EventQuery {
        before: first.last().map(|e| e.id),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(first.len() + next.len(), 12);
    assert!(next[0].id < first[4].id);
}

/// On PostgreSQL each kind of batched statement keeps its connection while
/// its calls keep coming, which saves a round trip per statement; it must
/// still give the connection back when the pool has no other, or a steady
/// stream of one kind (authenticated calls) would starve every other
/// statement until the pool's timeout. This shows the pool stays shared; it
/// would not catch that rule alone going missing, because a reading lane
/// also falls idle (and gives its connection back) now and then even under
/// this load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_one_is_shared_by_a_stream_of_reads_and_everything_else() {
    use std::sync::atomic::{AtomicBool, Ordering};
    if !require_postgres("a pool of one on PostgreSQL") {
        return;
    }
    let pg = PgDatabase::create().await;
    let store = PgStore::connect(&pg.url, 1, Duration::from_secs(10))
        .await
        .expect("open postgres");
    store.migrate().await.expect("migrate postgres");
    let store = Arc::new(store);
    let stop = Arc::new(AtomicBool::new(false));
    // More readers than one statement takes (256): the reading lane has
    // calls waiting nearly all the time.
    let readers: Vec<_> = (0..320)
        .map(|_| {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let state = store.access_state("u", "s", "k").await;
                    assert!(state.expect("read").is_none());
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        let other_lane = store.session_and_owner("missing").await;
        assert!(other_lane.expect("another kind of batched read").is_none());
        let pooled = store.client("missing").await;
        assert!(pooled.expect("a statement of its own").is_none());
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.await.expect("reader") > 0);
    }
}
