//! The validator sets as the API shows them (ADR 0026): `GET /validators?height=H`, and the
//! summaries `/status` and the dashboard add (`summary`).
//!
//! `GET /validators?height=H` (default: the next height) answers the set that signs height `H`:
//! each member's id, name, key, owner account, stake, share of the set's stake and registered
//! address, with the set's hash (what a header's `next_set_hash` holds), its epoch and where it
//! came from. Beside it, `pending`: the registry's changes not yet in force, as they stand at the
//! node's tip (whatever `H`): registrations not elected, bonds changed since the last election,
//! the unbonding queue with release heights, jailed validators, and who joins or leaves at the
//! next epoch.
//!
//! What a node can answer, and why (nothing of it is kept in memory beyond the tip's state):
//! - the epoch of the next height and the one after it: the ledger's `current` and `next` sets
//!   (the store's staking state at the tip). A height further ahead has no set yet: its election
//!   has not happened; 400 with the range.
//! - an earlier epoch `e ≥ 1`: the staking state the block of height `e·E` (the epoch before's
//!   last) stored in its outcome (every epoch's last block stores it: the sets change there),
//!   checked against that block's `next_set_hash`; epoch 0: the genesis set. One block read per
//!   answer. A node whose store lacks that block (never, today: blocks are not pruned) answers
//!   404.
//!
//! `POST /validators/check` (a transfer's fields as JSON, unsigned: nothing is submitted) answers whether a staking
//! operation would pass the staking rules at the tip: 200, or 422 with the core's own reason
//! (`StakingError`: below `min_bond`, key already registered, not the owner, ...). A staking
//! operation that breaks a rule is still admitted by `POST /tx` and refused in its block, where
//! it costs its fee: the wallet CLI asks here first (`tools/validator.rs`). The check reads only
//! the registrations the operation names (its key's and its name's), so it costs the same
//! whatever the registry holds. It is advice: operations pending before it may change the verdict.
//!
//! Every list in an answer is bounded (`MAX_LISTED`), whatever the registry holds, so an answer
//! stays well under a megabyte: a set has at most 1,000 members.
//!
//! The staking state at the tip is decoded once per stored height and kept (`TIP`): the
//! registry may hold 65,536 registrations, and `/status` is polled.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::{Value, json};
use timed_core::staking::{StakingError, StakingParams, StakingRecord};
use timed_core::tx::{MAX_ADDRESS_BYTES, MAX_NAME_BYTES, Op, Transfer};
use timed_core::types::{Hash, Height, ValidatorIndex};
use timed_core::validators::{Member, members_hash};

use crate::api::http::{error, no_genesis, storage};
use crate::node::ctx::{Chain, Ctx, lock};
use crate::storage::store::StoreError;

/// Entries at most in each list of an answer (the pending registrations, the unbonding queue,
/// ...); a count beside each says how many there are.
pub(crate) const MAX_LISTED: usize = 1000;

pub fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/validators", get(validators))
        .route("/validators/check", axum::routing::post(check))
}

/// The staking state after the last stored block.
pub(crate) struct Tip {
    /// The genesis it belongs to (one process may hold nodes of several chains, in tests).
    genesis: Hash,
    /// The last stored height (0: none yet).
    pub height: u64,
    pub record: StakingRecord,
    pub current_hash: Hash,
    pub next_hash: Hash,
}

static TIP: Mutex<Option<Arc<Tip>>> = Mutex::new(None);

/// The names of every registration by id, for the validators a block names (proposer, signers)
/// that the genesis does not know; refreshed with `TIP`. Ids are never reused and names never
/// change, so a name found here stays right.
static NAMES: Mutex<Option<(Hash, Arc<Vec<String>>)>> = Mutex::new(None);

/// The name of validator `id`: the genesis's, else the registry's as last read (`tip`), else "?".
pub(crate) fn name(chain: &Chain, id: ValidatorIndex) -> String {
    if let Some(v) = chain.set.get(id) {
        return v.name.clone();
    }
    match lock(&NAMES).as_ref() {
        Some((genesis, names)) if *genesis == chain.hash => names
            .get(id.as_usize())
            .cloned()
            .unwrap_or_else(|| "?".into()),
        _ => "?".into(),
    }
}

/// The staking state at the tip: from `TIP` while no block was stored since, else from the store.
pub(crate) fn tip(ctx: &Ctx, chain: &Chain) -> Result<Option<Arc<Tip>>, StoreError> {
    let height = ctx.store.latest_height()?.map_or(0, |h| h.0);
    if let Some(t) = lock(&TIP).as_ref()
        && t.genesis == chain.hash
        && t.height == height
    {
        return Ok(Some(t.clone()));
    }
    let Some((height, record)) = ctx.store.staking_at_tip()? else {
        return Ok(None);
    };
    let tip = Arc::new(Tip {
        genesis: chain.hash,
        height: height.0,
        current_hash: members_hash(&record.current),
        next_hash: members_hash(&record.next),
        record,
    });
    let names = tip.record.registry.iter().map(|r| r.name.clone()).collect();
    *lock(&NAMES) = Some((chain.hash, Arc::new(names)));
    *lock(&TIP) = Some(tip.clone());
    Ok(Some(tip))
}

/// Epochs of a chain: `epoch_blocks` heights each, epoch `e` = heights `e·E + 1 ..= (e + 1)·E`.
#[derive(Clone, Copy)]
pub(crate) struct Epochs(pub u64);

impl Epochs {
    pub fn of(chain: &Chain) -> Epochs {
        Epochs(chain.genesis.params.epoch_blocks.max(1))
    }

    /// The epoch of height `h ≥ 1`.
    pub fn epoch(self, h: u64) -> u64 {
        h.saturating_sub(1) / self.0
    }

    pub fn first(self, epoch: u64) -> u64 {
        epoch.saturating_mul(self.0).saturating_add(1)
    }

    pub fn last(self, epoch: u64) -> u64 {
        epoch.saturating_add(1).saturating_mul(self.0)
    }
}

/// Where the members of an answered set came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Source {
    /// The ledger's current set at the tip.
    Current,
    /// The ledger's next set at the tip.
    Next,
    /// The staking state stored with the last block of the epoch before.
    StoredBlock,
    /// The genesis.
    Genesis,
}

/// Why a height's set cannot be answered.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SetError {
    #[error(
        "height {asked} is beyond what this node can know: it has finalized up to height {tip}, \
         and knows the sets of heights 1 to {to} (the end of the next epoch); ask again later"
    )]
    Beyond { asked: u64, tip: u64, to: u64 },
    #[error("heights start at 1 (height 0 is the genesis, which no set signs)")]
    Zero,
    #[error(
        "the set of height {asked} is not kept here: block {block} (the last of the epoch \
         before) is not in this node's store; it answers heights {from} to {to}"
    )]
    NotKept {
        asked: u64,
        block: u64,
        from: u64,
        to: u64,
    },
    #[error("the store's block {block} has no staking state or one that does not match its header")]
    Inconsistent { block: u64 },
}

/// The members of the set of height `h`, with where they came from.
fn set_of(
    ctx: &Ctx,
    chain: &Chain,
    tip: &Tip,
    h: u64,
) -> Result<Result<(Vec<Member>, Source), SetError>, StoreError> {
    let ep = Epochs::of(chain);
    let now = ep.epoch(tip.height + 1);
    let to = ep.last(now + 1);
    if h == 0 {
        return Ok(Err(SetError::Zero));
    }
    if h > to {
        return Ok(Err(SetError::Beyond {
            asked: h,
            tip: tip.height,
            to,
        }));
    }
    let e = ep.epoch(h);
    if e == now {
        return Ok(Ok((tip.record.current.clone(), Source::Current)));
    }
    if e == now + 1 {
        return Ok(Ok((tip.record.next.clone(), Source::Next)));
    }
    if e == 0 {
        return Ok(Ok((chain.set.members(), Source::Genesis)));
    }
    let block = ep.last(e - 1);
    let Some(stored) = ctx.store.block(Height(block))? else {
        return Ok(Err(SetError::NotKept {
            asked: h,
            block,
            from: ep.first(now),
            to,
        }));
    };
    match stored.outcome.staking {
        Some(r) if members_hash(&r.current) == stored.block.header.next_set_hash => {
            Ok(Ok((r.current, Source::StoredBlock)))
        }
        _ => Ok(Err(SetError::Inconsistent { block })),
    }
}

/// One member as answered.
#[derive(Serialize)]
struct MemberView<'a> {
    id: u16,
    name: &'a str,
    public_key: String,
    owner: String,
    stake: u64,
    /// Its stake over the set's, 0 to 1.
    share: f64,
    /// As registered (`host:port`); empty when unknown.
    address: &'a str,
}

/// The sum of the stakes: within 64 bits for a set (`ValidatorSet`), saturated rather than
/// trusted to be (a JSON number beyond 64 bits would not encode).
fn stake_total(members: &[Member]) -> u64 {
    let total: u128 = members.iter().map(|m| u128::from(m.stake.0)).sum();
    u64::try_from(total).unwrap_or(u64::MAX)
}

/// The least stake that is a quorum of `total`: `3·w ≥ 2·T` (`ValidatorSet::quorum`).
fn quorum(total: u64) -> u64 {
    (2 * u128::from(total)).div_ceil(3) as u64
}

fn member_views<'a>(members: &'a [Member], record: &'a StakingRecord) -> Vec<MemberView<'a>> {
    let total = stake_total(members).max(1) as f64;
    members
        .iter()
        .map(|m| MemberView {
            id: m.id.0,
            name: &m.name,
            public_key: hex::encode(m.public_key.0),
            owner: hex::encode(m.owner.0),
            stake: m.stake.0,
            share: m.stake.0 as f64 / total,
            address: record
                .registry
                .get(m.id.as_usize())
                .map_or("", |r| r.address.as_str()),
        })
        .collect()
}

/// The first `MAX_LISTED` of `items`, with how many there are.
fn bounded<T: Serialize>(items: impl Iterator<Item = T>) -> Value {
    let mut list = Vec::new();
    let mut total = 0usize;
    for item in items {
        if list.len() < MAX_LISTED {
            list.push(item);
        }
        total += 1;
    }
    json!({ "total": total, "listed": list })
}

fn ids(members: &[Member]) -> BTreeMap<ValidatorIndex, &Member> {
    members.iter().map(|m| (m.id, m)).collect()
}

/// The registry's changes not yet in force, at the tip.
fn pending(chain: &Chain, tip: &Tip) -> Value {
    let ep = Epochs::of(chain);
    let now = ep.epoch(tip.height + 1);
    let r = &tip.record;
    let (current, next) = (ids(&r.current), ids(&r.next));
    let brief = |m: &Member| json!({ "id": m.id.0, "name": m.name, "stake": m.stake.0 });
    let registered = r
        .registry
        .iter()
        .enumerate()
        .filter(|(i, reg)| {
            !reg.jailed && reg.bond.0 > 0 && !next.contains_key(&ValidatorIndex(*i as u16))
        })
        .map(|(i, reg)| {
            json!({
                "id": i, "name": reg.name, "public_key": hex::encode(reg.key.0),
                "owner": hex::encode(reg.owner.0), "bond": reg.bond.0, "address": reg.address,
            })
        });
    let bonds = r.next.iter().filter_map(|m| {
        let bond = r.registry.get(m.id.as_usize())?.bond;
        (bond.0 != m.stake.0).then(
            || json!({ "id": m.id.0, "name": m.name, "elected_stake": m.stake.0, "bond": bond.0 }),
        )
    });
    let unbonding = r.unbonding.iter().map(|u| {
        json!({
            "id": u.validator.0, "owner": hex::encode(u.owner.0), "amount": u.amount.0,
            "release_height": u.release.0,
        })
    });
    let jailed = r
        .registry
        .iter()
        .enumerate()
        .filter(|(_, reg)| reg.jailed)
        .map(|(i, reg)| json!({ "id": i, "name": reg.name, "bond": reg.bond.0 }));
    json!({
        "at_height": tip.height,
        "next_epoch": {
            "epoch": now + 1,
            "from_height": ep.first(now + 1),
            "set_hash": hex::encode(tip.next_hash.0),
            "joining": bounded(r.next.iter().filter(|m| !current.contains_key(&m.id)).map(brief)),
            "leaving": bounded(r.current.iter().filter(|m| !next.contains_key(&m.id)).map(brief)),
        },
        "next_election_after_height": ep.last(now),
        "elected_sets_sign_from_height": ep.first(now + 2),
        "registered_not_elected": bounded(registered),
        "bonds_changed_since_election": bounded(bonds),
        "unbonding": bounded(unbonding),
        "jailed": bounded(jailed),
    })
}

/// What `/status` and the dashboard show of the sets: the current one, and a summary of what
/// changes; `None` before a genesis (or if the store cannot be read: `/status` still answers).
pub(crate) fn summary(ctx: &Ctx, chain: &Chain) -> Option<Value> {
    let tip = tip(ctx, chain).ok()??;
    let ep = Epochs::of(chain);
    let now = ep.epoch(tip.height + 1);
    let r = &tip.record;
    let total = stake_total(&r.current);
    let (current, next) = (ids(&r.current), ids(&r.next));
    Some(json!({
        "current": {
            "epoch": now,
            "hash": hex::encode(tip.current_hash.0),
            "size": r.current.len(),
            "total_stake": total,
            "quorum": quorum(total),
            "epoch_blocks": ep.0,
            "next_epoch_height": ep.first(now + 1),
        },
        "pending": {
            "next_hash": (tip.next_hash != tip.current_hash).then(|| hex::encode(tip.next_hash.0)),
            "joining": r.next.iter().filter(|m| !current.contains_key(&m.id)).count(),
            "leaving": r.current.iter().filter(|m| !next.contains_key(&m.id)).count(),
            "registered_not_elected": r.registry.iter().enumerate().filter(|(i, reg)| {
                !reg.jailed && reg.bond.0 > 0 && !next.contains_key(&ValidatorIndex(*i as u16))
            }).count(),
            "unbonding": r.unbonding.len(),
            "jailed": r.registry.iter().filter(|reg| reg.jailed).count(),
        },
    }))
}

/// The members of the current set with their stakes, for `/status`'s `validators`.
pub(crate) fn current_members(ctx: &Ctx, chain: &Chain) -> Option<Vec<Member>> {
    Some(tip(ctx, chain).ok()??.record.current.clone())
}

/// `height` as given: a whole number from 1, at most 20 digits (anything else is refused before
/// it is parsed).
fn parse_height(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() || t.len() > 20 || !t.bytes().all(|b| b.is_ascii_digit()) {
        let shown: String = t.chars().take(24).collect();
        return Err(format!(
            "height must be a whole number from 1 (got {shown:?}{})",
            if t.chars().count() > 24 { "..." } else { "" }
        ));
    }
    t.parse::<u64>()
        .map_err(|_| format!("height {t} is out of range: at most {}", u64::MAX))
}

async fn validators(
    State(ctx): State<Arc<Ctx>>,
    q: Result<Query<BTreeMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return error(
            StatusCode::BAD_REQUEST,
            "the query does not decode: height must be a whole number from 1 (/validators?height=H)",
        );
    };
    let Some(chain) = ctx.chain() else {
        return no_genesis();
    };
    let asked = match q.get("height").map(|t| parse_height(t)) {
        None => None,
        Some(Ok(h)) => Some(h),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    // A past set reads a whole block: on a blocking thread, as the ranges are.
    let job = tokio::task::spawn_blocking(move || answer(&ctx, &chain, asked));
    match job.await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => storage(e),
        Err(e) => storage(format!("the validator set could not be read: {e}")),
    }
}

fn answer(ctx: &Ctx, chain: &Chain, asked: Option<u64>) -> Result<Response, StoreError> {
    let Some(tip) = tip(ctx, chain)? else {
        return Ok(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node has no staking state yet",
        ));
    };
    let ep = Epochs::of(chain);
    let h = asked.unwrap_or(tip.height + 1);
    let (members, source) = match set_of(ctx, chain, &tip, h)? {
        Ok(found) => found,
        Err(e) => {
            let now = ep.epoch(tip.height + 1);
            let code = match e {
                SetError::Beyond { .. } | SetError::Zero => StatusCode::BAD_REQUEST,
                SetError::NotKept { .. } => StatusCode::NOT_FOUND,
                SetError::Inconsistent { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let body = json!({
                "error": e.to_string(),
                "from_height": 1,
                "to_height": ep.last(now + 1),
                "tip": tip.height,
            });
            return Ok((code, Json(body)).into_response());
        }
    };
    let total = stake_total(&members);
    let e = ep.epoch(h);
    let body = json!({
        "height": h,
        "epoch": e,
        "epoch_first_height": ep.first(e),
        "epoch_last_height": ep.last(e),
        "set_hash": hex::encode(members_hash(&members).0),
        "size": members.len(),
        "total_stake": total,
        "quorum": quorum(total),
        "source": source,
        "tip": tip.height,
        "params": params_json(chain),
        "validators": member_views(&members, &tip.record),
        "pending": pending(chain, &tip),
    });
    Ok(Json(body).into_response())
}

/// The staking parameters of the genesis, as the CLI and the dashboard show them.
fn params_json(chain: &Chain) -> Value {
    let p = &chain.genesis.params;
    json!({
        "epoch_blocks": p.epoch_blocks.max(1),
        "min_bond": p.min_bond.0,
        "max_validators": p.max_validators,
        "unbonding_blocks": p.unbonding_blocks,
    })
}

/// Whether the staking operation `t` passes the staking rules of the state `record` at `height`:
/// the core's rules (`Staking::apply_op`) applied to a copy holding only the registrations the
/// operation reads (the one of its key and the one of its name) and one member per set.
fn dry_run(
    record: &StakingRecord,
    params: StakingParams,
    t: &Transfer,
    height: Height,
) -> Result<(), StakingError> {
    // The one rule that reads the registry's length: the ids are 16 bits.
    if matches!(t.op, Op::Register { .. }) && record.registry.len() > usize::from(u16::MAX) {
        return Err(StakingError::RegistryFull);
    }
    let name = match &t.op {
        Op::Register { name, .. } => Some(name),
        _ => None,
    };
    let registry: Vec<_> = record
        .registry
        .iter()
        .filter(|r| r.key == t.to || Some(&r.name) == name)
        .cloned()
        .collect();
    let one = |set: &[Member]| set.iter().take(1).cloned().collect::<Vec<_>>();
    let mini = StakingRecord {
        registry,
        unbonding: Vec::new(),
        current: one(&record.current),
        next: one(&record.next),
    };
    // A state the node stored always rebuilds; if not, the operation cannot be judged here.
    let Ok(mut staking) = timed_core::staking::Staking::from_record(mini, params) else {
        return Ok(());
    };
    staking.apply_op(t, height)
}

async fn check(
    State(ctx): State<Arc<Ctx>>,
    body: Result<Json<Transfer>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let t = match body {
        Ok(Json(t)) => t,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("malformed transfer: {}", rejection.body_text()),
            );
        }
    };
    let Some(chain) = ctx.chain() else {
        return no_genesis();
    };
    if !t.op.is_staking() {
        return error(
            StatusCode::BAD_REQUEST,
            "not a staking operation: op must be register, bond or unbond",
        );
    }
    // The transfer's own bounds first (`POST /tx` refuses the same): the staking rules take a
    // registration's name and address as already within them.
    if let Op::Register { name, address } = &t.op
        && (name.is_empty() || name.len() > MAX_NAME_BYTES || address.len() > MAX_ADDRESS_BYTES)
    {
        let e = timed_core::ledger::TxError::BadRegistration;
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": e.to_string(), "reason": e.reason() })),
        )
            .into_response();
    }
    let tip = match tip(&ctx, &chain) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "this node has no staking state yet",
            );
        }
        Err(e) => return storage(e),
    };
    let params = StakingParams::from(&chain.genesis.params);
    match dry_run(&tip.record, params, &t, Height(tip.height + 1)) {
        Ok(()) => Json(json!({ "ok": true, "at_height": tip.height })).into_response(),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": e.to_string(), "reason": e.reason(), "at_height": tip.height })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_height_is_a_bounded_whole_number() {
        assert_eq!(parse_height("17"), Ok(17));
        assert_eq!(parse_height(" 3 "), Ok(3));
        assert_eq!(
            parse_height("0"),
            Ok(0),
            "refused later, with its own message"
        );
        for bad in ["", "-1", "1.5", "abc", "0x10", "１"] {
            let e = parse_height(bad).unwrap_err();
            assert!(e.contains("whole number"), "{bad:?}: {e}");
        }
        let e = parse_height("18446744073709551616").unwrap_err();
        assert!(e.contains("out of range"), "{e}");
        let e = parse_height(&"9".repeat(5000)).unwrap_err();
        assert!(e.len() < 200, "the answer does not echo a long input: {e}");
    }

    #[test]
    fn epochs_number_heights_from_one() {
        let ep = Epochs(5);
        assert_eq!(
            (ep.epoch(1), ep.epoch(5), ep.epoch(6), ep.epoch(10)),
            (0, 0, 1, 1)
        );
        assert_eq!((ep.first(1), ep.last(1)), (6, 10));
        assert_eq!(ep.last(u64::MAX), u64::MAX, "saturates, never wraps");
    }

    /// The staking state of a genesis of two validators (stakes 100, owning themselves), with
    /// a minimum bond of 50.
    fn genesis_state() -> (StakingRecord, StakingParams) {
        let (_, validators) = timed_core::validators::insecure_dev_validators(&[100, 100]);
        let genesis = timed_core::validators::Genesis {
            chain_id: "check".into(),
            genesis_time_ms: timed_core::types::TimestampMs(0),
            validators,
            balances: vec![],
            params: timed_core::validators::ConsensusParams {
                min_bond: timed_core::types::Amount(50),
                ..Default::default()
            },
        };
        let ledger = timed_core::ledger::Ledger::from_genesis(&genesis);
        let staking = ledger.staking().unwrap();
        (staking.record(), *staking.params())
    }

    fn op(from: &str, to: &str, amount: u64, op: Op) -> Transfer {
        let key = |n: &str| timed_core::crypto::Keypair::insecure_from_name(n).public_key();
        Transfer {
            from: key(from),
            to: key(to),
            amount: timed_core::types::Amount(amount),
            fee: timed_core::types::Amount(1),
            nonce: 0,
            op,
        }
    }

    fn register(name: &str) -> Op {
        Op::Register {
            name: name.into(),
            address: "127.0.0.1:9000".into(),
        }
    }

    #[test]
    fn the_check_gives_the_cores_reason_for_each_broken_rule() {
        let (record, params) = genesis_state();
        let run = |t: &Transfer| dry_run(&record, params, t, Height(1));
        assert_eq!(run(&op("alice", "v3", 60, register("v3"))), Ok(()));
        assert_eq!(
            run(&op("alice", "v3", 49, register("v3"))).map_err(|e| e.reason()),
            Err("below_min_bond")
        );
        assert_eq!(
            run(&op("alice", "validator1", 60, register("v3"))).map_err(|e| e.reason()),
            Err("already_registered")
        );
        assert_eq!(
            run(&op("alice", "v3", 60, register("validator2"))).map_err(|e| e.reason()),
            Err("name_taken")
        );
        // validator1 owns itself: alice may not touch its bond, validator1 may.
        assert_eq!(
            run(&op("alice", "validator1", 10, Op::Unbond)).map_err(|e| e.reason()),
            Err("not_owner")
        );
        assert_eq!(
            run(&op("validator1", "validator1", 100, Op::Unbond)),
            Ok(())
        );
        assert_eq!(
            run(&op("validator1", "validator1", 60, Op::Unbond)).map_err(|e| e.reason()),
            Err("below_min_bond"),
            "40 would be left"
        );
        assert_eq!(
            run(&op("alice", "v9", 60, Op::Bond)).map_err(|e| e.reason()),
            Err("not_registered")
        );
    }

    #[test]
    fn a_quorum_is_two_thirds_rounded_up() {
        assert_eq!(
            (quorum(3), quorum(300), quorum(100), quorum(1)),
            (2, 200, 67, 1)
        );
    }
}
