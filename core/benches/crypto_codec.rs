//! What signature checking and the wire codec cost.
//!
//! `certificate_verify/{n}`: one certificate holding a precommit of every validator of an
//! `n`-validator set, checked three ways, reported per signature (`Throughput::Elements(n)`):
//! - `certificate_batch`: `Certificate::verify`, as a node checks a decision (ordering, stake,
//!   signing messages rebuilt, one `crypto::verify_batch`, the chain's cofactored rule);
//! - `votes_one_by_one`: the same `n` precommits as votes, each checked with `Vote::verify`
//!   (`crypto::verify`, the same rule alone), as a node checks votes arriving one at a time;
//! - `verify_votes_batch`: the same precommits through `message::verify_votes`, as a driver checks
//!   a burst of votes (one batch, one by one only on failure);
//! - `rule_raw_batch`: `crypto::verify_batch` on the very same (message, signature, key) triples,
//!   built outside the timed part: the limit the certificate check can approach;
//! - `dalek_raw_batch`: `ed25519_dalek::verify_batch` (cofactorless, which the chain no longer
//!   uses: its verdict on a signature can depend on the rest of the batch) on the same triples,
//!   for comparison with the rule's batch.
//!
//! `certificate_chain/64`: the certificates of 64 consecutive heights of a 4-validator chain (a
//! precommit of each validator in each), reported per block (`Throughput::Elements(64)`):
//! - `one_by_one`: `Certificate::verify` of each, as a node catching up checks each decision;
//! - `one_batch`: `block::verify_certificates` of all 64, their 256 signatures in one batch.
//!
//! `vote_codec`: one precommit wrapped as `Message::Vote`, encoded with `encode_message` and
//! decoded (with its canonical re-encoding check) with `decode_message`. The encoded size is
//! printed to stderr once.
//!
//! Times are the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time: the
//! build machine is shared, and at a load of 7 on 2 cores wall time measured the scheduler more
//! than the code (the same binary's certificate batch came out 1.8× dalek's raw batch in one run
//! and equal in the next). On an idle machine the two agree.

use std::hint::black_box;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use timed_core::block::{Certificate, CertificateCheck, verify_certificates};
use timed_core::codec::{decode_message, encode_message};
use timed_core::crypto::{self, Domain, Keypair, Signature, signing_message};
use timed_core::message::{Message, Vote, VoteKind, verify_votes};
use timed_core::types::{Hash, Height, Round, Stake, ValidatorIndex};
use timed_core::validators::{GenesisValidator, ValidatorSet};

/// The calling thread's CPU time, in nanoseconds, formatted as criterion formats wall time.
struct CpuTime;

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

// Linux on 64-bit targets (this project's machines); the C library is linked anyway.
const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
unsafe extern "C" {
    fn clock_gettime(clock: i32, time: *mut Timespec) -> i32;
}

fn thread_cpu_ns() -> u64 {
    let mut t = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec; the clock id is a Linux constant.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns() - start
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WallTime.formatter()
    }
}

const CHAIN_ID: &str = "timed-bench";
const HEIGHT: Height = Height(42);
const ROUND: Round = Round(0);

fn keys(n: usize) -> Vec<Keypair> {
    (0..n)
        .map(|i| Keypair::insecure_from_name(&format!("validator{i}")))
        .collect()
}

fn validator_set(keys: &[Keypair]) -> ValidatorSet {
    let members: Vec<GenesisValidator> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| GenesisValidator {
            name: format!("validator{i}"),
            public_key: k.public_key(),
            stake: Stake(100),
            address: None,
        })
        .collect();
    ValidatorSet::new(&members).expect("a valid set")
}

fn block_hash() -> Hash {
    Hash::of(&[b"bench block"])
}

fn precommits(keys: &[Keypair], hash: Hash) -> Vec<Vote> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            Vote::sign(
                k,
                CHAIN_ID,
                HEIGHT,
                ROUND,
                VoteKind::Precommit,
                Some(hash),
                ValidatorIndex(i as u16),
            )
        })
        .collect()
}

fn certificate_verify(c: &mut Criterion<CpuTime>) {
    let hash = block_hash();
    for n in [4usize, 21, 100] {
        let keys = keys(n);
        let set = validator_set(&keys);
        let votes = precommits(&keys, hash);
        let cert = Certificate::from_precommits(HEIGHT, ROUND, hash, &votes);
        assert_eq!(cert.signatures.len(), n);
        cert.verify(&set, CHAIN_ID, HEIGHT, &hash)
            .expect("the certificate verifies");

        // The raw triples, in the certificate's (canonical) signer order.
        let messages: Vec<Vec<u8>> = cert
            .signatures
            .iter()
            .map(|s| {
                signing_message(
                    Domain::Precommit,
                    CHAIN_ID,
                    &Vote::signed_fields(HEIGHT, ROUND, Some(hash), s.validator),
                )
            })
            .collect();
        let message_refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let signatures: Vec<ed25519_dalek::Signature> = cert
            .signatures
            .iter()
            .map(|s| ed25519_dalek::Signature::from_bytes(&s.signature.0))
            .collect();
        let verifying_keys: Vec<ed25519_dalek::VerifyingKey> = cert
            .signatures
            .iter()
            .map(|s| set.get(s.validator).expect("a member").verifying_key)
            .collect();
        ed25519_dalek::verify_batch(&message_refs, &signatures, &verifying_keys)
            .expect("the raw batch verifies");
        let triples: Vec<(&[u8], Signature, ed25519_dalek::VerifyingKey)> = cert
            .signatures
            .iter()
            .zip(&message_refs)
            .zip(&verifying_keys)
            .map(|((s, m), k)| (*m, s.signature, *k))
            .collect();
        crypto::verify_batch(&triples).expect("the rule's batch verifies");

        let mut group = c.benchmark_group(format!("certificate_verify/{n}"));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function("certificate_batch", |b| {
            b.iter(|| {
                black_box(&cert)
                    .verify(black_box(&set), CHAIN_ID, HEIGHT, black_box(&hash))
                    .expect("verifies")
            })
        });
        group.bench_function("votes_one_by_one", |b| {
            b.iter(|| {
                for vote in black_box(&votes) {
                    vote.verify(black_box(&set), CHAIN_ID).expect("verifies");
                }
            })
        });
        group.bench_function("verify_votes_batch", |b| {
            b.iter(|| {
                let verdicts = verify_votes(black_box(&votes), black_box(&set), CHAIN_ID);
                assert!(verdicts.iter().all(|ok| *ok));
            })
        });
        group.bench_function("rule_raw_batch", |b| {
            b.iter(|| crypto::verify_batch(black_box(&triples)).expect("verifies"))
        });
        group.bench_function("dalek_raw_batch", |b| {
            b.iter(|| {
                ed25519_dalek::verify_batch(
                    black_box(&message_refs),
                    black_box(&signatures),
                    black_box(&verifying_keys),
                )
                .expect("verifies")
            })
        });
        group.finish();
    }
}

fn certificate_chain(c: &mut Criterion<CpuTime>) {
    const BLOCKS: u64 = 64;
    let keys = keys(4);
    let set = validator_set(&keys);
    let chain: Vec<(Height, Hash, Certificate)> = (1..=BLOCKS)
        .map(|h| {
            let hash = Hash::of(&[b"block", &h.to_be_bytes()]);
            let votes: Vec<Vote> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    Vote::sign(
                        k,
                        CHAIN_ID,
                        Height(h),
                        ROUND,
                        VoteKind::Precommit,
                        Some(hash),
                        ValidatorIndex(i as u16),
                    )
                })
                .collect();
            let cert = Certificate::from_precommits(Height(h), ROUND, hash, &votes);
            (Height(h), hash, cert)
        })
        .collect();
    let checks: Vec<CertificateCheck<'_>> = chain
        .iter()
        .map(|(h, hash, cert)| CertificateCheck {
            certificate: cert,
            set: &set,
            height: *h,
            block_hash: hash,
        })
        .collect();
    verify_certificates(CHAIN_ID, &checks).expect("the chain verifies");
    let mut group = c.benchmark_group(format!("certificate_chain/{BLOCKS}"));
    group.throughput(Throughput::Elements(BLOCKS));
    group.bench_function("one_by_one", |b| {
        b.iter(|| {
            for (h, hash, cert) in black_box(&chain) {
                cert.verify(&set, CHAIN_ID, *h, hash).expect("verifies");
            }
        })
    });
    group.bench_function("one_batch", |b| {
        b.iter(|| verify_certificates(CHAIN_ID, black_box(&checks)).expect("verifies"))
    });
    group.finish();
}

fn vote_codec(c: &mut Criterion<CpuTime>) {
    let keys = keys(1);
    let vote = precommits(&keys, block_hash()).remove(0);
    let message = Message::Vote(vote);
    let bytes = encode_message(&message);
    assert_eq!(decode_message(&bytes).expect("decodes"), message);
    eprintln!(
        "vote_codec: an encoded precommit (Message::Vote, with envelope) is {} bytes",
        bytes.len()
    );

    let mut group = c.benchmark_group("vote_codec");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode", |b| b.iter(|| encode_message(black_box(&message))));
    group.bench_function("decode", |b| {
        b.iter(|| decode_message(black_box(&bytes)).expect("decodes"))
    });
    group.finish();
}

/// A proposal of a block of 1,000 transfers, with its envelope: the bulk of what a node decodes.
fn block_codec(c: &mut Criterion<CpuTime>) {
    use timed_core::block::{Block, Header};
    use timed_core::tx::Transfer;
    use timed_core::types::{Amount, TimestampMs};
    let alice = Keypair::insecure_from_name("alice");
    let bob = Keypair::insecure_from_name("bob").public_key();
    let txs: Vec<_> = (0..1_000u64)
        .map(|nonce| {
            Transfer {
                from: alice.public_key(),
                to: bob,
                amount: Amount(1_000 + nonce),
                fee: Amount(1),
                nonce,
                op: Default::default(),
            }
            .sign(&alice, "bench")
        })
        .collect();
    let block = Block {
        header: Header {
            chain_id: "bench".into(),
            height: Height(123_456),
            parent_hash: Hash([1; 32]),
            timestamp: TimestampMs(1_700_000_000_000),
            proposer: ValidatorIndex(3),
            tx_root: timed_core::block::tx_root(&txs),
            state_root: Hash([2; 32]),
            next_set_hash: Hash([2; 32]),
            evidence_root: timed_core::block::evidence_root(&[]),
        },
        txs,
        evidence: Vec::new(),
    };
    let proposal = timed_core::message::Proposal::sign(
        &alice,
        "bench",
        Round(0),
        None,
        block,
        ValidatorIndex(3),
    );
    let message = Message::Proposal(proposal);
    let bytes = encode_message(&message);
    assert_eq!(decode_message(&bytes).expect("decodes"), message);
    eprintln!(
        "block_codec: a proposal of 1,000 transfers (with envelope) is {} bytes",
        bytes.len()
    );
    let mut group = c.benchmark_group("block_codec");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode", |b| b.iter(|| encode_message(black_box(&message))));
    group.bench_function("decode", |b| {
        b.iter(|| decode_message(black_box(&bytes)).expect("decodes"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(CpuTime);
    targets = certificate_verify, certificate_chain, vote_codec, block_codec
}
criterion_main!(benches);
