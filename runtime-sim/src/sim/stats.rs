//! The counters a run reports.

/// Counters the summary reports.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub steps: u64,
    pub messages: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub garbage_sent: u64,
    pub garbage_decoded: u64,
    pub evidence: u64,
    pub crashes: u64,
    /// Transfers the workload submitted (valid or not).
    pub txs_submitted: u64,
    /// Prepares an amnesia validator sent for the round's proposal where its core, locked on
    /// another block, prepared nil: locks it forgot.
    pub locks_forgotten: u64,
    /// Messages the stronger adversaries forged or replayed (bodies swapped, polkas stripped,
    /// far claims, sync lies, replays, torsion signatures).
    pub forged: u64,
    /// Restarts that lost durable records.
    pub storage_losses: u64,
    /// Finalized blocks a crash took before they were synced (`StorageModel::Unsynced`).
    pub unsynced_blocks_lost: u64,
    /// Votes of round pushers delivered to honest nodes at their height for a round more than
    /// one past theirs: where an uncapped round end would take them.
    pub pushed_votes_delivered: u64,
    /// Rounds of honest nodes that ended (`Timer::RoundEnd`) more than one round on.
    pub round_jumps: u64,
    /// The highest round an honest node entered.
    pub max_round: u32,
    /// Finality latency of each (honest node, height): time of finalizing minus block timestamp.
    pub finality_ms: Vec<u64>,
}
