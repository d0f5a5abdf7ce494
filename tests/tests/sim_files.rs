//! Scenario files: the documented example runs and passes; bad files get errors naming the line
//! and the field, never a panic.

use timed_sim::{Scenario, Simulation};

const EXAMPLE: &str = include_str!("../../runtime-sim/scenarios/example.toml");

#[test]
fn the_readme_example_file_parses_and_passes() {
    let s = Scenario::from_toml(EXAMPLE).unwrap();
    assert_eq!(s.validators.len(), 4);
    assert_eq!(s.faults.len(), 7);
    assert!(s.transactions.is_some());
    for seed in 1..=3 {
        let mut sim = Simulation::new(&s, seed).unwrap();
        sim.run();
        assert!(
            sim.passed(),
            "seed {seed}: {:#?} {:#?}",
            sim.checker.violations,
            sim.expectation_failures
        );
        assert!(sim.stats.evidence >= 1);
        // Transfers went through, and the conservation and validity checks saw them.
        assert!(sim.checker.txs_decided > 0, "seed {seed}");
    }
}

/// The README shows the example file whole; they must not drift apart.
#[test]
fn the_readme_shows_the_example_file_verbatim() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("```toml\n")
        .expect("the README has a toml block")
        + "```toml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    assert_eq!(&readme[start..end], EXAMPLE);
}

fn err(text: &str) -> String {
    Scenario::from_toml(text).unwrap_err().to_string()
}

#[test]
fn bad_files_are_refused_with_line_and_field() {
    let head = "name = \"x\"\nduration = \"1m\"\n[[validators]]\nstake = 100\n";
    let cases: &[(&str, &str, &str)] = &[
        (
            "[network]\nlatency = { kind = \"fixed\", ms = -1 }\n",
            "line 6",
            "latency",
        ),
        (
            "[network]\nlatency = { kind = \"warp\" }\n",
            "line 6",
            "warp",
        ),
        (
            "[network]\nlatency = { kind = \"fixed\", ms = 1 }\nloss = 2.0\n",
            "line 7",
            "network.loss",
        ),
        (
            "[[faults]]\nat = \"1s\"\nkind = \"explode\"\n",
            "line 5",
            "explode",
        ),
        (
            "[[faults]]\nat = \"1s\"\nkind = \"crash\"\n",
            "line 5",
            "node",
        ),
        (
            "[[faults]]\nat = \"soon\"\nkind = \"heal\"\n",
            "line 6",
            "soon",
        ),
        ("[[faults]]\nkind = \"heal\"\n", "line 5", "faults[0]"),
        ("[expect]\nmin_heigth = 5\n", "line 6", "min_heigth"),
        (
            "[[validators]]\nstake = 0\n",
            "line 6",
            "validators[1].stake",
        ),
    ];
    for (tail, line, field) in cases {
        let e = err(&format!("{head}{tail}"));
        assert!(e.contains(line) && e.contains(field), "{tail:?} gave: {e}");
    }
    assert!(err("").contains("missing field"));
    assert!(err("name = 1").contains("line 1"));
}

/// The membership keys of a file: a candidate, a registration and an unbond during a partition;
/// the set the run ends with is the one the file asks for.
#[test]
fn a_membership_file_parses_and_its_set_changes() {
    let text = include_str!("../../runtime-sim/scenarios/membership.toml");
    let s = Scenario::from_toml(text).unwrap();
    assert_eq!(s.candidates.len(), 1);
    assert_eq!(s.membership.len(), 2);
    assert_eq!(s.consensus.params().epoch_blocks, 5);
    let mut sim = Simulation::new(&s, 1).unwrap();
    sim.run();
    assert!(
        sim.passed(),
        "{:#?} {:#?}",
        sim.checker.violations,
        sim.expectation_failures
    );
    let top = sim.nodes[0].height();
    let ids: Vec<u16> = sim.checker.set_at(top).iter().map(|(id, _)| id.0).collect();
    assert_eq!(ids, vec![0, 1, 3, 4]);
}

/// Membership keys that cannot work are refused with their field.
#[test]
fn bad_membership_keys_name_their_field() {
    let head = "name = \"x\"\nduration = \"1m\"\n[[validators]]\nstake = 1\n";
    let cases = [
        (
            "[[membership]]\nat = 1\nkind = \"register\"\nnode = 0\namount = 5\n",
            "membership[0].kind",
        ),
        (
            "[[membership]]\nat = 1\nkind = \"bond\"\nnode = 3\namount = 5\n",
            "membership[0].node",
        ),
        (
            "[[candidates]]\nfunds = 1\n[[membership]]\nat = 1\nkind = \"bond\"\nnode = 1\namount = 0\n",
            "membership[0].amount",
        ),
        (
            "[consensus]\nepoch_blocks = 10\nunbonding_blocks = 5\n",
            "consensus.unbonding_blocks",
        ),
        (
            "[[candidates]]\nname = \"validator1\"\n",
            "candidates[0].name",
        ),
    ];
    for (tail, field) in cases {
        let e = Scenario::from_toml(&format!("{head}{tail}")).unwrap_err();
        assert!(e.0.contains(field), "{tail}: {e}");
    }
}
