//! The codec against hostile and random input: every message round-trips to the same value and
//! the same bytes, and no byte string makes decoding panic.

use proptest::prelude::*;
use timed_core::block::{Block, Certificate, CommitSignature, Header};
use timed_core::codec::{self, CodecError, MAX_MESSAGE_BYTES, WIRE_VERSION};
use timed_core::crypto::{PublicKey, Signature};
use timed_core::message::{Decision, Message, Proposal, Vote, VoteKind};
use timed_core::tx::{SignedTransfer, Transfer};
use timed_core::types::{Amount, Hash, Height, Round, TimestampMs, ValidatorIndex};

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
    )
        .prop_map(|(from, to, amount, fee, nonce, signature)| SignedTransfer {
            transfer: Transfer {
                from: PublicKey(from),
                to: PublicKey(to),
                amount: Amount(amount),
                fee: Amount(fee),
                nonce,
            },
            signature,
        })
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
                },
                txs,
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

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        vote().prop_map(Message::Vote),
        (
            block(),
            any::<u32>(),
            proptest::option::of(any::<u32>()),
            any::<u16>(),
            signature(),
            proptest::option::of(certificate()),
        )
            .prop_map(
                |(block, r, vr, p, signature, polka)| Message::Proposal(Proposal {
                    height: block.header.height,
                    round: Round(r),
                    valid_round: vr.map(Round),
                    block,
                    proposer: ValidatorIndex(p),
                    signature,
                    polka,
                })
            ),
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
        let _ = codec::decode_message(&enveloped);
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
    // Byte strings, not arrays of integers (DEPENDENCIES.md trap 3).
    assert!(bytes.len() < 180, "{} bytes", bytes.len());
}

#[test]
fn deeply_nested_input_is_an_error_not_a_stack_overflow() {
    let mut bytes = vec![WIRE_VERSION];
    bytes.extend(std::iter::repeat_n(0x81u8, 100_000)); // arrays of one element, nested
    assert!(matches!(
        codec::decode_message(&bytes),
        Err(CodecError::Malformed(_))
    ));
    assert!(bytes.len() < MAX_MESSAGE_BYTES);
}
