//! The virtual network: per-link latency (fixed, uniform, or normal with a floor) plus jitter,
//! loss, duplication, and partitions. Reordering is what jitter does to messages sent close
//! together. Every draw comes from the simulation's one seeded RNG, in a fixed order.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How long a message takes on a link, before jitter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Latency {
    Fixed {
        ms: u64,
    },
    Uniform {
        min_ms: u64,
        max_ms: u64,
    },
    Normal {
        mean_ms: f64,
        std_ms: f64,
        floor_ms: u64,
    },
}

impl Latency {
    /// The mean delay, used to express finality in message delays.
    pub fn mean_ms(&self) -> f64 {
        match *self {
            Latency::Fixed { ms } => ms as f64,
            Latency::Uniform { min_ms, max_ms } => (min_ms + max_ms) as f64 / 2.0,
            Latency::Normal {
                mean_ms, floor_ms, ..
            } => mean_ms.max(floor_ms as f64),
        }
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> u64 {
        match *self {
            Latency::Fixed { ms } => ms,
            Latency::Uniform { min_ms, max_ms } => {
                if max_ms <= min_ms {
                    min_ms
                } else {
                    rng.random_range(min_ms..=max_ms)
                }
            }
            Latency::Normal {
                mean_ms,
                std_ms,
                floor_ms,
            } => {
                // Box–Muller: two uniforms give one standard normal draw.
                let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                let u2: f64 = rng.random::<f64>();
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                let x = mean_ms + std_ms * z;
                (x.max(floor_ms as f64).round() as u64).max(floor_ms)
            }
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        match *self {
            Latency::Uniform { min_ms, max_ms } if min_ms > max_ms => {
                Err(format!("min_ms {min_ms} is above max_ms {max_ms}"))
            }
            Latency::Normal {
                mean_ms, std_ms, ..
            } if !(mean_ms.is_finite()
                && std_ms.is_finite()
                && mean_ms >= 0.0
                && std_ms >= 0.0) =>
            {
                Err("mean_ms and std_ms must be finite and not negative".into())
            }
            _ => Ok(()),
        }
    }
}

/// The behaviour of one directed link.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkModel {
    pub latency: Latency,
    /// Added uniformly in `[0, jitter_ms]`; messages overtake each other through it.
    pub jitter_ms: u64,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice (the copy with its own delay).
    pub duplicate: f64,
}

impl Default for LinkModel {
    fn default() -> Self {
        LinkModel {
            latency: Latency::Fixed { ms: 10 },
            jitter_ms: 0,
            loss: 0.0,
            duplicate: 0.0,
        }
    }
}

/// The fate of one message on one link.
pub enum Fate {
    Lost,
    /// Delivered after each of these delays (two when duplicated).
    Delivered(u64, Option<u64>),
}

/// The whole network: a model per directed link and the current partition.
#[derive(Clone, Debug)]
pub struct Network {
    n: usize,
    links: Vec<LinkModel>,
    /// Group of each node; messages cross groups only when there is no partition.
    group: Vec<u32>,
    /// Multiplier on every link's loss, duplication is untouched (set to 0 to heal the network).
    pub loss_enabled: bool,
}

impl Network {
    pub fn new(n: usize, default: &LinkModel) -> Network {
        Network {
            n,
            links: vec![default.clone(); n * n],
            group: vec![0; n],
            loss_enabled: true,
        }
    }

    pub fn set_link(&mut self, from: usize, to: usize, model: LinkModel) {
        self.links[from * self.n + to] = model;
    }

    pub fn link(&self, from: usize, to: usize) -> &LinkModel {
        &self.links[from * self.n + to]
    }

    /// The mean one-way delay over all links (for "message delays").
    pub fn mean_delay_ms(&self) -> f64 {
        if self.n < 2 {
            return self.links[0].latency.mean_ms() + self.links[0].jitter_ms as f64 / 2.0;
        }
        let mut sum = 0.0;
        for a in 0..self.n {
            for b in 0..self.n {
                if a != b {
                    let l = self.link(a, b);
                    sum += l.latency.mean_ms() + l.jitter_ms as f64 / 2.0;
                }
            }
        }
        sum / (self.n * (self.n - 1)) as f64
    }

    /// Splits the nodes into groups; nodes not listed form one more group together.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        let rest = groups.len() as u32;
        self.group = vec![rest; self.n];
        for (g, members) in groups.iter().enumerate() {
            for &m in members {
                if m < self.n {
                    self.group[m] = g as u32;
                }
            }
        }
    }

    pub fn heal(&mut self) {
        self.group = vec![0; self.n];
    }

    pub fn is_partitioned(&self) -> bool {
        self.group.iter().any(|g| *g != self.group[0])
    }

    pub fn connected(&self, a: usize, b: usize) -> bool {
        self.group[a] == self.group[b]
    }

    /// Draws the fate of one message. The number of draws does not depend on the outcome of
    /// earlier ones except through the duplicate branch, which is itself drawn.
    pub fn fate(&self, from: usize, to: usize, rng: &mut ChaCha8Rng) -> Fate {
        let link = self.link(from, to);
        if self.loss_enabled && link.loss > 0.0 && rng.random_bool(link.loss.clamp(0.0, 1.0)) {
            return Fate::Lost;
        }
        let delay = |rng: &mut ChaCha8Rng| {
            let base = link.latency.sample(rng);
            let jitter = if link.jitter_ms > 0 {
                rng.random_range(0..=link.jitter_ms)
            } else {
                0
            };
            (base + jitter).max(1)
        };
        let first = delay(rng);
        let dup = self.loss_enabled
            && link.duplicate > 0.0
            && rng.random_bool(link.duplicate.clamp(0.0, 1.0));
        let second = dup.then(|| delay(rng));
        Fate::Delivered(first, second)
    }
}
