//! What verification costs on one core, and how much of it is not
//! cryptography: for EdDSA and ES256, the raw signature check of a token
//! (`jsonwebtoken::crypto::verify` on its signing input), the strict
//! `token::verify`, and `Verifier::verify` with warm caches — static keys,
//! and discovered keys plus a followed revocation feed (served by the test
//! suite's fake Latchkey, polled once a minute so no poll lands mid-run) —
//! for a token seen for the first time and for one seen before.
//!
//! Run: `cargo bench -p latchkey-verify --bench verify -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use jsonwebtoken::DecodingKey;
use latchkey_verify::{JwkSet, KeySet, Rules, SigningAlg, Verifier};
use support::{FakeLatchkey, Signer, claims, ready_now};

fn verify(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for alg in [SigningAlg::EdDSA, SigningAlg::ES256] {
        let signer = Signer::generate(alg, "k1");
        let jwks = JwkSet {
            keys: vec![signer.jwk.clone()],
        };
        let fake = runtime.block_on(FakeLatchkey::spawn(&[&signer]));
        // Some revocations to look through, none of them this token's.
        for i in 0..1000 {
            fake.state
                .revoke_session("someone", &format!("revoked-{i}"));
        }
        let token = signer.sign(&claims(&fake.issuer, "u1", "live"));
        let statics = runtime
            .block_on(Verifier::builder(&fake.issuer).static_jwks(&jwks).build())
            .unwrap();
        let followed = runtime
            .block_on(
                fake.builder()
                    .poll_interval(Duration::from_secs(60))
                    .max_staleness(Duration::from_secs(120))
                    .build(),
            )
            .unwrap();
        assert_eq!(followed.status().feed.unwrap().revoked_sessions, 1000);
        let keys = KeySet::from_jwks(&jwks).unwrap();
        let rules = Rules {
            issuer: fake.issuer.clone(),
            audience: fake.issuer.clone(),
            leeway: 5,
        };
        let decoding = DecodingKey::from_jwk(&signer.jwk).unwrap();
        let (signing_input, signature) = token.rsplit_once('.').unwrap();
        let now = support::now();

        let mut group = c.benchmark_group(alg.as_str());
        group.throughput(Throughput::Elements(1));
        group.bench_function("raw signature check", |b| {
            b.iter(|| {
                let ok = jsonwebtoken::crypto::verify(
                    black_box(signature),
                    black_box(signing_input.as_bytes()),
                    &decoding,
                    alg.jose(),
                );
                assert!(ok.unwrap());
            })
        });
        group.bench_function("token::verify", |b| {
            b.iter(|| latchkey_verify::verify(black_box(&token), &keys, &rules, now).unwrap())
        });
        // Each iteration a token the verifier has not seen (signed untimed),
        // so the signature is checked; then the same token again.
        let mut n = 0u64;
        let mut fresh = || {
            n += 1;
            let mut fresh = claims(&fake.issuer, "u1", "live");
            fresh.jti = format!("jti-{n}");
            signer.sign(&fresh)
        };
        group.bench_function("Verifier::verify, static keys", |b| {
            b.iter_batched(
                &mut fresh,
                |t| ready_now(statics.verify(&t)).unwrap(),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("Verifier::verify, discovered keys + feed", |b| {
            b.iter_batched(
                &mut fresh,
                |t| ready_now(followed.verify(&t)).unwrap(),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("Verifier::verify, a token seen before", |b| {
            b.iter(|| ready_now(followed.verify(black_box(&token))).unwrap())
        });
        group.finish();
    }
}

criterion_group!(benches, verify);
criterion_main!(benches);
