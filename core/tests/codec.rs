//! The codec against hostile and random input: every message round-trips to the same value and
//! the same bytes, and no byte string makes decoding panic.
//!
//! Canonical encoding, for every type that crosses a wire or reaches a disk (each message and its
//! parts, the WAL's `PersistRecord`, the genesis, stored accounts, blocks, certificates, outcomes
//! and evidence): encoding then decoding gives the value back and the same bytes, and whatever
//! decodes (from a mutated encoding, from arbitrary bytes, from a valid prefix followed by junk) is
//! in its one encoding — so one value has one encoding. The runtime's own stored and handshake
//! types are built from these and tested in `runtime-tokio`.

use std::fmt::Debug;

use proptest::prelude::*;
use proptest::sample::Index;
use timed_core::block::{Block, Certificate, CommitSignature, Header};
use timed_core::codec::{self, CodecError, MAX_MESSAGE_BYTES, WIRE_VERSION, Wire};
use timed_core::consensus::{Finalized, Misbehaviour, PersistRecord};
use timed_core::crypto::{PublicKey, Signature};
use timed_core::ledger::{Account, BlockOutcome, Reward};
use timed_core::message::{Decision, Message, Proposal, Vote, VoteKind};
use timed_core::staking::StakingRecord;
use timed_core::tx::{Op, SignedTransfer, Transfer};
use timed_core::types::{Amount, Hash, Height, Round, Stake, TimestampMs, ValidatorIndex};
use timed_core::validators::{
    ConsensusParams, Genesis, GenesisBalance, GenesisValidator, TimeoutParams,
};
use timed_core::votes::Evidence;

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

fn signature() -> impl Strategy<Value = Signature> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(a, b)| {
        let mut s = [0u8; 64];
        s[..32].copy_from_slice(&a);
        s[32..].copy_from_slice(&b);
        Signature(s)
    })
}

fn vote() -> impl Strategy<Value = Vote> {
    (
        any::<u64>(),
        any::<u32>(),
        any::<bool>(),
        proptest::option::of(hash()),
        any::<u16>(),
        signature(),
    )
        .prop_map(|(h, r, pre, block, v, signature)| Vote {
            height: Height(h),
            round: Round(r),
            kind: if pre {
                VoteKind::Prepare
            } else {
                VoteKind::Precommit
            },
            block,
            validator: ValidatorIndex(v),
            signature,
        })
}

fn transfer() -> impl Strategy<Value = SignedTransfer> {
    (
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        signature(),
        prop_oneof![
            Just(Op::Pay),
            (".{0,40}", ".{0,70}").prop_map(|(name, address)| Op::Register { name, address }),
            Just(Op::Bond),
            Just(Op::Unbond),
        ],
    )
        .prop_map(
            |(from, to, amount, fee, nonce, signature, op)| SignedTransfer {
                transfer: Transfer {
                    from: PublicKey(from),
                    to: PublicKey(to),
                    amount: Amount(amount),
                    fee: Amount(fee),
                    nonce,
                    op,
                },
                signature,
            },
        )
}

fn block() -> impl Strategy<Value = Block> {
    (
        "[a-z0-9-]{1,20}",
        any::<u64>(),
        hash(),
        any::<u64>(),
        any::<u16>(),
        hash(),
        hash(),
        proptest::collection::vec(transfer(), 0..4),
    )
        .prop_map(
            |(chain_id, h, parent_hash, ts, proposer, tx_root, state_root, txs)| Block {
                header: Header {
                    chain_id,
                    height: Height(h),
                    parent_hash,
                    timestamp: TimestampMs(ts),
                    proposer: ValidatorIndex(proposer),
                    tx_root,
                    state_root,
                    next_set_hash: state_root,
                    evidence_root: timed_core::block::evidence_root(&[]),
                },
                txs,
                evidence: Vec::new(),
            },
        )
}

fn certificate() -> impl Strategy<Value = Certificate> {
    (
        any::<u64>(),
        any::<u32>(),
        hash(),
        proptest::collection::vec((any::<u16>(), signature()), 0..5),
    )
        .prop_map(|(h, r, block_hash, sigs)| Certificate {
            height: Height(h),
            round: Round(r),
            block_hash,
            signatures: sigs
                .into_iter()
                .map(|(v, signature)| CommitSignature {
                    validator: ValidatorIndex(v),
                    signature,
                })
                .collect(),
        })
}

fn proposal() -> impl Strategy<Value = Proposal> {
    (
        block(),
        any::<u32>(),
        proptest::option::of(any::<u32>()),
        any::<u16>(),
        signature(),
        proptest::option::of(certificate()),
    )
        .prop_map(|(block, r, vr, p, signature, polka)| Proposal {
            height: block.header.height,
            round: Round(r),
            valid_round: vr.map(Round),
            block,
            proposer: ValidatorIndex(p),
            signature,
            polka,
        })
}

fn block_request() -> impl Strategy<Value = Message> {
    (any::<u64>(), hash()).prop_map(|(h, hash)| Message::BlockRequest {
        height: Height(h),
        hash,
    })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        vote().prop_map(Message::Vote),
        proposal().prop_map(Message::Proposal),
        (block(), certificate())
            .prop_map(|(block, certificate)| Message::Decision(Decision { block, certificate })),
        (any::<u64>(), any::<u32>()).prop_map(|(h, m)| Message::SyncRequest {
            from: Height(h),
            max_blocks: m
        }),
        proptest::collection::vec((block(), certificate()), 0..3).prop_map(|v| {
            Message::SyncResponse {
                blocks: v
                    .into_iter()
                    .map(|(block, certificate)| Decision { block, certificate })
                    .collect(),
            }
        }),
        transfer().prop_map(Message::Transaction),
        block_request(),
        block().prop_map(|block| Message::BlockResponse { block }),
    ]
}

proptest! {
    #[test]
    fn every_message_round_trips_to_the_same_value_and_bytes(msg in message()) {
        let bytes = codec::encode_message(&msg);
        let back = codec::decode_message(&bytes).unwrap();
        prop_assert_eq!(&back, &msg);
        prop_assert_eq!(codec::encode_message(&back), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = codec::decode_message(&bytes);
        let mut enveloped = vec![WIRE_VERSION];
        enveloped.extend_from_slice(&bytes);
        if let Ok(decoded) = codec::decode_message(&enveloped) {
            prop_assert_eq!(codec::encode_message(&decoded), enveloped);
        }
    }

    #[test]
    fn a_mutated_message_decodes_to_an_error_or_to_a_canonical_value(msg in message(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = codec::encode_message(&msg);
        let i = at.index(bytes.len());
        bytes[i] = byte;
        if let Ok(decoded) = codec::decode_message(&bytes) {
            // Whatever decodes is in its one canonical encoding.
            prop_assert_eq!(codec::encode_message(&decoded), bytes);
        }
    }

    #[test]
    fn a_truncated_message_is_an_error(msg in message(), cut in any::<prop::sample::Index>()) {
        let bytes = codec::encode_message(&msg);
        let keep = cut.index(bytes.len());
        prop_assert!(codec::decode_message(&bytes[..keep]).is_err());
    }
}

#[test]
fn a_vote_is_small_on_the_wire() {
    let v = Vote {
        height: Height(1_000_000),
        round: Round(0),
        kind: VoteKind::Precommit,
        block: Some(Hash([7; 32])),
        validator: ValidatorIndex(3),
        signature: Signature([9; 64]),
    };
    let bytes = codec::encode_message(&Message::Vote(v));
    // Version, tag, height (3), round, kind, option tag, hash, validator, signature: 105 bytes
    // (the CBOR of wire version 1, with field names, took 166).
    assert_eq!(bytes.len(), 1 + 1 + 3 + 1 + 1 + 1 + 32 + 1 + 64);
}

#[test]
fn endless_garbage_after_the_envelope_is_an_error() {
    let mut bytes = vec![WIRE_VERSION];
    bytes.extend(std::iter::repeat_n(0x81u8, 100_000)); // an endless varint
    assert!(matches!(
        codec::decode_message(&bytes),
        Err(CodecError::Malformed(_))
    ));
    assert!(bytes.len() < MAX_MESSAGE_BYTES);
}

// ---------------------------------------------------------------------------------------------
// Canonical encoding of every wire and disk type, one by one (messages, in their envelope, are
// the tests above).

fn public_key() -> impl Strategy<Value = PublicKey> {
    any::<[u8; 32]>().prop_map(PublicKey)
}

fn persist_record() -> impl Strategy<Value = PersistRecord> {
    prop_oneof![
        (any::<u64>(), message()).prop_map(|(h, msg)| PersistRecord::Signed {
            height: Height(h),
            msg
        }),
        (any::<u64>(), any::<u32>(), block(), certificate()).prop_map(|(h, r, block, polka)| {
            PersistRecord::Locked {
                height: Height(h),
                round: Round(r),
                block,
                polka,
            }
        }),
    ]
}

fn timeout() -> impl Strategy<Value = TimeoutParams> {
    (any::<u64>(), any::<u64>()).prop_map(|(base_ms, delta_ms)| TimeoutParams { base_ms, delta_ms })
}

fn params() -> impl Strategy<Value = ConsensusParams> {
    (
        any::<u64>(),
        timeout(),
        timeout(),
        timeout(),
        any::<u64>(),
        any::<u32>(),
        any::<u64>(),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
            any::<u32>(),
        ),
    )
        .prop_map(
            |(
                block_time_ms,
                propose,
                prepare,
                precommit,
                drift,
                txs,
                resend,
                (epoch, bond, max, unbonding, slash),
            )| ConsensusParams {
                block_time_ms,
                propose_timeout: propose,
                prepare_timeout: prepare,
                precommit_timeout: precommit,
                max_clock_drift_ms: drift,
                max_block_txs: txs,
                resend_interval_ms: resend,
                epoch_blocks: epoch,
                min_bond: Amount(bond),
                max_validators: max,
                unbonding_blocks: unbonding,
                slash_permille: slash,
            },
        )
}

fn genesis() -> impl Strategy<Value = Genesis> {
    let validator = (
        "\\PC{0,12}",
        public_key(),
        any::<u64>(),
        proptest::option::of("[a-z0-9.:-]{1,24}"),
    )
        .prop_map(|(name, public_key, stake, address)| GenesisValidator {
            name,
            public_key,
            stake: Stake(stake),
            address,
        });
    let balance = (public_key(), any::<u64>()).prop_map(|(account, amount)| GenesisBalance {
        account,
        amount: Amount(amount),
    });
    (
        "\\PC{0,20}",
        any::<u64>(),
        proptest::collection::vec(validator, 0..4),
        proptest::collection::vec(balance, 0..4),
        params(),
    )
        .prop_map(|(chain_id, t, validators, balances, params)| Genesis {
            chain_id,
            genesis_time_ms: TimestampMs(t),
            validators,
            balances,
            params,
        })
}

fn account() -> impl Strategy<Value = Account> {
    (any::<u64>(), any::<u64>()).prop_map(|(b, nonce)| Account {
        balance: Amount(b),
        nonce,
    })
}

fn outcome() -> impl Strategy<Value = BlockOutcome> {
    let reward = (any::<u16>(), public_key(), any::<u64>()).prop_map(|(v, account, a)| Reward {
        validator: ValidatorIndex(v),
        account,
        amount: Amount(a),
    });
    (
        any::<u64>(),
        any::<[u64; 3]>(),
        proptest::collection::vec(reward, 0..4),
        proptest::collection::vec(hash(), 0..3),
        proptest::collection::vec((public_key(), account()), 0..3),
        (proptest::collection::vec(hash(), 0..3), any::<bool>()),
    )
        .prop_map(
            |(h, [subsidy, fees, total], rewards, archived, touched, (refused, changed))| {
                BlockOutcome {
                    height: Height(h),
                    subsidy: Amount(subsidy),
                    fees: Amount(fees),
                    total_reward: Amount(total),
                    rewards,
                    archived,
                    touched,
                    staking_refused: refused,
                    staking: changed.then(|| StakingRecord {
                        registry: vec![],
                        unbonding: vec![],
                        current: vec![],
                        next: vec![],
                    }),
                    slashed: Amount(total / 7),
                    jailed: vec![],
                }
            },
        )
}

fn finalized() -> impl Strategy<Value = Finalized> {
    (block(), certificate(), outcome()).prop_map(|(block, certificate, outcome)| Finalized {
        block,
        certificate,
        outcome,
    })
}

fn evidence() -> impl Strategy<Value = Evidence> {
    (vote(), vote()).prop_map(|(first, second)| Evidence { first, second })
}

fn misbehaviour() -> impl Strategy<Value = Misbehaviour> {
    prop_oneof![
        evidence().prop_map(Misbehaviour::DoubleVote),
        (proposal(), proposal())
            .prop_map(|(first, second)| Misbehaviour::DoubleProposal { first, second }),
    ]
}

/// `value` encodes to bytes that decode to it and encode again to the same bytes; a mutated
/// encoding, arbitrary bytes, and a valid prefix followed by junk decode to an error or to a value
/// whose one encoding is exactly those bytes; and the encoding with a byte more is refused.
fn one_encoding<T>(value: &T, at: Index, byte: u8, junk: &[u8]) -> Result<(), TestCaseError>
where
    T: Wire + PartialEq + Debug,
{
    let bytes = codec::encode(value);
    let back: T = codec::decode(&bytes, MAX_MESSAGE_BYTES).expect("an encoding decodes");
    prop_assert_eq!(&back, value);
    prop_assert_eq!(codec::encode(&back), bytes.clone());
    let longer = [&bytes[..], &[0]].concat();
    prop_assert!(codec::decode::<T>(&longer, MAX_MESSAGE_BYTES).is_err());
    let i = at.index(bytes.len());
    let mut mutated = bytes.clone();
    mutated[i] = byte;
    let spliced = [&bytes[..i], junk].concat();
    for candidate in [mutated, junk.to_vec(), spliced] {
        if let Ok(decoded) = codec::decode::<T>(&candidate, MAX_MESSAGE_BYTES) {
            prop_assert_eq!(codec::encode(&decoded), candidate);
        }
    }
    Ok(())
}

macro_rules! one_encoding_of {
    ($($name:ident: $strategy:expr;)*) => {
        proptest! {
            $(
                #[test]
                fn $name(
                    value in $strategy,
                    at in any::<Index>(),
                    byte in any::<u8>(),
                    junk in proptest::collection::vec(any::<u8>(), 0..48),
                ) {
                    one_encoding(&value, at, byte, &junk)?;
                }
            )*
        }
    };
}

one_encoding_of! {
    a_vote_has_one_encoding: vote();
    a_proposal_has_one_encoding: proposal();
    a_block_request_has_one_encoding: block_request();
    a_block_response_has_one_encoding: block().prop_map(|block| Message::BlockResponse { block });
    a_decision_has_one_encoding: (block(), certificate())
        .prop_map(|(block, certificate)| Decision { block, certificate });
    a_block_has_one_encoding: block();
    a_header_has_one_encoding: block().prop_map(|b| b.header);
    a_certificate_has_one_encoding: certificate();
    a_commit_signature_has_one_encoding: (any::<u16>(), signature())
        .prop_map(|(v, signature)| CommitSignature { validator: ValidatorIndex(v), signature });
    a_signed_transfer_has_one_encoding: transfer();
    a_transfer_has_one_encoding: transfer().prop_map(|t| t.transfer);
    a_persist_record_has_one_encoding: persist_record();
    a_genesis_has_one_encoding: genesis();
    an_account_has_one_encoding: account();
    a_block_outcome_has_one_encoding: outcome();
    a_finalized_block_has_one_encoding: finalized();
    a_misbehaviour_has_one_encoding: misbehaviour();
}

/// Other byte strings for the same value, each refused: an integer in more bytes than it needs,
/// a tag other than 0 or 1, a shorter or longer input.
#[test]
fn other_encodings_of_the_same_value_are_refused() {
    let header = Header {
        chain_id: "timed".into(),
        height: Height(5),
        parent_hash: Hash([1; 32]),
        timestamp: TimestampMs(1_000),
        proposer: ValidatorIndex(2),
        tx_root: Hash([2; 32]),
        state_root: Hash([3; 32]),
        next_set_hash: Hash([3; 32]),
        evidence_root: timed_core::block::evidence_root(&[]),
    };
    let canonical = codec::encode(&header);
    // The chain id (length 5, "timed"), then the height: 5 in one byte.
    assert_eq!(&canonical[..6], b"\x05timed");
    assert_eq!(canonical[6], 0x05);
    // The height in two bytes (0x85 0x00) instead of one.
    let long = [&canonical[..6], &[0x85, 0x00], &canonical[7..]].concat();
    assert!(matches!(
        codec::decode::<Header>(&long, MAX_MESSAGE_BYTES),
        Err(CodecError::NotCanonical(_))
    ));
    assert_eq!(
        codec::decode::<Header>(&canonical, MAX_MESSAGE_BYTES),
        Ok(header)
    );
    // An option's tag other than 0 or 1: a vote for "2" instead of nil or a block.
    let vote = Vote {
        height: Height(1),
        round: Round(0),
        kind: VoteKind::Prepare,
        block: None,
        validator: ValidatorIndex(0),
        signature: Signature([0; 64]),
    };
    let mut bytes = codec::encode(&vote);
    assert_eq!(bytes[3], 0, "nil");
    bytes[3] = 2;
    assert!(codec::decode::<Vote>(&bytes, MAX_MESSAGE_BYTES).is_err());
}
