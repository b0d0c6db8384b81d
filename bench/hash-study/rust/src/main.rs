//! One Argon2id hash of the study's password and salt, timed: prints
//! "ms_median base64(raw hash)". Usage: hash-study MODE ROUNDS, MODE one of
//! argon2, argon2-rust, argon2x2, argon2-rustx2 (two threads at once).
//! `argon2` is the RustCrypto crate Latchkey uses; `argon2-rust` a port of
//! the reference C with runtime-dispatched SIMD (AVX-512, AVX2, SSE, NEON).

use std::time::Instant;

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;

const PASSWORD: &[u8] = b"violet kettle harbour";
const SALT: &[u8; 16] = b"latchkey-salt-16";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(30);
    let mode = args.get(1).cloned().unwrap_or_default();
    // "…x2": two threads hashing at once, as two logins on two cores; prints
    // the median of both threads' times and the hashes per second together.
    if let Some(one) = mode.strip_suffix("x2") {
        let one = one.to_string();
        let start = Instant::now();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let one = one.clone();
                std::thread::spawn(move || run(&one, rounds))
            })
            .collect();
        let mut times: Vec<f64> = Vec::new();
        let mut hash = String::new();
        for t in threads {
            let (mut t, h) = t.join().expect("thread");
            times.append(&mut t);
            hash = h;
        }
        let rate = (2 * rounds) as f64 / start.elapsed().as_secs_f64();
        times.sort_by(f64::total_cmp);
        println!("{:.2} {hash} {rate:.0}/s", times[times.len() / 2]);
        return;
    }
    let (times, hash) = run(&mode, rounds);
    println!("{:.2} {hash}", times[rounds / 2]);
}

/// Times `rounds` hashes (after one warm-up): sorted times in ms and the hash.
fn run(mode: &str, rounds: usize) -> (Vec<f64>, String) {
    let (mut times, hash) = match mode {
        "argon2-rust" => argon2_rust(rounds),
        _ => rust_crypto(rounds),
    };
    times.sort_by(f64::total_cmp);
    (times, hash)
}

fn rust_crypto(rounds: usize) -> (Vec<f64>, String) {
    let params = Params::new(19456, 2, 1, Some(32)).expect("params");
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    // A reused buffer, as Latchkey's hasher keeps one per slot.
    let mut blocks = vec![argon2::Block::default(); params.block_count()];
    let mut out = [0u8; 32];
    let mut hash = |out: &mut [u8; 32]| {
        argon
            .hash_password_into_with_memory(PASSWORD, SALT, out, &mut blocks)
            .expect("hash")
    };
    hash(&mut out);
    let times: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            hash(&mut out);
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    (
        times,
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(out),
    )
}

fn argon2_rust(rounds: usize) -> (Vec<f64>, String) {
    use argon2_rust::params::Memory;
    let params = argon2_rust::Params::builder()
        .memory(Memory::kib(19456))
        .passes(2)
        .lanes(1)
        .build()
        .expect("params");
    let argon = argon2_rust::Argon2::new(
        argon2_rust::Algorithm::Argon2id,
        argon2_rust::Version::V0x13,
        params,
    );
    let mut hasher = argon.hasher();
    let mut out = [0u8; 32];
    hasher.hash_into(PASSWORD, SALT, &mut out).expect("hash");
    let times: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            hasher.hash_into(PASSWORD, SALT, &mut out).expect("hash");
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    eprintln!("argon2-rust backend: {:?}", argon2_rust::detected_backend());
    (
        times,
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(out),
    )
}
