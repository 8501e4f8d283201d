//! What a run found: one result per case, counts, a table for people and JSON for scripts.

use std::fmt::Write as _;

use sandkit_core::Capabilities;
use serde::Serialize;

/// How one case ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Outcome {
    /// The provider behaved as the case requires.
    Passed,
    /// It did not; the message says what was expected and what happened.
    Failed {
        /// What went wrong.
        message: String,
    },
    /// The case did not run here; the reason names the capability (or the condition seen
    /// at run time) that rules it out.
    Skipped {
        /// Why it did not run.
        reason: String,
    },
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseResult {
    /// The case's name, e.g. `exec_exit_42`.
    pub name: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Wall time of the case, including creating and terminating its sandboxes.
    pub duration_ms: u64,
}

/// Everything a run found, in the order of the case table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The provider's registry name.
    pub provider: String,
    /// The capabilities the provider declared (and the suite set out to prove).
    pub capabilities: Capabilities,
    /// One result per case that was selected.
    pub results: Vec<CaseResult>,
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
    /// Cases that were skipped, each with its reason.
    pub skipped: usize,
}

impl Report {
    /// A report over `results`, counting each outcome.
    pub fn new(
        provider: impl Into<String>,
        capabilities: Capabilities,
        results: Vec<CaseResult>,
    ) -> Self {
        let count =
            |wanted: fn(&Outcome) -> bool| results.iter().filter(|r| wanted(&r.outcome)).count();
        Self {
            provider: provider.into(),
            capabilities,
            passed: count(|o| matches!(o, Outcome::Passed)),
            failed: count(|o| matches!(o, Outcome::Failed { .. })),
            skipped: count(|o| matches!(o, Outcome::Skipped { .. })),
            results,
        }
    }

    /// Cases that actually ran (passed or failed).
    pub fn executed(&self) -> usize {
        self.passed + self.failed
    }

    /// No case failed and at least one ran: a run that executes nothing proves nothing.
    pub fn is_success(&self) -> bool {
        self.failed == 0 && self.executed() > 0
    }

    /// The one-line verdict, e.g. `local-process: 61 passed, 0 failed, 12 skipped`.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{}: {} passed, {} failed, {} skipped",
            self.provider, self.passed, self.failed, self.skipped
        );
        if self.executed() == 0 {
            line.push_str(" (no case was executed, so nothing was proven: the run fails)");
        }
        line
    }

    /// A table for people: one row per case with its result, time and message or reason,
    /// then the summary line.
    pub fn table(&self) -> String {
        let name_width = self
            .results
            .iter()
            .map(|r| r.name.len())
            .chain([4])
            .max()
            .unwrap_or(4);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<name_width$}  {:<7}  {:>8}  detail",
            "case", "result", "ms"
        );
        for result in &self.results {
            let (status, detail) = match &result.outcome {
                Outcome::Passed => ("passed", ""),
                Outcome::Failed { message } => ("FAILED", message.as_str()),
                Outcome::Skipped { reason } => ("skipped", reason.as_str()),
            };
            // Keep each row on one line; the JSON report has the full message.
            let detail = detail.replace('\n', " | ");
            let _ = writeln!(
                out,
                "{:<name_width$}  {status:<7}  {:>8}  {detail}",
                result.name, result.duration_ms
            );
        }
        let _ = writeln!(out, "{}", self.summary());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, outcome: Outcome) -> CaseResult {
        CaseResult {
            name: name.into(),
            outcome,
            duration_ms: 5,
        }
    }

    fn skipped(name: &str) -> CaseResult {
        result(
            name,
            Outcome::Skipped {
                reason: "needs `fs_snapshot`".into(),
            },
        )
    }

    #[test]
    fn zero_cases_is_a_failure() {
        let report = Report::new("p", Capabilities::default(), Vec::new());
        assert!(!report.is_success());
        assert!(
            report.summary().contains("no case was executed"),
            "{}",
            report.summary()
        );
    }

    #[test]
    fn only_skipped_cases_is_a_failure() {
        let report = Report::new(
            "p",
            Capabilities::default(),
            vec![skipped("a"), skipped("b")],
        );
        assert_eq!((report.passed, report.failed, report.skipped), (0, 0, 2));
        assert_eq!(report.executed(), 0);
        assert!(!report.is_success());
    }

    #[test]
    fn skipped_cases_are_counted_and_do_not_fail_a_run() {
        let report = Report::new(
            "p",
            Capabilities::default(),
            vec![result("a", Outcome::Passed), skipped("b"), skipped("c")],
        );
        assert_eq!((report.passed, report.failed, report.skipped), (1, 0, 2));
        assert!(report.is_success());
    }

    #[test]
    fn one_failure_fails_the_run() {
        let failed = Outcome::Failed {
            message: "expected exit 42\ngot 0".into(),
        };
        let report = Report::new(
            "p",
            Capabilities::default(),
            vec![result("a", Outcome::Passed), result("b", failed)],
        );
        assert_eq!(report.failed, 1);
        assert!(!report.is_success());
        let table = report.table();
        assert!(table.contains("FAILED"), "{table}");
        assert!(table.contains("expected exit 42 | got 0"), "{table}");
        assert!(
            table.ends_with("p: 1 passed, 1 failed, 0 skipped\n"),
            "{table}"
        );
    }

    #[test]
    fn the_table_shows_skip_reasons() {
        let report = Report::new(
            "p",
            Capabilities::default(),
            vec![skipped("snapshot_restore")],
        );
        let table = report.table();
        assert!(
            table.contains("snapshot_restore") && table.contains("needs `fs_snapshot`"),
            "{table}"
        );
    }

    #[test]
    fn the_json_report_tags_each_outcome() {
        let report = Report::new(
            "p",
            Capabilities::default(),
            vec![result("a", Outcome::Passed), skipped("b")],
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["provider"], "p");
        assert_eq!(json["results"][0]["outcome"]["status"], "passed");
        assert_eq!(json["results"][1]["outcome"]["status"], "skipped");
        assert_eq!(
            json["results"][1]["outcome"]["reason"],
            "needs `fs_snapshot`"
        );
        assert_eq!(json["skipped"], 1);
        assert!(json["capabilities"].is_object());
    }
}
