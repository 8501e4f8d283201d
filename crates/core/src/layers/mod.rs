//! Layers: providers that wrap a provider, adding one concern each.
//!
//! [`standard`] stacks them in the order every caller wants: tracing and events outside,
//! retries next, then the capability check, so an option the provider cannot honour is
//! rejected before anything is attempted (and never retried), and ownership innermost,
//! so the check sees the caller's spec and the provider sees the tagged one.
//!
//! Every layer implements [`SandboxProvider`] through [`layer_impl!`](crate::layer_impl),
//! which forwards what a layer does not handle and fails clippy when a method is neither
//! handled nor forwarded.

mod capability_override;
mod checked;
mod forward;
mod owned;
mod retrying;
mod traced;

use std::sync::Arc;

pub use capability_override::CapabilityOverride;
pub use checked::{Checked, Checking};
pub use owned::Owned;
pub use retrying::{RetryPolicy, Retrying};
pub use traced::{Traced, Tracing};

use crate::ownership::Ownership;
use crate::provider::SandboxProvider;
use crate::usage::LifecycleEvent;

/// Wraps a provider in one concern. Implemented by each layer's settings: [`Checking`],
/// [`Ownership`], [`RetryPolicy`] and [`Tracing`].
pub trait Layer {
    /// `inner`, wrapped.
    fn layer(&self, inner: Arc<dyn SandboxProvider>) -> Arc<dyn SandboxProvider>;
}

/// Options for [`standard`].
#[derive(Debug, Clone, Default)]
pub struct LayerOptions {
    /// Ownership tags to put on every sandbox.
    pub ownership: Ownership,
    /// Retry policy for retryable errors.
    pub retry: RetryPolicy,
    /// Where to send lifecycle events, if anywhere.
    pub events: Option<tokio::sync::broadcast::Sender<LifecycleEvent>>,
}

/// Wraps `provider` in the standard layers: [`Traced`] ∘ [`Retrying`] ∘ [`Checked`] ∘
/// [`Owned`].
pub fn standard(
    provider: Arc<dyn SandboxProvider>,
    options: LayerOptions,
) -> Arc<dyn SandboxProvider> {
    let owned = options.ownership.layer(provider);
    let checked = Checking.layer(owned);
    let retrying = options.retry.layer(checked);
    Tracing {
        events: options.events,
    }
    .layer(retrying)
}

/// The provider under every layer that reports itself through
/// [`SandboxProvider::wrapped`]; `provider` itself when it is not a layer. Wrap the result,
/// not the argument, to be sure a stack is not layered twice (twice-applied ownership tags
/// would be rejected as reserved).
pub fn bare(provider: &Arc<dyn SandboxProvider>) -> Arc<dyn SandboxProvider> {
    let mut current = provider;
    while let Some(inner) = current.wrapped() {
        current = inner;
    }
    Arc::clone(current)
}

#[cfg(test)]
mod tests;
