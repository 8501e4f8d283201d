#![doc = include_str!("../README.md")]

mod cost;
mod plan;
mod pool;
mod router;
mod warm;

pub use cost::{CostReport, ProviderCost};
pub use plan::{Decision, PoolFailure};
pub use pool::{Admission, Pool, PoolConfig, PoolsFile};
pub use router::{Lease, Router};
pub use warm::{WarmPool, WarmStats};
