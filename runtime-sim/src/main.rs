//! `timed-sim`: run a named or file scenario, a swarm of seeds, or the speed benchmark.

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use timed_sim::scenario::{NAMED, parse_duration};
use timed_sim::{Report, Scenario, Simulation};

#[derive(Parser)]
#[command(
    name = "timed-sim",
    about = "The deterministic simulator of timed",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario (a name or a TOML file).
    Run {
        /// three-nodes, byzantine-dropout, testnet, partition, crash-restart, equivocation,
        /// amnesia, membership-partition, membership-replacement, membership-crash, swarm,
        /// swarm-classic (the swarm without the stronger adversaries), swarm-stronger (the swarm
        /// without round pushers), swarm-membership (the swarm with membership changes), or a
        /// path to a .toml file.
        #[arg(long)]
        scenario: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Override the scenario's duration: 90s, 10m, 1h, or milliseconds.
        #[arg(long)]
        duration: Option<String>,
        /// Print one JSON object instead of the summary.
        #[arg(long)]
        json: bool,
        /// Run twice and compare a hash of every output of every node (the second run verifies
        /// every signature on the simulation's thread: where a verdict is computed changes
        /// nothing).
        #[arg(long)]
        check_determinism: bool,
        /// Verify every signature on the simulation's thread, instead of the votes on the wire
        /// on a second core.
        #[arg(long)]
        one_thread: bool,
    },
    /// Run many swarm seeds; stop at the first failure and print its replay command.
    Swarm {
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        #[arg(long, default_value_t = 0)]
        start: u64,
        #[arg(long)]
        json: bool,
        /// Do not stop at a failure: print one line per failing seed (its first violation or
        /// failed expectation and its replay command) and go on.
        #[arg(long)]
        keep_going: bool,
        /// Draw membership changes (`swarm-membership`: a third of the seeds change their
        /// validator set) whether or not `swarm` draws them yet.
        #[arg(long)]
        membership: bool,
    },
    /// Measure speed: the testnet scenario (or `--scenario`), its ratio to the crypto floor, and
    /// heights per second with block time 0.
    Bench {
        /// Repetitions of the scenario (seeds 1, 2, ...).
        #[arg(long, default_value_t = 3)]
        runs: u32,
        /// Time this scenario (a name or a TOML file) instead of the testnet hour, and skip the
        /// block-time-0 run.
        #[arg(long)]
        scenario: Option<String>,
        #[arg(long)]
        json: bool,
        /// Verify every signature on the simulation's thread, instead of the votes on the wire
        /// on a second core: the speed of one core.
        #[arg(long)]
        one_thread: bool,
    },
}

fn load(scenario: &str, seed: u64) -> Result<Scenario, String> {
    if let Some(s) = Scenario::named(scenario, seed) {
        return Ok(s);
    }
    if scenario.ends_with(".toml") || std::path::Path::new(scenario).exists() {
        let text = std::fs::read_to_string(scenario)
            .map_err(|e| format!("cannot read {scenario}: {e}"))?;
        return Scenario::from_toml(&text).map_err(|e| format!("{scenario}: {e}"));
    }
    Err(format!(
        "unknown scenario {scenario:?}: use one of {} or a .toml file",
        NAMED.join(", ")
    ))
}

fn replay(scenario: &str, seed: u64, duration: Option<&str>) -> String {
    let mut c = format!("timed-sim run --scenario {scenario} --seed {seed}");
    if let Some(d) = duration {
        c.push_str(&format!(" --duration {d}"));
    }
    c
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_target(false)
        .without_time()
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Run {
            scenario,
            seed,
            duration,
            json,
            check_determinism,
            one_thread,
        } => run(
            &scenario,
            seed,
            duration.as_deref(),
            json,
            check_determinism,
            one_thread,
        ),
        Command::Swarm {
            seeds,
            start,
            json,
            keep_going,
            membership,
        } => swarm(seeds, start, json, keep_going, membership),
        Command::Bench {
            runs,
            scenario,
            json,
            one_thread,
        } => bench(runs, scenario.as_deref(), json, one_thread),
    }
}

/// `det`: run twice and compare transcripts (the second time on one thread); `one_thread`:
/// verify on one thread.
fn run(
    name: &str,
    seed: u64,
    duration: Option<&str>,
    json: bool,
    det: bool,
    one_thread: bool,
) -> ExitCode {
    let mut scenario = match load(name, seed) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(d) = duration {
        match parse_duration(d) {
            Ok(ms) => scenario.duration.0 = ms,
            Err(e) => {
                eprintln!("error: --duration: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let cmd = replay(name, seed, duration);
    let report = match timed_sim::run(&scenario, seed, cmd.clone(), det, one_thread) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut ok = report.passed;
    let mut det_note = None;
    if det {
        let again = timed_sim::run(&scenario, seed, cmd, true, true).expect("ran once already");
        let same = again.transcript == report.transcript;
        det_note = Some(same);
        ok &= same;
    }
    if json {
        let mut v = serde_json::to_value(&report).unwrap_or_default();
        if let (Some(same), Some(obj)) = (det_note, v.as_object_mut()) {
            obj.insert("deterministic".into(), same.into());
        }
        println!("{v}");
    } else {
        print!("{}", report.text());
        if let Some(same) = det_note {
            println!(
                "{:<22}{}",
                "determinism",
                if same {
                    "identical transcripts in two runs"
                } else {
                    "TRANSCRIPTS DIFFER"
                }
            );
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn swarm(seeds: u64, start: u64, json: bool, keep_going: bool, membership: bool) -> ExitCode {
    let t0 = Instant::now();
    let mut sim_ms: u64 = 0;
    let mut heights: u64 = 0;
    let mut failed: u64 = 0;
    for seed in start..start.saturating_add(seeds) {
        let (name, scenario) = if membership {
            (
                "swarm-membership",
                timed_sim::scenario::swarm_membership(seed),
            )
        } else {
            ("swarm", timed_sim::scenario::swarm(seed))
        };
        let report = match timed_sim::run(&scenario, seed, replay(name, seed, None), false, false) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("seed {seed}: error: {e}");
                return ExitCode::FAILURE;
            }
        };
        sim_ms += report.sim_ms;
        heights += report.min_height;
        if !report.passed && keep_going {
            failed += 1;
            let what = report
                .violation_details
                .first()
                .map(|v| format!("{}: {}", v.rule, v.detail))
                .or_else(|| report.failed_expectations.first().cloned())
                .unwrap_or_default();
            println!(
                "seed {seed} FAILED [{}] {what}; replay with: {}",
                report.behaviours.join(", "),
                report.replay
            );
            continue;
        }
        if !report.passed {
            if json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                print!("{}", report.text());
                println!(
                    "swarm stopped at seed {seed}; replay with: {}",
                    report.replay
                );
            }
            return ExitCode::FAILURE;
        }
        if !json && (seed - start + 1).is_multiple_of(50) {
            eprintln!("{} seeds passed", seed - start + 1);
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    if failed > 0 {
        println!("swarm: {failed} of {seeds} seeds from {start} failed ({wall:.1} s wall)");
        return ExitCode::FAILURE;
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"seeds": seeds, "start": start, "passed": true,
                "sim_ms": sim_ms, "wall_ms": wall * 1000.0, "heights": heights})
        );
    } else {
        println!(
            "swarm: {seeds} seeds from {start} passed ({:.0} s simulated in {wall:.1} s wall, {heights} heights)",
            sim_ms as f64 / 1000.0
        );
    }
    ExitCode::SUCCESS
}

fn bench(runs: u32, scenario: Option<&str>, json: bool, one_thread: bool) -> ExitCode {
    let timed = match scenario.map(|s| load(s, 1)) {
        None => Scenario::named("testnet", 1).expect("named"),
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut walls = vec![];
    let mut report: Option<Report> = None;
    for seed in 1..=u64::from(runs.max(1)) {
        let r = match timed_sim::run(&timed, seed, String::new(), false, one_thread) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        walls.push(r.wall_ms);
        report = Some(r);
    }
    walls.sort_by(f64::total_cmp);
    let median = walls[walls.len() / 2];
    let r = report.expect("at least one run");
    let speedup = r.sim_ms as f64 / median;
    // The crypto floor of that workload, timed now: one signature per signed message and one
    // verification per distinct message (the checker's verdicts, which every node shares), one
    // by one or in the simulator's batches. Timed as the run is: the median of several (one
    // timing swings by ±10 % on a busy machine).
    let messages = r.signed_messages;
    let floor = |batch: usize| {
        let mut floors: Vec<f64> = (0..walls.len())
            .map(|_| crypto_floor_ms(messages, batch))
            .collect();
        floors.sort_by(f64::total_cmp);
        floors[floors.len() / 2]
    };
    let (single_ms, batched_ms) = (floor(1), floor(timed_sim::checker::BATCH));
    let (single_ratio, batched_ratio) = (median / single_ms, median / batched_ms);
    let name = &timed.name;
    let verdict = if scenario.is_none() {
        " (goal 10000x)"
    } else {
        ""
    };
    let threads = if one_thread || !timed_sim::checker::second_thread_for(timed.validators.len()) {
        "one thread"
    } else {
        "votes verified on a second thread"
    };
    if json {
        let mut v = serde_json::json!({"scenario": name, "wall_ms": median, "runs": walls.len(),
            "sim_ms": r.sim_ms, "speedup": speedup, "heights": r.min_height,
            "signed_messages": messages, "crypto_floor_ms": single_ms,
            "floor_ratio": single_ratio, "batched_floor_ms": batched_ms,
            "batched_floor_ratio": batched_ratio, "threads": threads});
        if scenario.is_none() {
            let (heights, wall, hps) = block_time_0();
            if let Some(o) = v.as_object_mut() {
                o.insert("block_time_0_heights".into(), heights.into());
                o.insert("block_time_0_wall_ms".into(), (wall * 1000.0).into());
                o.insert("heights_per_second".into(), hps.into());
            }
        }
        println!("{v}");
        return ExitCode::SUCCESS;
    }
    println!(
        "{name}: {:.0} simulated s, {} heights, median {median:.0} ms wall over {} runs ({threads}): {speedup:.0}x real time{verdict}",
        r.sim_ms as f64 / 1000.0,
        r.min_height,
        walls.len(),
    );
    println!(
        "crypto floor: {messages} distinct signed messages, one signature and one verification each, timed now (median of {}): {single_ms:.0} ms verified one by one ({single_ratio:.2}x; goal <= 1.3x), {batched_ms:.0} ms in batches of {} ({batched_ratio:.2}x)",
        walls.len(),
        timed_sim::checker::BATCH,
    );
    if scenario.is_none() {
        let (heights, wall, hps) = block_time_0();
        println!(
            "block time 0: 4 validators, 10 ms links: {heights} heights in {wall:.2} s wall = {hps:.0} heights/s"
        );
    }
    ExitCode::SUCCESS
}

/// Block time 0: as fast as the network allows, 4 validators, 10 ms links, one simulated
/// minute. Heights, wall seconds, heights per second.
fn block_time_0() -> (u64, f64, f64) {
    let mut fast = Scenario::named("three-nodes", 1).expect("named");
    fast.name = "block-time-0".into();
    fast.validators = vec![fast.validators[0].clone(); 4];
    fast.consensus.block_time_ms = 0;
    fast.duration.0 = 60_000;
    fast.expect = Default::default();
    let mut sim = Simulation::new(&fast, 1).expect("valid");
    let t = Instant::now();
    sim.run();
    let wall = t.elapsed().as_secs_f64();
    let heights = sim.nodes.iter().map(|n| n.height().0).min().unwrap_or(0);
    (heights, wall, heights as f64 / wall)
}

/// Milliseconds to sign `n` votes and verify each once under the one rule, alone (`batch` 1)
/// or in batches of `batch` (`message::verify_votes`), on this machine now: the least any run
/// whose workload is `n` distinct signed messages can take.
fn crypto_floor_ms(n: usize, batch: usize) -> f64 {
    use timed_core::crypto::Keypair;
    use timed_core::message::{Vote, VoteKind, verify_votes};
    use timed_core::types::{Height, Round, ValidatorIndex};
    use timed_core::validators::insecure_dev_validators;
    let (keys, members) = insecure_dev_validators(&[100; 5]);
    let set = timed_core::validators::ValidatorSet::new(&members).expect("a valid set");
    let chain = timed_sim::sim::CHAIN_ID;
    let start = Instant::now();
    let votes: Vec<Vote> = (0..n)
        .map(|i| {
            let v = i % keys.len();
            let key: &Keypair = &keys[v];
            Vote::sign(
                key,
                chain,
                Height(i as u64 / 10 + 1),
                Round(0),
                if i % 2 == 0 {
                    VoteKind::Prepare
                } else {
                    VoteKind::Precommit
                },
                None,
                ValidatorIndex(v as u16),
            )
        })
        .collect();
    let good = if batch <= 1 {
        votes
            .iter()
            .filter(|v| v.verify(&set, chain).is_ok())
            .count()
    } else {
        votes
            .chunks(batch)
            .map(|c| {
                verify_votes(c, &set, chain)
                    .into_iter()
                    .filter(|ok| *ok)
                    .count()
            })
            .sum()
    };
    assert_eq!(good, n, "every vote signed here verifies");
    start.elapsed().as_secs_f64() * 1000.0
}
