#![doc = include_str!("../README.md")]

mod cost;
mod pool;
mod router;
mod warm;

pub use cost::{CostReport, ProviderCost};
pub use pool::{Admission, Pool, PoolConfig, PoolsFile};
pub use router::{Decision, Lease, PoolFailure, Router};
pub use warm::{WarmPool, WarmStats};
