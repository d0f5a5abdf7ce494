//! What runs a validator: start-up (`app`), the consensus loop and its commit path (`driver`),
//! the clock handed to the core (`clock`),
//! the state the node's tasks share (`ctx`), finality measured live (`finality`), transfer
//! signatures checked in batches (`txverify`), the node's counters (`metrics`, with the process's own in `procmetrics`) and its logs
//! (`logs`).

pub mod app;
pub(crate) mod clock;
pub(crate) mod ctx;
pub(crate) mod driver;
pub(crate) mod finality;
pub mod logs;
pub(crate) mod metrics;
pub(crate) mod procmetrics;
pub mod statesync;
pub(crate) mod synccheck;
pub(crate) mod txverify;
