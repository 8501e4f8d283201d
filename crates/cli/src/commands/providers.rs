//! `sandkit providers`: what is registered, and what each provider can do.

use clap::Args;
use sandkit::{Capabilities, PauseSupport};
use serde::Serialize;

use super::{Context, JsonFlag};
use crate::error::CliError;
use crate::output::{Table, label, print_json, yes_no};

/// Flags of `sandkit providers`.
#[derive(Debug, Args)]
pub struct ProvidersArgs {
    #[command(flatten)]
    pub output: JsonFlag,
}

/// One provider in `--json` output: the full static capabilities.
#[derive(Serialize)]
struct ProviderEntry {
    name: &'static str,
    summary: &'static str,
    capabilities: Capabilities,
}

/// Prints the registered providers. Capabilities are the static ones (default
/// configuration), so nothing is built and no credentials are needed.
pub fn run(context: &Context, _args: ProvidersArgs) -> Result<i32, CliError> {
    let entries: Vec<ProviderEntry> = sandkit::providers()?
        .into_iter()
        .map(|registration| ProviderEntry {
            name: registration.name,
            summary: registration.summary,
            capabilities: registration.capabilities(),
        })
        .collect();
    if context.json {
        print_json(&entries)?;
        return Ok(0);
    }
    let mut table = Table::new(&[
        "NAME",
        "TRANSPORT",
        "ISOLATION",
        "SNAPSHOT",
        "PAUSE",
        "GPU",
        "NET-BLOCK",
        "EXEC-TIMEOUT",
        "IDLE-COST",
        "BILLING",
        "SUMMARY",
    ]);
    for entry in &entries {
        let caps = &entry.capabilities;
        table.row(vec![
            entry.name.to_owned(),
            label(&caps.transport),
            label(&caps.isolation),
            yes_no(caps.fs_snapshot).to_owned(),
            pause(caps),
            gpus(caps),
            yes_no(caps.network_block_all).to_owned(),
            label(&caps.exec_timeout),
            label(&caps.idle_cost),
            label(&caps.billing),
            entry.summary.to_owned(),
        ]);
    }
    table.print();
    if entries.is_empty() {
        crate::output::warn("no providers are linked into this build");
    }
    Ok(0)
}

fn pause(caps: &Capabilities) -> String {
    match caps.pause {
        PauseSupport::No => "no".to_owned(),
        PauseSupport::Preview => "preview".to_owned(),
        PauseSupport::Yes if caps.pause_keeps_memory => "yes (memory)".to_owned(),
        PauseSupport::Yes => "yes (disk)".to_owned(),
    }
}

fn gpus(caps: &Capabilities) -> String {
    if caps.gpu_kinds.is_empty() {
        return "-".to_owned();
    }
    // The full list is in `--json`; the table keeps its width.
    const SHOWN: usize = 3;
    let kinds: Vec<&str> = caps.gpu_kinds.iter().map(|kind| kind.as_str()).collect();
    let more = match kinds.len().saturating_sub(SHOWN) {
        0 => String::new(),
        hidden => format!(" +{hidden}"),
    };
    let shown = &kinds[..kinds.len().min(SHOWN)];
    format!("{}{more} (max {})", shown.join(","), caps.max_gpu_count)
}

#[cfg(test)]
mod tests {
    use sandkit::GpuKind;

    use super::*;

    #[test]
    fn gpu_and_pause_cells_say_what_is_offered() {
        let caps = Capabilities {
            gpu_kinds: vec![GpuKind::T4, GpuKind::H100],
            max_gpu_count: 8,
            pause: PauseSupport::Yes,
            ..Default::default()
        };
        assert_eq!(gpus(&caps), "T4,H100 (max 8)");
        let many = Capabilities {
            gpu_kinds: GpuKind::ALL.to_vec(),
            max_gpu_count: 8,
            ..Default::default()
        };
        assert_eq!(gpus(&many), "T4,L4,A10G +6 (max 8)");
        assert_eq!(pause(&caps), "yes (disk)");
        assert_eq!(gpus(&Capabilities::default()), "-");
    }
}
