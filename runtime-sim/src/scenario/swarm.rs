//! The swarm: a whole scenario drawn from a seed (validators, stakes, behaviours, latencies, loss,
//! partitions, crashes, storage losses), in layers each drawn from a stream of its own, so that a
//! layer added later changes no earlier draw and the seeds pinned by regression tests stay what
//! they were.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::network::Latency;

use super::*;

/// The liveness bound of a swarm: after the faults heal, every honest node must finalize two new
/// heights within ten times what one full round at round 0 can take (block time, the three
/// step timeouts, and two resend intervals for a lagging node's catch-up), and never less than
/// 60 s. With the default timeouts and a block time of 1 s that is 100 s.
pub fn swarm_liveness_bound(c: &Consensus) -> u64 {
    let round = c.block_time_ms
        + c.propose_timeout_ms
        + c.prepare_timeout_ms
        + c.precommit_timeout_ms
        + 2 * c.resend_interval_ms;
    (10 * round).max(60_000)
}

/// Whether `swarm` draws membership changes. A node outside the set (a candidate before its
/// activation, a validator that left) catches up like anyone, and the four liveness failures of
/// the first 7,000 `swarm-membership` seeds are fixed (seeds 358, 1180, 1199, 2049:
/// `membership_seeds_that_once_failed_pass`). `swarm` still draws no membership changes, and
/// `swarm-membership` does: turning this on redraws the seeds `swarm`'s tests pin.
pub const CORE_SYNCS_FOLLOWERS: bool = false;

/// Everything drawn from the seed: `swarm_stronger`, then, from streams of their own, perhaps a
/// round pusher, slow blocks, unsynced storage, and (once `CORE_SYNCS_FOLLOWERS`) membership
/// changes. The Byzantine stake stays below a third of every set.
pub fn swarm(seed: u64) -> Scenario {
    let mut s = swarm_stronger(seed);
    draw_round_pusher(&mut s, seed);
    draw_slow_blocks(&mut s, seed);
    draw_unsynced_storage(&mut s, seed);
    if CORE_SYNCS_FOLLOWERS {
        draw_membership(&mut s, seed);
    }
    s
}

/// `swarm` with its membership layer whatever `CORE_SYNCS_FOLLOWERS` says: a third of the seeds
/// change their validator set during the faults (`draw_membership`); the others are `swarm`'s.
pub fn swarm_membership(seed: u64) -> Scenario {
    let mut s = swarm_stronger(seed);
    draw_round_pusher(&mut s, seed);
    draw_slow_blocks(&mut s, seed);
    draw_unsynced_storage(&mut s, seed);
    draw_membership(&mut s, seed);
    s
}

/// One seed in three, from a stream of its own drawn last (a seed that draws no change is
/// drawn as before), changes its validator set during the faults: short epochs (5 to 20
/// heights), one to four candidates that register, extra bonds, unbonds of genesis validators
/// (part or all of a bond), and sometimes a full replacement (every genesis validator leaves).
/// Candidates join each partition's groups at random and may crash and restart.
///
/// The events are carried out in order, each once the one before is final (`sim::membership`),
/// so every set the chain elects is that of the bonds after a prefix of them: an event is kept
/// only if after it the Byzantine stake is still below a third of the set the bonds would elect
/// (an unbond of an honest validator raises the Byzantine share), Byzantine candidates counted
/// (`draw_byzantine_candidate`). A slash can only lower a double voter's (Byzantine) stake, so
/// it needs no such care: it is produced by the double-voter behaviour itself (of a genesis
/// validator or of a Byzantine candidate once elected), not drawn as an event.
fn draw_membership(s: &mut Scenario, seed: u64) {
    // "members" in ASCII.
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x006d_656d_6265_7273);
    if !rng.random_bool(1.0 / 3.0) {
        return;
    }
    let n = s.validators.len();
    let epoch = rng.random_range(5..=20u64);
    s.consensus.epoch_blocks = epoch;
    s.consensus.unbonding_blocks = 2 * epoch + rng.random_range(0..=epoch);
    let min_bond = rng.random_range(1..=10u64);
    s.consensus.min_bond = min_bond;
    let replacement = rng.random_bool(0.25);
    let c = if replacement {
        rng.random_range(2..=4usize)
    } else {
        rng.random_range(1..=3usize)
    };
    s.candidates = (0..c)
        .map(|_| CandidateSpec {
            name: None,
            funds: 10_000,
        })
        .collect();
    let first = s.candidate_node(0);
    // Bonds as the ledger would hold them (genesis validators first), and who is Byzantine.
    let mut byzantine: Vec<bool> = {
        let (mut byz, _) = (vec![false; n], ());
        for (i, v) in s.validators.iter().enumerate() {
            byz[i] = v.behaviour.is_byzantine();
        }
        for f in &s.faults {
            if let FaultKind::Behave { node, behaviour } = f.kind
                && behaviour.is_byzantine()
                && node < n
            {
                byz[node] = true;
            }
        }
        byz.extend(std::iter::repeat_n(false, c));
        byz
    };
    let turned = draw_byzantine_candidate(seed, c);
    if let Some((k, _)) = turned {
        byzantine[n + k] = true;
    }
    let mut bonds: Vec<u64> = s
        .validators
        .iter()
        .map(|v| v.stake)
        .chain(std::iter::repeat_n(0, c))
        .collect();
    let window = SWARM_FAULT_WINDOW;
    let mut wanted: Vec<(MembershipKind, usize, u64)> = vec![];
    for k in 0..c {
        wanted.push((
            MembershipKind::Register,
            n + k,
            rng.random_range(min_bond..=100),
        ));
    }
    for _ in 0..rng.random_range(0..=2usize) {
        let v = rng.random_range(0..n + c);
        wanted.push((MembershipKind::Bond, v, rng.random_range(1..=50u64)));
    }
    if replacement {
        // The Byzantine ones first: their leaving only lowers the Byzantine share.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|v| !byzantine[*v]);
        for v in order {
            wanted.push((MembershipKind::Unbond, v, u64::MAX));
        }
    } else {
        for _ in 0..rng.random_range(0..=2usize) {
            let v = rng.random_range(0..n);
            let all = rng.random_bool(0.5);
            wanted.push((MembershipKind::Unbond, v, if all { u64::MAX } else { 0 }));
        }
    }
    // Only the amounts the ledger will apply, and only while every prefix's set keeps the
    // Byzantine stake below a third.
    let mut at_ms: Vec<u64> = vec![];
    for (kind, v, amount) in wanted {
        let amount = match kind {
            MembershipKind::Unbond if amount == u64::MAX => bonds[v],
            MembershipKind::Unbond => {
                // Part of the bond, leaving at least the least bond.
                if bonds[v] <= min_bond {
                    continue;
                }
                rng.random_range(1..=bonds[v] - min_bond)
            }
            MembershipKind::Bond if bonds[v] == 0 => continue,
            _ => amount,
        };
        if amount == 0 {
            continue;
        }
        let mut after = bonds.clone();
        match kind {
            MembershipKind::Register | MembershipKind::Bond => after[v] += amount,
            MembershipKind::Unbond => after[v] -= amount,
        }
        let total: u64 = after.iter().sum();
        let byz: u64 = (0..n + c).filter(|i| byzantine[*i]).map(|i| after[i]).sum();
        // With nobody bonded the core keeps the set it has: no prefix may get there.
        if total == 0 || 3 * byz >= total {
            continue;
        }
        bonds = after;
        let node = if v < n { v } else { first + v - n };
        s.membership.push(Membership {
            at: Ms(0),
            kind,
            node,
            amount,
        });
        at_ms.push(rng.random_range(0..window));
    }
    at_ms.sort_unstable();
    for (m, t) in s.membership.iter_mut().zip(at_ms) {
        m.at = Ms(t);
    }
    if let Some((k, behaviour)) = turned {
        s.faults.push(at(
            0,
            FaultKind::Behave {
                node: first + k,
                behaviour,
            },
        ));
    }
    // Candidates stand in a random group of every partition (else they would form one of
    // their own), and now and then crash and come back.
    for f in &mut s.faults {
        if let FaultKind::Partition { groups } = &mut f.kind {
            for k in 0..c {
                let g = rng.random_range(0..groups.len());
                groups[g].push(first + k);
            }
        }
    }
    for k in 0..c {
        if rng.random_bool(0.2) {
            let node = first + k;
            let start = rng.random_range(0..window - 1_000);
            let end = rng.random_range(start + 1..window);
            s.faults.push(at(start, FaultKind::Crash { node }));
            s.faults.push(at(end, FaultKind::Restart { node }));
        }
    }
    s.faults.sort_by_key(|f| f.at);
}

/// The Byzantine candidate of a membership seed, if any: one seed in three, from a stream of
/// its own (so the other draws of `draw_membership` stay as they were), turns one candidate
/// Byzantine from the start. It follows the chain as a misbehaving peer, registers like the
/// others (kept only while the Byzantine stake stays below a third of every set), and once
/// elected misbehaves as a member: a double voter is slashed and jailed by the evidence the
/// others include, so slashes happen during the faults and set changes.
fn draw_byzantine_candidate(seed: u64, candidates: usize) -> Option<(usize, Behaviour)> {
    // "byzcand" in ASCII.
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0062_797a_6361_6e64);
    if candidates == 0 || !rng.random_bool(1.0 / 3.0) {
        return None;
    }
    let kinds = [
        Behaviour::DoubleVoter,
        Behaviour::EquivocatingProposer,
        Behaviour::SyncLiar,
        Behaviour::BodySwapper,
        Behaviour::RoundPusher,
        Behaviour::Silent,
    ];
    let k = rng.random_range(0..candidates);
    Some((k, kinds[rng.random_range(0..kinds.len())]))
}

/// One seed in four, from a stream of its own drawn last, writes to disk as the real node does
/// (`StorageModel::Unsynced`): its crashes may then take finalized blocks not yet synced.
fn draw_unsynced_storage(s: &mut Scenario, seed: u64) {
    // "disk" in ASCII.
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6469_736b);
    if rng.random_bool(0.25) {
        s.storage = StorageModel::Unsynced;
    }
}

/// One seed in four, from a stream of its own drawn last, gets blocks at least a resend interval
/// apart (one or two intervals), where the core sends no decision announcement and a lagging
/// peer gets the decision only by re-sending its messages (ADR 0002); the other draws choose
/// among 0, 200 ms and 1 s, all below it. The liveness bound and the run grow with the block time.
fn draw_slow_blocks(s: &mut Scenario, seed: u64) {
    // "blocks" in ASCII (a stream that leaves the pinned seed 2160 as it was: see the tests).
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x626c_6f63_6b73);
    if !rng.random_bool(0.25) {
        return;
    }
    s.consensus.block_time_ms = s.consensus.resend_interval_ms * rng.random_range(1..=2u64);
    let within = swarm_liveness_bound(&s.consensus);
    s.duration = Ms(SWARM_FAULT_WINDOW + within);
    if let Some(l) = &mut s.expect.liveness {
        l.within = Ms(within);
    }
}

/// The draws of `swarm_classic`, then from a stream of their own the stronger adversaries (body
/// swapper, sync liar, proof stripper, replayer, torsion signer, twins, each with the others'
/// faults), and, once the core guards against double signing after a storage loss, restarts
/// that lost records. The Byzantine stake stays below a third. The swarm as drawn before round
/// pushers existed: the seeds pinned by the stronger adversaries' regression tests are of this
/// draw.
pub fn swarm_stronger(seed: u64) -> Scenario {
    let mut s = swarm_classic(seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_0ad7);
    let n = s.validators.len();
    let total: u64 = s.validators.iter().map(|v| v.stake).sum();
    let (mut byz, _) = s.byzantine_stake();
    let kinds = [
        Behaviour::BodySwapper,
        Behaviour::SyncLiar,
        Behaviour::ProofStripper,
        Behaviour::Replayer,
        Behaviour::TorsionSigner,
        Behaviour::Twins,
    ];
    for i in 0..n {
        let stake = s.validators[i].stake;
        if s.validators[i].behaviour == Behaviour::Honest
            && rng.random_bool(0.3)
            && 3 * (byz + stake) < total
        {
            byz += stake;
            s.validators[i].behaviour = kinds[rng.random_range(0..kinds.len())];
        }
    }
    let window = SWARM_FAULT_WINDOW;
    // Each twin stands apart from its validator's first instance: in every partition drawn, and
    // in one more partition of its own that splits the others at random.
    for (k, &v) in s.twins().iter().enumerate() {
        let twin = n + k;
        for f in &mut s.faults {
            if let FaultKind::Partition { groups } = &mut f.kind {
                let at = groups.iter().position(|g| g.contains(&v)).unwrap_or(0);
                let other = (at + 1) % groups.len();
                groups[other].push(twin);
            }
        }
        let start = rng.random_range(0..window - 1_000);
        let end = rng.random_range(start + 1..window);
        let mut groups = vec![vec![v], vec![twin]];
        for j in (0..n + s.twins().len()).filter(|j| *j != v && *j != twin) {
            groups[rng.random_range(0..2usize)].push(j);
        }
        s.faults.push(at(start, FaultKind::Partition { groups }));
        s.faults.push(at(end, FaultKind::Heal));
    }
    // A lone honest validator that loses its blocks loses the chain (nobody else holds it):
    // storage faults need a second honest copy.
    let honest = (0..n)
        .filter(|i| s.validators[*i].behaviour == Behaviour::Honest)
        .count();
    if crate::sim::CORE_HAS_SIGN_GUARD && honest >= 2 {
        let losses = [StorageLoss::Wiped, StorageLoss::Backup, StorageLoss::WalCut];
        for i in 0..n {
            if s.validators[i].behaviour == Behaviour::Honest && rng.random_bool(0.2) {
                let loss = losses[rng.random_range(0..losses.len())];
                let t = rng.random_range(0..window);
                s.faults
                    .push(at(t, FaultKind::RestartLost { node: i, loss }));
            }
        }
    }
    // Stable: at one instant the faults drawn here come after the classic ones, and all of
    // them before the heal at the end of the window.
    s.faults.sort_by_key(|f| f.at);
    let within = swarm_liveness_bound(&s.consensus);
    s.duration = Ms(window + within);
    s.expect.liveness = Some(Liveness {
        after: Ms(window),
        gain: 2,
        within: Ms(within),
    });
    s
}

/// At most one honest validator turns round pusher, drawn from a stream of its own after
/// everything else, so that every other draw of a seed stays what it was; the Byzantine
/// stake stays below a third. A validator the faults above crash or restart may be drawn: a
/// pusher runs the honest core, and restarts like one.
fn draw_round_pusher(s: &mut Scenario, seed: u64) {
    // "push" in ASCII.
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7075_7368);
    let (byz, total) = s.byzantine_stake();
    for v in &mut s.validators {
        if v.behaviour == Behaviour::Honest && rng.random_bool(0.4) && 3 * (byz + v.stake) < total {
            v.behaviour = Behaviour::RoundPusher;
            return;
        }
    }
}

/// The window in which a swarm's faults happen; all heal at its end.
const SWARM_FAULT_WINDOW: u64 = 30_000;

/// The swarm as drawn before the stronger adversaries existed: 1–10 validators, stakes,
/// latencies, loss, partitions, crashes, and a Byzantine set holding less than a third of the
/// stake (silent, equivocating proposer, double voter, garbage sender, amnesia, invalid
/// proposer). The seeds pinned by regression tests are seeds of this draw.
pub fn swarm_classic(seed: u64) -> Scenario {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = rng.random_range(1..=10usize);
    let stakes: Vec<u64> = (0..n).map(|_| rng.random_range(1..=100u64)).collect();
    let total: u64 = stakes.iter().sum();
    let mut behaviours = vec![Behaviour::Honest; n];
    let mut byz_stake = 0;
    let byz_kinds = [
        Behaviour::Silent,
        Behaviour::EquivocatingProposer,
        Behaviour::DoubleVoter,
        Behaviour::GarbageSender,
    ];
    for i in 0..n {
        if rng.random_bool(0.3) && 3 * (byz_stake + stakes[i]) < total {
            byz_stake += stakes[i];
            behaviours[i] = byz_kinds[rng.random_range(0..byz_kinds.len())];
        }
    }
    let latency = match rng.random_range(0..3u8) {
        0 => Latency::Fixed {
            ms: rng.random_range(1..100u64),
        },
        1 => {
            let min_ms = rng.random_range(1..50u64);
            Latency::Uniform {
                min_ms,
                max_ms: min_ms + rng.random_range(0..150u64),
            }
        }
        _ => Latency::Normal {
            mean_ms: rng.random_range(5.0..150.0),
            std_ms: rng.random_range(0.0..50.0),
            floor_ms: rng.random_range(1..10u64),
        },
    };
    let network = NetworkSpec {
        latency,
        jitter_ms: rng.random_range(0..50u64),
        loss: if rng.random_bool(0.5) {
            rng.random_range(0.0..0.1)
        } else {
            0.0
        },
        duplicate: if rng.random_bool(0.3) {
            rng.random_range(0.0..0.1)
        } else {
            0.0
        },
        links: vec![],
    };
    let block_time_ms = [0, 200, 1_000][rng.random_range(0..3usize)];
    let fault_window = SWARM_FAULT_WINDOW;
    let mut faults = vec![];
    let honest: Vec<usize> = (0..n).filter(|i| !behaviours[*i].is_byzantine()).collect();
    for _ in 0..rng.random_range(0..4usize) {
        let start = rng.random_range(0..fault_window - 1_000);
        let end = rng.random_range(start + 1..fault_window);
        if rng.random_bool(0.5) && n > 1 {
            let mut groups = vec![vec![], vec![]];
            for i in 0..n {
                groups[rng.random_range(0..2usize)].push(i);
            }
            faults.push(at(start, FaultKind::Partition { groups }));
            faults.push(at(end, FaultKind::Heal));
        } else if !honest.is_empty() {
            let node = honest[rng.random_range(0..honest.len())];
            let kind = if rng.random_bool(0.5) {
                FaultKind::CrashAtPersist { node }
            } else {
                FaultKind::Crash { node }
            };
            faults.push(at(start, kind));
            faults.push(at(end, FaultKind::Restart { node }));
        }
    }
    // Overlapping intervals could leave a partition on after an earlier heal: heal everything and
    // restart everyone at the end of the window, then the network turns reliable.
    faults.push(at(fault_window, FaultKind::Heal));
    for &node in &honest {
        faults.push(at(fault_window, FaultKind::Restart { node }));
    }
    faults.push(at(fault_window, FaultKind::Reliable { on: true }));
    faults.sort_by_key(|f| f.at);
    // Amnesia and invalid proposers are drawn last, so every draw above (and the seeds pinned by
    // regression tests) stays what it was before they existed. Such a node may also be crashed
    // and restarted above.
    for i in 0..n {
        if behaviours[i] == Behaviour::Honest
            && rng.random_bool(0.2)
            && 3 * (byz_stake + stakes[i]) < total
        {
            byz_stake += stakes[i];
            behaviours[i] = if rng.random_bool(0.5) {
                Behaviour::Amnesia
            } else {
                Behaviour::InvalidProposer
            };
        }
    }
    Scenario {
        name: format!("swarm-{seed}"),
        duration: Ms(fault_window + 60_000),
        validators: stakes
            .iter()
            .zip(&behaviours)
            .map(|(s, b)| ValidatorSpec {
                name: None,
                stake: *s,
                behaviour: *b,
            })
            .collect(),
        consensus: Consensus {
            block_time_ms,
            ..Consensus::default()
        },
        network,
        faults,
        transactions: None,
        expect: Expect {
            liveness: Some(Liveness {
                after: Ms(fault_window),
                gain: 2,
                within: Ms(60_000),
            }),
            stop_at_liveness: true,
            ..Expect::default()
        },
        storage: StorageModel::Synced,
        candidates: vec![],
        membership: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swarm_byzantine_stake_is_below_a_third() {
        for seed in 0..500 {
            let s = swarm(seed);
            let (b, t) = s.byzantine_stake();
            assert!(3 * b < t, "seed {seed}");
            assert!((1..=10).contains(&s.validators.len()));
        }
    }

    /// How many of the swarm's seeds below `seeds` draw a `behaviour`.
    fn seeds_drawing(behaviour: Behaviour, seeds: u64) -> usize {
        (0..seeds)
            .filter(|seed| {
                swarm(*seed)
                    .validators
                    .iter()
                    .any(|v| v.behaviour == behaviour)
            })
            .count()
    }

    #[test]
    fn swarm_draws_amnesia_without_changing_earlier_draws() {
        let with_amnesia = seeds_drawing(Behaviour::Amnesia, 200);
        assert!(with_amnesia >= 20, "{with_amnesia} of 200 seeds");
    }

    /// A third of the seeds change their set, a third of those with a Byzantine candidate; the
    /// others are drawn as before the membership layer; and replaying the events in order,
    /// every prefix's set (the registrations with a bond, Byzantine candidates counted) gives
    /// the Byzantine validators less than a third of its stake.
    #[test]
    fn a_third_of_the_swarm_changes_its_set_with_the_byzantine_share_below_a_third_throughout() {
        let mut changing = 0;
        let mut replacements = 0;
        let mut byzantine_candidates = 0;
        for seed in 0..600 {
            let s = swarm_membership(seed);
            if s.membership.is_empty() {
                assert_eq!(s, swarm(seed), "seed {seed}");
                assert!(s.candidates.is_empty(), "seed {seed}");
                assert_eq!(s.consensus.epoch_blocks, Consensus::default().epoch_blocks);
                continue;
            }
            changing += 1;
            assert_eq!(s.validate(), Ok(()), "seed {seed}");
            assert!((5..=20).contains(&s.consensus.epoch_blocks), "seed {seed}");
            let n = s.validators.len();
            let mut byzantine: Vec<bool> = s
                .validators
                .iter()
                .map(|v| v.behaviour.is_byzantine())
                .collect();
            byzantine.resize(n + s.candidates.len(), false);
            for f in &s.faults {
                if let FaultKind::Behave { node, behaviour } = f.kind
                    && behaviour.is_byzantine()
                {
                    let v = s.candidate_of(node).map_or(node, |k| n + k);
                    byzantine_candidates += usize::from(v >= n);
                    byzantine[v] = true;
                }
            }
            let mut bonds: Vec<u64> = s.validators.iter().map(|v| v.stake).collect();
            bonds.resize(n + s.candidates.len(), 0);
            for m in &s.membership {
                let v = s.candidate_of(m.node).map_or(m.node, |k| n + k);
                match m.kind {
                    MembershipKind::Register | MembershipKind::Bond => bonds[v] += m.amount,
                    MembershipKind::Unbond => bonds[v] -= m.amount,
                }
                let total: u64 = bonds.iter().sum();
                let byz: u64 = (0..bonds.len())
                    .filter(|i| byzantine[*i])
                    .map(|i| bonds[i])
                    .sum();
                assert!(3 * byz < total, "seed {seed}: {byz} of {total}");
            }
            if bonds[..n].iter().all(|b| *b == 0) {
                replacements += 1;
            }
        }
        assert!((150..=250).contains(&changing), "{changing} of 600");
        assert!(replacements >= 10, "{replacements} full replacements");
        // One changing seed in three turns a candidate Byzantine (`draw_byzantine_candidate`).
        assert!(
            (40..=100).contains(&byzantine_candidates),
            "{byzantine_candidates} Byzantine candidates in {changing} changing seeds"
        );
    }

    #[test]
    fn swarm_draws_round_pushers() {
        let with_pusher = seeds_drawing(Behaviour::RoundPusher, 400);
        assert!(with_pusher >= 40, "{with_pusher} of 400 seeds");
    }

    #[test]
    fn the_round_pusher_comes_last_and_changes_no_other_draw() {
        for seed in 0..200 {
            let (before, after) = (swarm_stronger(seed), swarm(seed));
            let pushers = after.validators.iter().zip(&before.validators);
            for (a, b) in pushers {
                assert!(
                    a == b || a.behaviour == Behaviour::RoundPusher,
                    "seed {seed}"
                );
            }
            assert_eq!(before.faults, after.faults, "seed {seed}");
        }
    }

    #[test]
    fn a_quarter_of_the_swarm_gets_slow_blocks_with_a_bound_to_match_and_a_quarter_unsynced_storage()
     {
        let slow: Vec<Scenario> = (0..400)
            .map(swarm)
            .filter(|s| s.consensus.block_time_ms >= s.consensus.resend_interval_ms)
            .collect();
        assert!((70..=130).contains(&slow.len()), "{} of 400", slow.len());
        for s in &slow {
            let within = swarm_liveness_bound(&s.consensus);
            assert!(within > 60_000);
            assert_eq!(s.expect.liveness.as_ref().unwrap().within, Ms(within));
            assert_eq!(s.duration, Ms(SWARM_FAULT_WINDOW + within));
        }
        // The seed pinned by `round_pusher_swarm_seeds_recover` is drawn as when it was pinned.
        assert_eq!(swarm(2160).consensus, swarm_stronger(2160).consensus);
        assert_eq!(swarm(2160).storage, StorageModel::Synced);
        let unsynced = (0..400)
            .filter(|s| swarm(*s).storage == StorageModel::Unsynced)
            .count();
        assert!((70..=130).contains(&unsynced), "{unsynced} of 400");
    }
}
