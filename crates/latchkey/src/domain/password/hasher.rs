//! Argon2id hashing with a bounded number of hashes at once (each holds
//! `memory_kib` of RAM) and a bounded queue before requests are refused,
//! run on blocking threads; PHC strings in and out.
//!
//! PHC strings are read and written with the RustCrypto `argon2` crate; the
//! hash itself is computed by `argon2-rust`, which picks the fastest code the
//! CPU runs (AVX-512, AVX2, SSE, NEON, else portable) at run time and gives
//! the reference implementation's output bit for bit.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::password_hash::try_generate_salt;
use argon2::{ARGON2ID_IDENT, Algorithm, Params, PasswordHash, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::legacy;

/// Bytes of Argon2 output stored in the PHC string (the argon2 crate's default).
const OUTPUT_LEN: usize = 32;
/// Moved by increment/decrement rather than `set`: two concurrent `set`s can
/// land out of order and leave a stale depth until the next change.
const QUEUE_GAUGE: &str = "latchkey_hash_queue_depth";

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

/// Why hashing could not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The wait queue is full: answer 503 with `Retry-After`.
    #[error("password hashing is saturated")]
    Busy,
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    #[error("password hashing failed")]
    Internal,
}

/// Bounded, off-runtime Argon2id hashing.
///
/// Cloning is cheap and every clone shares the same slots, queue and buffers.
#[derive(Clone)]
pub struct Hasher {
    inner: Arc<Inner>,
}

struct Inner {
    params: Argon2Params,
    argon2: Params,
    slots: Arc<Semaphore>,
    /// Slots for the other CPU-bound password work (see [`Hasher::run_check`]),
    /// apart from the hashing slots a caller may already hold.
    checks: Arc<Semaphore>,
    max_waiting: usize,
    waiting: AtomicUsize,
    /// Argon2 working memory (each engine keeps its arena), reused across
    /// hashes: a fresh 19 MiB allocation costs page faults and zeroing on
    /// every hash. Engines are only taken while holding a slot, so there are
    /// never more than `concurrency` of them.
    buffers: Mutex<Vec<argon2_rust::Hasher>>,
    /// When a buffer last came back to the pool.
    last_returned: Mutex<Instant>,
    dummy_phc: String,
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher")
            .field("params", &self.inner.params)
            .field("max_waiting", &self.inner.max_waiting)
            .field("queue_depth", &self.queue_depth())
            .finish_non_exhaustive()
    }
}

impl Hasher {
    /// `concurrency` hashes at once (tokio Semaphore), at most `queue` callers
    /// waiting for a slot. Computes the dummy hash, so it blocks for one hash.
    pub fn new(
        params: Argon2Params,
        concurrency: usize,
        queue: usize,
    ) -> Result<Hasher, HashError> {
        if concurrency == 0 || concurrency > Semaphore::MAX_PERMITS {
            return Err(HashError::Params(format!(
                "hash concurrency must be between 1 and {}",
                Semaphore::MAX_PERMITS
            )));
        }
        let argon2 = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            Some(OUTPUT_LEN),
        )
        .map_err(|e| HashError::Params(e.to_string()))?;
        let mut inner = Inner {
            params,
            argon2,
            slots: Arc::new(Semaphore::new(concurrency)),
            checks: Arc::new(Semaphore::new(concurrency)),
            max_waiting: queue,
            waiting: AtomicUsize::new(0),
            buffers: Mutex::new(Vec::new()),
            last_returned: Mutex::new(Instant::now()),
            dummy_phc: String::new(),
        };
        // A random, unguessable password: the dummy must never verify as true.
        let dummy_password = try_generate_salt().map_err(|_| rng_failure())?;
        inner.dummy_phc = inner.hash_blocking(&dummy_password)?;
        // A server that has not hashed yet holds no Argon2 memory.
        inner.lock_buffers().clear();
        // Adding zero registers the gauge, so it is exported before anything
        // queues, without disturbing the depth other hashers already report.
        metrics::gauge!(QUEUE_GAUGE).increment(0.0);
        Ok(Hasher {
            inner: Arc::new(inner),
        })
    }

    pub fn params(&self) -> Argon2Params {
        self.inner.params
    }

    /// Gives the pooled Argon2 memory back when no hash has finished for
    /// `idle`, so a server between bursts of logins does not keep
    /// `concurrency` × the Argon2 memory. Returns how many buffers it freed;
    /// hashes in progress keep theirs.
    pub fn release_idle_memory(&self, idle: Duration) -> usize {
        let quiet = self
            .inner
            .last_returned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
            >= idle;
        if !quiet {
            return 0;
        }
        std::mem::take(&mut *self.inner.lock_buffers()).len()
    }

    /// Runs `job`, CPU-bound password work other than hashing (the policy's
    /// guessability check), on the blocking pool, at most `concurrency` at
    /// once: a burst of registrations then occupies a few threads rather
    /// than one each, whose stacks and allocator caches outlive the burst.
    pub async fn run_check<T, F>(&self, job: F) -> Result<T, HashError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permit = Arc::clone(&self.inner.checks)
            .acquire_owned()
            .await
            .map_err(|_| HashError::Internal)?;
        on_blocking_pool(permit, "password check", job).await
    }

    /// Reserves a hashing slot, or a place in the queue for one, for a hash
    /// to come: `Busy` at once when the queue is full. Flows take their
    /// ticket before any other work (database reads, throttle counts), so an
    /// overloaded server refuses without doing that work. Dropping the
    /// ticket gives the place back.
    pub fn ticket(&self) -> Result<Ticket, HashError> {
        let place = match Arc::clone(&self.inner.slots).try_acquire_owned() {
            Ok(permit) => Place::Slot(permit),
            Err(_) => Place::Queue(QueuePlace::enter(&self.inner)?),
        };
        Ok(Ticket {
            inner: Arc::clone(&self.inner),
            place,
        })
    }

    /// [`Ticket::hash`] with a ticket taken now.
    pub async fn hash(&self, password: &SecretString) -> Result<String, HashError> {
        self.ticket()?.hash(password).await
    }

    /// [`Ticket::verify`] with a ticket taken now.
    pub async fn verify(&self, password: &SecretString, phc: &str) -> Result<bool, HashError> {
        self.ticket()?.verify(password, phc).await
    }

    /// [`Ticket::verify_dummy`] with a ticket taken now.
    pub async fn verify_dummy(&self, password: &SecretString) -> Result<bool, HashError> {
        self.ticket()?.verify_dummy(password).await
    }

    /// Whether a stored hash was made with parameters other than the current ones
    /// (or not argon2id) and should be rehashed after a successful login.
    pub fn needs_rehash(&self, phc: &str) -> bool {
        let Some(stored) = StoredHash::parse(phc, Version::default()) else {
            return true;
        };
        let current = &self.inner.argon2;
        stored.algorithm != Algorithm::Argon2id
            || stored.version != Version::V0x13
            || stored.params.m_cost() != current.m_cost()
            || stored.params.t_cost() != current.t_cost()
            || stored.params.p_cost() != current.p_cost()
            || stored.expected.len() != OUTPUT_LEN
            || stored.salt.len() < Salt::RECOMMENDED_LENGTH
    }

    /// Number of callers currently waiting for a hashing slot.
    pub fn queue_depth(&self) -> usize {
        self.inner.waiting.load(Ordering::SeqCst)
    }
}

/// A reserved hashing slot or place in the queue (see [`Hasher::ticket`]).
pub struct Ticket {
    inner: Arc<Inner>,
    place: Place,
}

enum Place {
    Slot(OwnedSemaphorePermit),
    Queue(QueuePlace),
}

impl Ticket {
    /// PHC string `$argon2id$v=19$m=..,t=..,p=..$salt$hash` with a fresh 16-byte salt.
    pub async fn hash(self, password: &SecretString) -> Result<String, HashError> {
        let password = password.clone();
        self.run(move |inner| inner.hash_blocking(password.expose_secret().as_bytes()))
            .await
    }

    /// Constant-time verification against a stored PHC string. A malformed stored
    /// hash is Ok(false) (and logged with tracing::error without the hash).
    pub async fn verify(self, password: &SecretString, phc: &str) -> Result<bool, HashError> {
        let password = password.clone();
        let phc = phc.to_owned();
        self.run(move |inner| inner.verify_blocking(password.expose_secret().as_bytes(), &phc))
            .await
    }

    /// Runs a verification against a dummy hash made at construction with the
    /// current params, so an unknown user costs the same time as a known one.
    /// Always returns Ok(false).
    pub async fn verify_dummy(self, password: &SecretString) -> Result<bool, HashError> {
        let password = password.clone();
        self.run(move |inner| {
            inner.verify_blocking(password.expose_secret().as_bytes(), &inner.dummy_phc)
        })
        .await
        .map(|_| false)
    }

    /// Waits for a slot if only queued, then runs `job` on the blocking pool;
    /// the slot moves into the task, so a caller that goes away cannot free
    /// it while Argon2 still runs.
    async fn run<T, F>(self, job: F) -> Result<T, HashError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, HashError> + Send + 'static,
    {
        let permit = match self.place {
            Place::Slot(permit) => permit,
            Place::Queue(_place) => Arc::clone(&self.inner.slots)
                .acquire_owned()
                .await
                .map_err(|_| HashError::Internal)?,
        };
        let inner = self.inner;
        on_blocking_pool(permit, "password hashing", move || job(&inner)).await?
    }
}

/// Runs `job` on the blocking pool holding `permit` until it ends (a caller
/// that goes away cannot free the slot while the work still runs); a panic
/// is logged as `what` failing.
async fn on_blocking_pool<T: Send + 'static>(
    permit: OwnedSemaphorePermit,
    what: &'static str,
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HashError> {
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        job()
    })
    .await
    .map_err(|e| {
        // The panic payload is not logged: it could quote its inputs.
        tracing::error!(panicked = e.is_panic(), "{what} task failed");
        HashError::Internal
    })
}

/// A place in the wait queue, given back on drop even when the caller's future
/// is cancelled, so a disconnecting client cannot leak queue capacity.
struct QueuePlace(Arc<Inner>);

impl QueuePlace {
    fn enter(inner: &Arc<Inner>) -> Result<Self, HashError> {
        // fetch_update makes check-and-increment atomic: concurrent arrivals can
        // never push the queue past its bound.
        inner
            .waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < inner.max_waiting).then_some(n + 1)
            })
            .map_err(|_| HashError::Busy)?;
        metrics::gauge!(QUEUE_GAUGE).increment(1.0);
        Ok(QueuePlace(Arc::clone(inner)))
    }
}

impl Drop for QueuePlace {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!(QUEUE_GAUGE).decrement(1.0);
    }
}

fn rng_failure() -> HashError {
    tracing::error!("operating system random number generator failed");
    HashError::Internal
}

impl Inner {
    fn hash_blocking(&self, password: &[u8]) -> Result<String, HashError> {
        let salt = try_generate_salt().map_err(|_| rng_failure())?;
        let mut out = [0u8; OUTPUT_LEN];
        let engine = engine(
            Algorithm::Argon2id,
            Version::V0x13,
            &self.argon2,
            OUTPUT_LEN,
        )
        .map_err(|e| internal("argon2 parameters refused", &e))?;
        self.with_engine(engine, |hasher| hasher.hash_into(password, &salt, &mut out))?
            .map_err(|e| internal("argon2 hashing failed", &e))?;
        let phc = PasswordHash {
            algorithm: ARGON2ID_IDENT,
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.argon2)
                .map_err(|e| internal("argon2 params encoding failed", &e))?,
            salt: Some(Salt::new(&salt).map_err(|e| internal("salt encoding failed", &e))?),
            hash: Some(Output::new(&out).map_err(|e| internal("output encoding failed", &e))?),
        };
        Ok(phc.to_string())
    }

    /// Verifies against Latchkey's own PHC strings, and the hashes of other
    /// systems kept as they stored them (see [`legacy`](super::legacy)).
    fn verify_blocking(&self, password: &[u8], stored: &str) -> Result<bool, HashError> {
        // Django wraps argon2-cffi's PHC, which means version 0x10 when `v=` is absent.
        let parsed = match legacy::django_argon2_phc(stored) {
            Some(phc) => StoredHash::parse(phc, Version::V0x10),
            None => StoredHash::parse(stored, Version::default()),
        };
        let Some(stored) = parsed else {
            return self.verify_foreign(password, stored);
        };
        let mut buffer = [0u8; Output::MAX_LENGTH];
        let Some(out) = buffer.get_mut(..stored.expected.len()) else {
            return Ok(false);
        };
        let computed = engine(stored.algorithm, stored.version, &stored.params, out.len())
            .map(|engine| self.with_engine(engine, |h| h.hash_into(password, &stored.salt, out)));
        if !matches!(computed, Ok(Ok(Ok(())))) {
            tracing::error!(
                "stored password hash has unusable parameters; treating it as a mismatch"
            );
            return Ok(false);
        }
        // `Output`'s equality is constant-time.
        Ok(Output::new(out).is_ok_and(|computed| computed == stored.expected))
    }

    /// A hash of another format: checked if it can be, otherwise refused
    /// after the work of a check, so an unusable password costs the same
    /// time as a wrong one.
    fn verify_foreign(&self, password: &[u8], stored: &str) -> Result<bool, HashError> {
        if let Some(foreign) = legacy::Foreign::parse(stored) {
            return Ok(foreign.verify(password));
        }
        match legacy::Format::of(stored) {
            legacy::Format::Unusable | legacy::Format::Weak => {}
            _ => tracing::error!("stored password hash is malformed; treating it as a mismatch"),
        }
        self.verify_blocking(password, &self.dummy_phc)
            .map(|_| false)
    }

    /// Lends `job` an engine set to `argon2`: a pooled one, whose arena is
    /// sized for the current params, or, for an old hash needing more memory,
    /// a one-off that is not kept (so memory held between hashes never
    /// exceeds `concurrency` × current size).
    fn with_engine<T>(
        &self,
        argon2: argon2_rust::Argon2,
        job: impl FnOnce(&mut argon2_rust::Hasher) -> T,
    ) -> Result<T, HashError> {
        let pooled = self.argon2.block_count();
        if argon2.params().memory_blocks() as usize > pooled {
            return Ok(job(&mut argon2.hasher()));
        }
        let reused = self.lock_buffers().pop();
        let mut hasher = match reused {
            Some(mut hasher) => {
                hasher.set_argon2(argon2);
                hasher
            }
            None => argon2.hasher(),
        };
        // Argon2 writes every block before reading it, so a dirty arena is fine.
        let result = job(&mut hasher);
        self.lock_buffers().push(hasher);
        *self
            .last_returned
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        Ok(result)
    }

    fn lock_buffers(&self) -> std::sync::MutexGuard<'_, Vec<argon2_rust::Hasher>> {
        // A panic while holding the lock cannot leave the list inconsistent.
        self.buffers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The engine that computes a `tag_len`-byte hash of `params` (the memory
/// is allocated at its first hash, fallibly: a stored hash that asks for
/// absurd memory is an error, not an abort).
fn engine(
    algorithm: Algorithm,
    version: Version,
    params: &Params,
    tag_len: usize,
) -> Result<argon2_rust::Argon2, argon2_rust::Error> {
    use argon2_rust::params::{Memory, TagLen};
    let algorithm = match algorithm {
        Algorithm::Argon2d => argon2_rust::Algorithm::Argon2d,
        Algorithm::Argon2i => argon2_rust::Algorithm::Argon2i,
        _ => argon2_rust::Algorithm::Argon2id,
    };
    let version = match version {
        Version::V0x10 => argon2_rust::Version::V0x10,
        _ => argon2_rust::Version::V0x13,
    };
    let params = argon2_rust::Params::builder()
        .memory(Memory::kib(u64::from(params.m_cost())))
        .passes(params.t_cost())
        .lanes(params.p_cost())
        .tag_len(TagLen::bytes(tag_len as u64))
        .build()?;
    Ok(argon2_rust::Argon2::new(algorithm, version, params))
}

fn internal(what: &str, error: &dyn fmt::Display) -> HashError {
    tracing::error!(error = %error, "{what}");
    HashError::Internal
}

/// The parts of a stored PHC string that verification and rehash decisions need.
struct StoredHash {
    algorithm: Algorithm,
    version: Version,
    params: Params,
    salt: Salt,
    expected: Output,
}

impl StoredHash {
    /// `unversioned` is the version of a string without `v=`.
    fn parse(phc: &str, unversioned: Version) -> Option<StoredHash> {
        let hash = PasswordHash::new(phc).ok()?;
        let algorithm = Algorithm::try_from(hash.algorithm.as_str()).ok()?;
        let version = match hash.version {
            Some(v) => Version::try_from(v).ok()?,
            None => unversioned,
        };
        let params = Params::try_from(&hash).ok()?;
        Some(StoredHash {
            algorithm,
            version,
            params,
            salt: hash.salt?,
            expected: hash.hash?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{Argon2, PasswordHasher, PasswordVerifier};

    const FAST: Argon2Params = Argon2Params {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };

    fn secret(s: &str) -> SecretString {
        SecretString::from(s)
    }

    fn hasher() -> Hasher {
        Hasher::new(FAST, 2, 8).expect("valid params")
    }

    /// The engine gives the RustCrypto crate's (the reference's) output byte
    /// for byte, for every algorithm, version, lane count and tag length a
    /// stored hash may have.
    #[test]
    fn the_engine_computes_the_reference_output() {
        let algorithms = [Algorithm::Argon2id, Algorithm::Argon2i, Algorithm::Argon2d];
        for algorithm in algorithms {
            for version in [Version::V0x13, Version::V0x10] {
                for (m, t, p, len) in [(64, 1, 1, 32), (256, 3, 2, 16), (1024, 2, 4, 64)] {
                    let params = Params::new(m, t, p, Some(len)).expect("params");
                    let mut expected = vec![0u8; len];
                    Argon2::new(algorithm, version, params.clone())
                        .hash_password_into(b"password", b"somesalt-16bytes", &mut expected)
                        .expect("reference");
                    let mut got = vec![0u8; len];
                    engine(algorithm, version, &params, len)
                        .expect("engine")
                        .hash_into(b"password", b"somesalt-16bytes", &mut got)
                        .expect("hash");
                    assert_eq!(got, expected, "{algorithm:?} {version:?} m={m} t={t} p={p}");
                }
            }
        }
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let hasher = hasher();
        let phc = hasher.hash(&secret("hunter2 hunter2")).await.expect("hash");
        assert!(
            hasher
                .verify(&secret("hunter2 hunter2"), &phc)
                .await
                .expect("verify")
        );
        assert!(
            !hasher
                .verify(&secret("hunter2 hunter3"), &phc)
                .await
                .expect("verify")
        );
        assert!(
            !hasher
                .verify(&secret("hunter2 hunter2 "), &phc)
                .await
                .expect("verify")
        );
    }

    #[tokio::test]
    async fn same_password_gets_different_salts() {
        let hasher = hasher();
        let a = hasher.hash(&secret("same password")).await.expect("hash");
        let b = hasher.hash(&secret("same password")).await.expect("hash");
        assert_ne!(a, b);
        let salt = PasswordHash::new(&a).expect("phc").salt.expect("salt");
        assert_eq!(salt.len(), 16);
    }

    #[tokio::test]
    async fn default_params_produce_the_standard_phc_string() {
        let params = Argon2Params {
            memory_kib: 19456,
            iterations: 2,
            parallelism: 1,
        };
        let hasher = Hasher::new(params, 1, 1).expect("valid params");
        let phc = hasher.hash(&secret("correct horse")).await.expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert_eq!(phc.split('$').count(), 6);
        assert!(!hasher.needs_rehash(&phc));
    }

    #[tokio::test]
    async fn hashes_interoperate_with_the_argon2_crate() {
        let hasher = hasher();
        let ours = hasher.hash(&secret("interop")).await.expect("hash");
        let params = Params::new(1024, 1, 1, None).expect("params");
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        assert!(theirs.verify_password(b"interop", ours.as_str()).is_ok());
        // Dirty pooled buffers must not change results, so hash twice first.
        let _ = hasher.hash(&secret("warm the pool")).await.expect("hash");
        let made_by_crate = theirs.hash_password(b"interop").expect("hash").to_string();
        assert!(
            hasher
                .verify(&secret("interop"), &made_by_crate)
                .await
                .expect("verify")
        );
    }

    #[tokio::test]
    async fn argon2_memory_is_held_only_after_hashing_and_released_when_idle() {
        let hasher = hasher();
        let pooled = || hasher.inner.lock_buffers().len();
        assert_eq!(
            pooled(),
            0,
            "the dummy hash made at start-up keeps no memory"
        );
        hasher.hash(&secret("one")).await.expect("hash");
        assert_eq!(pooled(), 1);
        assert_eq!(hasher.release_idle_memory(Duration::from_secs(60)), 0);
        assert_eq!(pooled(), 1, "a hash just finished: the buffer stays");
        assert_eq!(hasher.release_idle_memory(Duration::ZERO), 1);
        assert_eq!(pooled(), 0);
        hasher
            .hash(&secret("two"))
            .await
            .expect("hash after release");
        assert_eq!(pooled(), 1);
    }

    #[tokio::test]
    async fn rehash_is_needed_only_when_params_differ() {
        let old = hasher();
        let phc = old.hash(&secret("rehash me")).await.expect("hash");
        assert!(!old.needs_rehash(&phc));
        let raised = Argon2Params {
            iterations: 2,
            ..FAST
        };
        let new = Hasher::new(raised, 1, 1).expect("valid params");
        assert!(new.needs_rehash(&phc));
        // Old hashes keep verifying after the raise, so the login can rehash.
        assert!(
            new.verify(&secret("rehash me"), &phc)
                .await
                .expect("verify")
        );
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, old.inner.argon2.clone());
        let legacy = argon2i
            .hash_password(b"rehash me")
            .expect("hash")
            .to_string();
        assert!(old.needs_rehash(&legacy));
        assert!(old.needs_rehash("not a hash"));
    }

    #[tokio::test]
    async fn malformed_stored_hash_is_a_mismatch() {
        let hasher = hasher();
        let good = hasher.hash(&secret("pw")).await.expect("hash");
        let truncated = &good[..good.len() - 10];
        let unknown_alg = good.replace("argon2id", "scrypt");
        for phc in [
            "",
            "garbage",
            "$argon2id$v=19$m=1024,t=1,p=1$",
            truncated,
            &unknown_alg,
        ] {
            assert!(
                !hasher.verify(&secret("pw"), phc).await.expect("no error"),
                "{phc}"
            );
        }
    }

    #[tokio::test]
    async fn dummy_verification_is_always_false() {
        let hasher = hasher();
        assert!(!hasher.verify_dummy(&secret("")).await.expect("not busy"));
        assert!(
            !hasher
                .verify_dummy(&secret("anything"))
                .await
                .expect("not busy")
        );
    }

    #[test]
    fn hasher_is_shareable_across_tasks() {
        fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
        assert_shareable::<Hasher>();
    }

    #[test]
    fn invalid_params_are_refused() {
        let zero_memory = Argon2Params {
            memory_kib: 0,
            ..FAST
        };
        assert!(matches!(
            Hasher::new(zero_memory, 1, 1),
            Err(HashError::Params(_))
        ));
        let zero_lanes = Argon2Params {
            parallelism: 0,
            ..FAST
        };
        assert!(matches!(
            Hasher::new(zero_lanes, 1, 1),
            Err(HashError::Params(_))
        ));
        assert!(matches!(Hasher::new(FAST, 0, 1), Err(HashError::Params(_))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checks_run_at_most_concurrency_at_once_even_while_a_slot_is_held() {
        let hasher = Hasher::new(FAST, 2, 0).expect("hasher");
        // A caller holding both hashing slots does not stop checks.
        let _held = (
            hasher.ticket().expect("slot"),
            hasher.ticket().expect("slot"),
        );
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let checks: Vec<_> = (0..8)
            .map(|_| {
                let (hasher, running, most) = (hasher.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    hasher
                        .run_check(move || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(20));
                            running.fetch_sub(1, Ordering::SeqCst);
                        })
                        .await
                })
            })
            .collect();
        for check in checks {
            check.await.expect("task").expect("check");
        }
        let most = most.load(Ordering::SeqCst);
        assert!((1..=2).contains(&most), "{most} checks ran at once");
    }

    /// Starts a hash slow enough to still hold the only slot when the test looks.
    async fn start_slow_hash(hasher: &Hasher) -> tokio::task::JoinHandle<()> {
        let busy = hasher.clone();
        let handle = tokio::spawn(async move {
            let _ = busy.hash(&secret("slow")).await;
        });
        while hasher.inner.slots.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        handle
    }

    #[tokio::test]
    async fn saturated_hasher_without_queue_is_busy_at_once() {
        let slow = Argon2Params {
            memory_kib: 8 * 1024,
            iterations: 4,
            ..FAST
        };
        let hasher = Hasher::new(slow, 1, 0).expect("valid params");
        let running = start_slow_hash(&hasher).await;
        // Busy rather than a late success proves the call did not wait for the slot.
        assert!(matches!(
            hasher.hash(&secret("second")).await,
            Err(HashError::Busy)
        ));
        assert!(matches!(
            hasher.verify_dummy(&secret("x")).await,
            Err(HashError::Busy)
        ));
        assert!(matches!(hasher.ticket(), Err(HashError::Busy)));
        running.await.expect("first hash finishes");
        let ticket = hasher.ticket().expect("a slot is free");
        assert!(
            matches!(hasher.ticket(), Err(HashError::Busy)),
            "the ticket holds it"
        );
        drop(ticket);
        assert!(hasher.hash(&secret("after")).await.is_ok());
    }

    /// Takes the only slot directly, so queue tests do not depend on timing.
    fn hold_only_slot(hasher: &Hasher) -> OwnedSemaphorePermit {
        Arc::clone(&hasher.inner.slots)
            .try_acquire_owned()
            .expect("slot is free")
    }

    #[tokio::test]
    async fn queue_admits_up_to_its_bound_and_counts_waiters() {
        let hasher = Hasher::new(FAST, 1, 1).expect("valid params");
        let slot = hold_only_slot(&hasher);
        let queued = tokio::spawn({
            let hasher = hasher.clone();
            async move { hasher.hash(&secret("queued")).await }
        });
        while hasher.queue_depth() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            hasher.hash(&secret("third")).await,
            Err(HashError::Busy)
        ));
        assert_eq!(hasher.queue_depth(), 1);
        drop(slot);
        assert!(queued.await.expect("task").is_ok());
        assert_eq!(hasher.queue_depth(), 0);
    }

    #[tokio::test]
    async fn cancelled_waiter_gives_its_place_back() {
        let hasher = Hasher::new(FAST, 1, 1).expect("valid params");
        let slot = hold_only_slot(&hasher);
        let password = secret("gives up");
        let waiting = hasher.hash(&password);
        let timed_out = tokio::time::timeout(Duration::from_millis(5), waiting).await;
        assert!(timed_out.is_err());
        assert_eq!(hasher.queue_depth(), 0);
        drop(slot);
        assert!(hasher.hash(&password).await.is_ok());
    }
}
