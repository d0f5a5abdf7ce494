//! Reading a scenario file: durations written as "90s" or "2h30m", faults written with flat keys,
//! the checks serde cannot make (indices in range, probabilities, stakes), and errors that name
//! the line and the field.

use serde::Deserialize;

use super::*;

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum DurationRepr {
    Int(u64),
    Text(String),
}

impl TryFrom<DurationRepr> for Ms {
    type Error = String;
    fn try_from(r: DurationRepr) -> Result<Ms, String> {
        match r {
            DurationRepr::Int(ms) => Ok(Ms(ms)),
            DurationRepr::Text(s) => parse_duration(&s).map(Ms),
        }
    }
}

/// Parses "250ms", "90s", "1.5s", "10m", "1h", "2h30m" or a bare number of milliseconds
/// (`timed_core::units::parse_duration_ms`, the grammar of the node's flags).
pub fn parse_duration(s: &str) -> Result<u64, String> {
    timed_core::units::parse_duration_ms(s, 1).map_err(|e| e.to_string())
}

/// A fault as written in a file: flat keys, checked into a `Fault`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FaultRepr {
    #[serde(default)]
    at: Option<Ms>,
    #[serde(default)]
    at_height: Option<u64>,
    kind: String,
    #[serde(default)]
    node: Option<usize>,
    #[serde(default)]
    groups: Option<Vec<Vec<usize>>>,
    #[serde(default)]
    behaviour: Option<Behaviour>,
    #[serde(default)]
    on: Option<bool>,
    #[serde(default)]
    loss: Option<StorageLoss>,
}

impl TryFrom<FaultRepr> for Fault {
    type Error = String;
    fn try_from(r: FaultRepr) -> Result<Fault, String> {
        let node = || {
            r.node
                .ok_or_else(|| format!("missing field `node` for a fault of kind `{}`", r.kind))
        };
        let kind = match r.kind.as_str() {
            "partition" => FaultKind::Partition {
                groups: r
                    .groups
                    .clone()
                    .ok_or("missing field `groups` for a partition")?,
            },
            "heal" => FaultKind::Heal,
            "crash" => FaultKind::Crash { node: node()? },
            "crash-at-persist" => FaultKind::CrashAtPersist { node: node()? },
            "restart" => FaultKind::Restart { node: node()? },
            "restart-lost" => FaultKind::RestartLost {
                node: node()?,
                loss: r
                    .loss
                    .ok_or("missing field `loss` for a fault of kind `restart-lost`")?,
            },
            "behave" => FaultKind::Behave {
                node: node()?,
                behaviour: r
                    .behaviour
                    .ok_or("missing field `behaviour` for a fault of kind `behave`")?,
            },
            "reliable" => FaultKind::Reliable {
                on: r.on.unwrap_or(true),
            },
            "isolate-finalizer" => FaultKind::IsolateFinalizer,
            other => {
                return Err(format!(
                    "unknown fault kind `{other}`: expected partition, heal, crash, \
                     crash-at-persist, restart, restart-lost, behave, reliable or \
                     isolate-finalizer"
                ));
            }
        };
        Ok(Fault {
            at: r.at,
            at_height: r.at_height,
            kind,
        })
    }
}

impl Scenario {
    /// Parses a TOML scenario; errors name the line, the column and the field.
    pub fn from_toml(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError(e.to_string()))?;
        s.validate().map_err(|(field, msg)| {
            let line = field_line(text, &field);
            ScenarioError(match line {
                Some(l) => format!("scenario error at line {l}, field `{field}`: {msg}"),
                None => format!("scenario error in field `{field}`: {msg}"),
            })
        })?;
        Ok(s)
    }

    /// Checks what serde cannot: indices in range, probabilities, stakes. Returns the field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let n = self.validators.len();
        if n == 0 {
            return Err((
                "validators".into(),
                "at least one validator is needed".into(),
            ));
        }
        if n > 100 {
            return Err(("validators".into(), "at most 100 validators".into()));
        }
        for (i, v) in self.validators.iter().enumerate() {
            if v.stake == 0 {
                return Err((
                    format!("validators[{i}].stake"),
                    "stake must be positive".into(),
                ));
            }
        }
        if self.consensus.propose_timeout_ms == 0 {
            return Err((
                "consensus.propose_timeout_ms".into(),
                "must be at least 1".into(),
            ));
        }
        let prob = |field: String, p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err((field, format!("{p} is not a probability in [0, 1]")))
            }
        };
        prob("network.loss".into(), self.network.loss)?;
        prob("network.duplicate".into(), self.network.duplicate)?;
        self.network
            .latency
            .validate()
            .map_err(|m| ("network.latency".to_string(), m))?;
        for (i, l) in self.network.links.iter().enumerate() {
            if l.from >= n || l.to >= n {
                return Err((
                    format!("network.links[{i}]"),
                    format!("node index out of range (there are {n} validators)"),
                ));
            }
            prob(format!("network.links[{i}].loss"), l.loss)?;
            prob(format!("network.links[{i}].duplicate"), l.duplicate)?;
            l.latency
                .validate()
                .map_err(|m| (format!("network.links[{i}].latency"), m))?;
        }
        if let Some(w) = &self.transactions {
            if w.interval.0 == 0 {
                return Err((
                    "transactions.interval".into(),
                    "must be at least 1 ms".into(),
                ));
            }
            if w.clients > 1_000 {
                return Err(("transactions.clients".into(), "at most 1000".into()));
            }
        }
        self.validate_membership()?;
        for (i, f) in self.faults.iter().enumerate() {
            match (f.at, f.at_height) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return Err((
                        format!("faults[{i}]"),
                        "give exactly one of `at` and `at_height`".into(),
                    ));
                }
            }
            if f.kind == FaultKind::IsolateFinalizer && f.at_height.is_none() {
                return Err((
                    format!("faults[{i}]"),
                    "`isolate-finalizer` needs `at_height`".into(),
                ));
            }
            let node = match &f.kind {
                FaultKind::Crash { node }
                | FaultKind::CrashAtPersist { node }
                | FaultKind::Restart { node }
                | FaultKind::RestartLost { node, .. }
                | FaultKind::Behave { node, .. } => Some(*node),
                FaultKind::Partition { groups } => groups
                    .iter()
                    .flatten()
                    .copied()
                    .find(|m| *m >= self.instances()),
                FaultKind::Heal | FaultKind::Reliable { .. } | FaultKind::IsolateFinalizer => None,
            };
            let nodes = self.instances();
            if let Some(node) = node.filter(|x| *x >= nodes) {
                return Err((
                    format!("faults[{i}].node"),
                    format!(
                        "node {node} does not exist (there are {nodes} nodes, from 0: {n} \
                         validators, their twins and the candidates)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Scenario {
    /// The staking keys: candidates' names free, events on a genesis validator or a candidate
    /// (a twin shares its validator's key), nonzero amounts, and the genesis's staking rules.
    fn validate_membership(&self) -> Result<(), (String, String)> {
        let n = self.validators.len();
        let c = &self.consensus;
        if c.epoch_blocks == 0 {
            return Err(("consensus.epoch_blocks".into(), "must be at least 1".into()));
        }
        if c.unbonding_blocks < 2 * c.epoch_blocks {
            return Err((
                "consensus.unbonding_blocks".into(),
                format!(
                    "{} is less than twice epoch_blocks ({}): stake must stay slashable while \
                     it still signs",
                    c.unbonding_blocks, c.epoch_blocks
                ),
            ));
        }
        if (c.max_validators as usize) < n {
            return Err((
                "consensus.max_validators".into(),
                format!(
                    "{} is fewer than the {n} genesis validators",
                    c.max_validators
                ),
            ));
        }
        if self.candidates.len() > 100 {
            return Err(("candidates".into(), "at most 100 candidates".into()));
        }
        let mut names: Vec<String> = (0..n)
            .map(|i| {
                self.validators[i]
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("validator{}", i + 1))
            })
            .collect();
        for k in 0..self.candidates.len() {
            let name = self.candidate_name(k);
            if name.is_empty() || names.contains(&name) {
                return Err((
                    format!("candidates[{k}].name"),
                    format!("the name {name:?} is empty or taken by another node"),
                ));
            }
            names.push(name);
        }
        for (i, m) in self.membership.iter().enumerate() {
            let is_candidate = self.candidate_of(m.node).is_some();
            if m.node >= n && !is_candidate {
                return Err((
                    format!("membership[{i}].node"),
                    format!(
                        "node {} is neither a genesis validator (0 to {}) nor a candidate ({} to {})",
                        m.node,
                        n.saturating_sub(1),
                        self.candidate_node(0),
                        self.instances().saturating_sub(1)
                    ),
                ));
            }
            if m.amount == 0 {
                return Err((format!("membership[{i}].amount"), "must be positive".into()));
            }
            if m.kind == MembershipKind::Register && !is_candidate {
                return Err((
                    format!("membership[{i}].kind"),
                    format!("node {} is a genesis validator: registered already", m.node),
                ));
            }
        }
        Ok(())
    }

    /// The validator name of the `k`-th candidate.
    pub fn candidate_name(&self, k: usize) -> String {
        self.candidates[k]
            .name
            .clone()
            .unwrap_or_else(|| format!("candidate{}", k + 1))
    }
}

/// Finds the line of the table or key a field path points to (best effort: the n-th `[[array]]`
/// header for `array[n]`, then the key after it).
fn field_line(text: &str, field: &str) -> Option<usize> {
    let mut parts = field.split('.');
    let first = parts.next()?;
    let (table, index) = match first.split_once('[') {
        Some((t, rest)) => (t, rest.trim_end_matches(']').parse::<usize>().ok()),
        None => (first, None),
    };
    let key = parts.next_back();
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0;
    if let Some(idx) = index {
        let header = format!("[[{table}]]");
        let mut count = 0;
        let mut found = None;
        for (i, l) in lines.iter().enumerate() {
            if l.trim() == header {
                if count == idx {
                    found = Some(i);
                    break;
                }
                count += 1;
            }
        }
        start = found?;
        if key.is_none() {
            return Some(start + 1);
        }
    } else if key.is_some() {
        let header = format!("[{table}]");
        if let Some(i) = lines.iter().position(|l| l.trim() == header) {
            start = i;
        }
    }
    let key = key.unwrap_or(table);
    for (i, l) in lines.iter().enumerate().skip(start) {
        let t = l.trim_start();
        if t.starts_with(key) && t[key.len()..].trim_start().starts_with('=') {
            return Some(i + 1);
        }
    }
    Some(start + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("1h"), Ok(3_600_000));
        assert_eq!(parse_duration("90s"), Ok(90_000));
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert_eq!(parse_duration("2m30s"), Ok(150_000));
        assert_eq!(parse_duration("42"), Ok(42));
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn isolate_finalizer_needs_a_height() {
        let head = "name = \"x\"\nduration = \"1m\"\n[[validators]]\nstake = 1\n";
        let ok = Scenario::from_toml(&format!(
            "{head}[[faults]]\nat_height = 3\nkind = \"isolate-finalizer\"\n"
        ))
        .unwrap();
        assert_eq!(ok.faults[0].kind, FaultKind::IsolateFinalizer);
        let e = Scenario::from_toml(&format!(
            "{head}[[faults]]\nat = \"1s\"\nkind = \"isolate-finalizer\"\n"
        ))
        .unwrap_err();
        assert!(e.0.contains("at_height"), "{e}");
        let amnesia: Scenario = Scenario::from_toml(&format!(
            "{head}[[validators]]\nstake = 1\nbehaviour = \"amnesia\"\n"
        ))
        .unwrap();
        assert_eq!(amnesia.validators[1].behaviour, Behaviour::Amnesia);
    }

    #[test]
    fn bad_files_name_line_and_field() {
        let e =
            Scenario::from_toml("name = \"x\"\nduration = \"1m\"\n[[validators]]\nstake = \"a\"\n")
                .unwrap_err();
        assert!(e.0.contains("line 4"), "{e}");
        assert!(e.0.contains("stake"), "{e}");
        let e = Scenario::from_toml(
            "name = \"x\"\nduration = \"1m\"\n[[validators]]\nstake = 1\n[[faults]]\nat = \"1s\"\nkind = \"crash\"\nnode = 5\n",
        )
        .unwrap_err();
        assert!(
            e.0.contains("line 8") && e.0.contains("faults[0].node"),
            "{e}"
        );
        let e =
            Scenario::from_toml("name = \"x\"\nduration = \"1m\"\nvalidators = []\ncolour = 1\n")
                .unwrap_err();
        assert!(e.0.contains("colour"), "{e}");
    }
}
