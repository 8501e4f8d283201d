//! Human and machine output: tables, JSON documents, errors and progress spinners.
//!
//! Machine output (`--json`) is exactly one JSON document on stdout. Everything meant for
//! a person that is not the command's result (progress, warnings, errors) goes to stderr.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::error::CliError;

/// Prints `value` as the one JSON document of this command.
pub fn print_json(value: &impl Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|error| CliError::Failed(format!("cannot encode the JSON output: {error}")))?;
    println!("{text}");
    Ok(())
}

/// Prints a failure: `error: <message>` on stderr, or `{"error": {...}}` on stdout.
pub fn print_error(error: &CliError, json: bool) {
    if json {
        let document = serde_json::json!({
            "error": {
                "kind": error.kind(),
                "message": error.to_string(),
                "exit_code": error.exit_code(),
            }
        });
        println!("{document:#}");
    } else {
        eprintln!("error: {error}");
    }
}

/// Prints a warning on stderr (both in human and `--json` mode: stdout stays one document).
pub fn warn(message: impl std::fmt::Display) {
    eprintln!("warning: {message}");
}

/// The serialised name of a unit enum value (`kebab-case` as in the JSON), for tables.
pub fn label(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_owned(),
    }
}

/// `yes` or `no`.
pub fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

/// A plain text table with left-aligned, space-separated columns.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|title| (*title).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (as many cells as there are columns).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders the table; the last column is not padded.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut text = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let last = row.len().saturating_sub(1);
            for (index, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if index == last {
                    text.push_str(cell);
                } else {
                    text.push_str(&format!("{cell:<width$}  "));
                }
            }
            text.truncate(text.trim_end().len());
            text.push('\n');
        }
        text
    }

    /// Prints the table on stdout.
    pub fn print(&self) {
        let mut stdout = std::io::stdout().lock();
        // A closed pipe (`sandkit ls | head -1`) is the reader's choice, not our failure.
        let _ = stdout.write_all(self.render().as_bytes());
    }
}

/// A spinner on stderr for a step that takes time. Hidden when stderr is not a terminal
/// or with `--json`; cleared when dropped.
pub struct Spinner(indicatif::ProgressBar);

impl Spinner {
    /// Starts a spinner saying `message`.
    pub fn start(message: impl Into<String>, json: bool) -> Self {
        let bar = indicatif::ProgressBar::with_draw_target(None, draw_target(json));
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed:.dim}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message.into());
        bar.enable_steady_tick(Duration::from_millis(100));
        Self(bar)
    }
}

/// A progress bar on stderr for a known number of steps (conformance cases), hidden like
/// a [`Spinner`]; cleared when dropped.
pub struct ProgressBar(indicatif::ProgressBar);

impl ProgressBar {
    /// A bar of `length` steps.
    pub fn new(length: u64, json: bool) -> Self {
        let bar = indicatif::ProgressBar::with_draw_target(Some(length), draw_target(json));
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed:.dim} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Self(bar)
    }

    /// One step done; `message` says which.
    pub fn advance(&self, message: &str) {
        self.0.set_message(message.to_owned());
        self.0.inc(1);
    }

    /// Prints a line on stderr, above the bar when it is shown.
    pub fn println(&self, line: String) {
        if self.0.is_hidden() {
            eprintln!("{line}");
        } else {
            self.0.println(line);
        }
    }
}

impl Drop for ProgressBar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

fn draw_target(json: bool) -> ProgressDrawTarget {
    if json || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    }
}

/// A short human age: `42s`, `5m 3s`, `2h 1m`, `3d 4h`.
pub fn age(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (days, hours, minutes, seconds) =
        (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m {seconds}s")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_trim_line_ends() {
        let mut table = Table::new(&["ID", "STATE"]);
        table.row(vec!["sb-1".into(), "running".into()]);
        table.row(vec!["sandbox-22".into(), String::new()]);
        assert_eq!(
            table.render(),
            "ID          STATE\nsb-1        running\nsandbox-22\n"
        );
    }

    #[test]
    fn ages_keep_the_two_largest_units() {
        assert_eq!(age(Duration::from_secs(42)), "42s");
        assert_eq!(age(Duration::from_secs(303)), "5m 3s");
        assert_eq!(age(Duration::from_secs(7_260)), "2h 1m");
        assert_eq!(age(Duration::from_secs(3 * 86_400 + 4 * 3_600)), "3d 4h");
    }

    #[test]
    fn labels_use_the_serialised_names() {
        assert_eq!(
            label(&sandkit::Isolation::UserSpaceKernel),
            "user-space-kernel"
        );
        assert_eq!(label(&sandkit::GpuKind::A100_40GB), "A100-40GB");
    }
}
