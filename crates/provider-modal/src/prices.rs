//! What Modal charges, as sandkit's cost estimates use it.

use std::collections::BTreeMap;

use sandkit_core::{GpuKind, PriceSheet};

/// Modal's public prices (USD). Only GPU prices with a source are listed.
pub fn price_sheet() -> PriceSheet {
    PriceSheet {
        currency: "USD".to_owned(),
        cpu_core_second: 0.000_039_4,
        memory_gib_second: 0.000_006_72,
        gpu_second: BTreeMap::from([(GpuKind::A100_40GB, 0.001_036)]),
        region_multipliers: BTreeMap::from([("us".to_owned(), 1.25), ("eu".to_owned(), 1.25)]),
        source: "modal.com/pricing, as quoted in sandkit issue 4 (2026-11)".to_owned(),
    }
}
