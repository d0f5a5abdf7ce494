//! The binary layout of every core type that is sent, stored, signed or hashed: one place to read
//! them all, each written out field by field under the rules of `codec`. Field and variant names
//! in Rust do not reach the bytes; the order here does, and the tags of enum variants. Changing
//! any line here changes the wire and disk format (and block hashes and signatures): the
//! conformance vectors (`core/tests/conformance.rs`) fail until the change is made on purpose,
//! with a new `codec::WIRE_VERSION`.

use crate::block::{Block, Certificate, CommitSignature, Header};
use crate::codec::{CodecError, Reader, Wire};
use crate::consensus::{
    Finalized, GuardLock, Misbehaviour, PersistRecord, SignGuard, SignPoint, SignStep,
};
use crate::crypto::{PublicKey, Signature};
use crate::ledger::rewards::Reward;
use crate::ledger::snapshot::{Chunk, Manifest, Part};
use crate::ledger::{Account, BlockOutcome};
use crate::message::{Decision, Message, Proposal, Vote, VoteKind};
use crate::staking::{Registration, StakingRecord, Unbonding};
use crate::tx::{Op, SignedTransfer, Transfer};
use crate::types::{Amount, Hash, Height, Round, Stake, TimestampMs, ValidatorIndex};
use crate::validators::Member;
use crate::validators::{
    ConsensusParams, Genesis, GenesisBalance, GenesisValidator, TimeoutParams,
};
use crate::vote::Evidence;
use crate::{wire_newtype, wire_struct};

wire_newtype!(
    Height,
    Round,
    Stake,
    ValidatorIndex,
    TimestampMs,
    Amount,
    Hash,
    PublicKey,
    Signature
);

// Transfers.
wire_struct!(Transfer {
    from,
    to,
    amount,
    fee,
    nonce,
    op
});

impl Wire for Op {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            Op::Pay => out.push(0),
            Op::Register { name, address } => {
                out.push(1);
                name.put(out);
                address.put(out);
            }
            Op::Bond => out.push(2),
            Op::Unbond => out.push(3),
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(match r.tag()? {
            0 => Op::Pay,
            1 => Op::Register {
                name: Wire::get(r)?,
                address: Wire::get(r)?,
            },
            2 => Op::Bond,
            3 => Op::Unbond,
            t => return unknown(t),
        })
    }
}
wire_struct!(SignedTransfer {
    transfer,
    signature
});

// Blocks and certificates.
wire_struct!(Header {
    chain_id,
    height,
    parent_hash,
    timestamp,
    proposer,
    tx_root,
    state_root,
    next_set_hash,
    evidence_root,
});
wire_struct!(Block {
    header,
    txs,
    evidence
});
wire_struct!(CommitSignature {
    validator,
    signature
});
wire_struct!(Certificate {
    height,
    round,
    block_hash,
    signatures,
});

// Messages.
wire_struct!(Vote {
    height,
    round,
    kind,
    block,
    validator,
    signature,
});
wire_struct!(Proposal {
    height,
    round,
    valid_round,
    block,
    proposer,
    signature,
    polka,
});
wire_struct!(Decision { block, certificate });

/// Reads an enum's tag and refuses one it does not know.
fn unknown<T>(_: u64) -> Result<T, CodecError> {
    Err(CodecError::Malformed("unknown variant tag"))
}

impl Wire for VoteKind {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(match self {
            VoteKind::Prepare => 0,
            VoteKind::Precommit => 1,
        });
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        match r.tag()? {
            0 => Ok(VoteKind::Prepare),
            1 => Ok(VoteKind::Precommit),
            t => unknown(t),
        }
    }
}

impl Wire for Message {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            Message::Proposal(p) => {
                out.push(0);
                p.put(out);
            }
            Message::Vote(v) => {
                out.push(1);
                v.put(out);
            }
            Message::Decision(d) => {
                out.push(2);
                d.put(out);
            }
            Message::SyncRequest { from, max_blocks } => {
                out.push(3);
                from.put(out);
                max_blocks.put(out);
            }
            Message::SyncResponse { blocks } => {
                out.push(4);
                blocks.put(out);
            }
            Message::Transaction(tx) => {
                out.push(5);
                tx.put(out);
            }
            Message::BlockRequest { height, hash } => {
                out.push(6);
                height.put(out);
                hash.put(out);
            }
            Message::BlockResponse { block } => {
                out.push(7);
                block.put(out);
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(match r.tag()? {
            0 => Message::Proposal(Wire::get(r)?),
            1 => Message::Vote(Wire::get(r)?),
            2 => Message::Decision(Wire::get(r)?),
            3 => Message::SyncRequest {
                from: Wire::get(r)?,
                max_blocks: Wire::get(r)?,
            },
            4 => Message::SyncResponse {
                blocks: Wire::get(r)?,
            },
            5 => Message::Transaction(Wire::get(r)?),
            6 => Message::BlockRequest {
                height: Wire::get(r)?,
                hash: Wire::get(r)?,
            },
            7 => Message::BlockResponse {
                block: Wire::get(r)?,
            },
            t => return unknown(t),
        })
    }
}

// Snapshots (`ledger::snapshot`).
impl Wire for Part {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            Part::Empty => out.push(0),
            Part::Leaf(key, account) => {
                out.push(1);
                key.put(out);
                account.put(out);
            }
            Part::Chunk(root) => {
                out.push(2);
                root.put(out);
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(match r.tag()? {
            0 => Part::Empty,
            1 => Part::Leaf(Wire::get(r)?, Wire::get(r)?),
            2 => Part::Chunk(Wire::get(r)?),
            t => return unknown(t),
        })
    }
}
wire_struct!(Manifest {
    height,
    depth,
    parts,
    staking
});
wire_struct!(Chunk {
    height,
    index,
    accounts
});

// The genesis (its hash names the chain).
wire_struct!(TimeoutParams { base_ms, delta_ms });
wire_struct!(ConsensusParams {
    block_time_ms,
    propose_timeout,
    prepare_timeout,
    precommit_timeout,
    max_clock_drift_ms,
    max_block_txs,
    resend_interval_ms,
    epoch_blocks,
    min_bond,
    max_validators,
    unbonding_blocks,
    slash_permille,
});
wire_struct!(GenesisValidator {
    name,
    public_key,
    stake,
    address,
});
wire_struct!(GenesisBalance { account, amount });
wire_struct!(Genesis {
    chain_id,
    genesis_time_ms,
    validators,
    balances,
    params,
});

// The ledger as stored.
wire_struct!(Account { balance, nonce });
wire_struct!(Reward {
    validator,
    account,
    amount
});
wire_struct!(BlockOutcome {
    height,
    subsidy,
    fees,
    total_reward,
    rewards,
    archived,
    touched,
    staking_refused,
    staking,
    slashed,
    jailed,
});

// What a validator persists before it signs.
impl Wire for SignStep {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(match self {
            SignStep::Proposal => 0,
            SignStep::Prepare => 1,
            SignStep::Precommit => 2,
        });
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        match r.tag()? {
            0 => Ok(SignStep::Proposal),
            1 => Ok(SignStep::Prepare),
            2 => Ok(SignStep::Precommit),
            t => unknown(t),
        }
    }
}
wire_struct!(SignPoint {
    height,
    round,
    step
});
wire_struct!(GuardLock {
    height,
    round,
    block
});
wire_struct!(SignGuard { last, lock });

impl Wire for PersistRecord {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            PersistRecord::Signed { height, msg } => {
                out.push(0);
                height.put(out);
                msg.put(out);
            }
            PersistRecord::Locked {
                height,
                round,
                block,
                polka,
            } => {
                out.push(1);
                height.put(out);
                round.put(out);
                block.put(out);
                polka.put(out);
            }
            PersistRecord::Prepared { height, block } => {
                out.push(2);
                height.put(out);
                block.put(out);
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(match r.tag()? {
            0 => PersistRecord::Signed {
                height: Wire::get(r)?,
                msg: Wire::get(r)?,
            },
            1 => PersistRecord::Locked {
                height: Wire::get(r)?,
                round: Wire::get(r)?,
                block: Wire::get(r)?,
                polka: Wire::get(r)?,
            },
            2 => PersistRecord::Prepared {
                height: Wire::get(r)?,
                block: Wire::get(r)?,
            },
            t => return unknown(t),
        })
    }
}

// A finalized block with its outcome (the runtime stores it), and evidence of misbehaviour.
wire_struct!(Finalized {
    block,
    certificate,
    outcome
});
wire_struct!(Evidence { first, second });

impl Wire for Misbehaviour {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            Misbehaviour::DoubleVote(e) => {
                out.push(0);
                e.put(out);
            }
            Misbehaviour::DoubleProposal { first, second } => {
                out.push(1);
                first.put(out);
                second.put(out);
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(match r.tag()? {
            0 => Misbehaviour::DoubleVote(Wire::get(r)?),
            1 => Misbehaviour::DoubleProposal {
                first: Wire::get(r)?,
                second: Wire::get(r)?,
            },
            t => return unknown(t),
        })
    }
}

// Staking state, as a store keeps it (ADR 0026).
wire_struct!(Registration {
    key,
    owner,
    name,
    address,
    bond,
    jailed,
});
wire_struct!(Unbonding {
    validator,
    owner,
    amount,
    release,
});
wire_struct!(Member {
    id,
    name,
    public_key,
    stake,
    owner,
});
wire_struct!(StakingRecord {
    registry,
    unbonding,
    current,
    next,
});
