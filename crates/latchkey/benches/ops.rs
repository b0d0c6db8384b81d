//! The physical floor of each operation the server does per request:
//! signing an access token (EdDSA, ES256), verifying one (first time and
//! again, from the cache), minting and checking a refresh token, and Argon2id
//! with the default cost (one hash, and one per core at once).
//! Run: `cargo bench -p latchkey --bench ops`.

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use latchkey::domain::keys::KeyRing;
use latchkey::domain::password::{Argon2Params, Hasher};
use latchkey::domain::refresh::{self, RefreshKey};
use latchkey::domain::secrets::MasterKey;
use latchkey::store::Store;
use latchkey::store::sqlite::SqliteStore;
use latchkey_verify::{Claims, Rules, SigningAlg};
use secrecy::SecretString;

const NOW: i64 = 1_800_000_000;

fn claims() -> Claims {
    Claims {
        iss: "https://auth.example.com".into(),
        sub: "01a20afd-8fe0-7530-aec9-1f3cb9cae428".into(),
        aud: "https://auth.example.com".into(),
        exp: NOW + 300,
        iat: NOW,
        nbf: None,
        jti: "bd93dac2-7261-4fc2-894c-6ead8584785c".into(),
        sid: "8f4ae3db-eaf4-4ae3-9fff-7edda11c320f".into(),
        client_id: "latchkey".into(),
        auth_time: Some(NOW),
        amr: Some(vec!["pwd".into()]),
    }
}

fn tokens(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    for alg in [SigningAlg::EdDSA, SigningAlg::ES256] {
        let (store, keys) = rt.block_on(async {
            let store = SqliteStore::connect("sqlite::memory:", 1)
                .await
                .expect("store");
            store.migrate().await.expect("migrate");
            let master = MasterKey::from_base64(&"A".repeat(43)).expect("master");
            let keys = KeyRing::open(&store, master, alg, NOW).await.expect("keys");
            (Arc::new(store), keys)
        });
        let token = keys.sign(&claims()).expect("sign");
        let rules = Rules {
            issuer: claims().iss,
            audience: claims().aud,
            leeway: 5,
        };
        c.bench_function(&format!("sign access token {alg}"), |b| {
            b.iter(|| keys.sign(&claims()))
        });
        // A token seen for the first time: its signature is checked.
        let mut n = 0u64;
        c.bench_function(&format!("verify access token {alg}, first time"), |b| {
            b.iter_batched(
                || {
                    n += 1;
                    let fresh = Claims {
                        jti: format!("jti-{n}"),
                        ..claims()
                    };
                    keys.sign(&fresh).expect("sign")
                },
                |fresh| rt.block_on(keys.verify(store.as_ref() as &dyn Store, &fresh, &rules, NOW)),
                BatchSize::SmallInput,
            )
        });
        // The same token again: answered from the verified-token cache.
        c.bench_function(&format!("verify access token {alg}, again"), |b| {
            b.iter(|| rt.block_on(keys.verify(store.as_ref() as &dyn Store, &token, &rules, NOW)))
        });
    }
}

fn refresh_tokens(c: &mut Criterion) {
    let key = RefreshKey::new(&[7u8; 32]);
    let sid = "8f4ae3db-eaf4-4ae3-9fff-7edda11c320f";
    let salt = [9u8; 16];
    c.bench_function("mint refresh token", |b| {
        b.iter(|| key.mint(sid, &salt, 42))
    });
    let token = key.mint(sid, &salt, 42);
    c.bench_function("parse and check refresh token", |b| {
        b.iter(|| refresh::parse(token.expose()).is_some_and(|p| key.check(&p, &salt)))
    });
}

fn password_hash(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let params = Argon2Params {
        memory_kib: 19456,
        iterations: 2,
        parallelism: 1,
    };
    let hasher = Hasher::new(params, 1, 0).expect("hasher");
    let password = SecretString::from("violet kettle harbour");
    let mut group = c.benchmark_group("argon2id m=19456 t=2 p=1");
    group.sample_size(20);
    group.bench_function("hash", |b| b.iter(|| rt.block_on(hasher.hash(&password))));
    // The real ceiling of login and register: one hash per core at once
    // (cores that share caches or memory bandwidth slow each other down).
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let parallel = Hasher::new(params, cores, 0).expect("hasher");
    group.throughput(Throughput::Elements(cores as u64));
    group.bench_function(format!("hash, {cores} at once"), |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut hashes = tokio::task::JoinSet::new();
                for _ in 0..cores {
                    let (hasher, password) = (parallel.clone(), password.clone());
                    hashes.spawn(async move { hasher.hash(&password).await });
                }
                hashes.join_all().await
            })
        })
    });
    group.finish();
}

fn all(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    tokens(c, &rt);
    refresh_tokens(c);
    password_hash(c, &rt);
}

criterion_group!(benches, all);
criterion_main!(benches);
