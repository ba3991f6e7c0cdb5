//! Statistics over repetitions, and the report: printed as it is made, written as Markdown and
//! JSON at the end.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Map, Value};

/// Minimum, median and maximum of some repetitions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Summary {
    pub(crate) min: f64,
    pub(crate) median: f64,
    pub(crate) max: f64,
}

impl Summary {
    /// Summarises `values` (the median of an even count is the mean of the middle two).
    pub(crate) fn of(values: &[f64]) -> Self {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        if sorted.is_empty() {
            return Self {
                min: f64::NAN,
                median: f64::NAN,
                max: f64::NAN,
            };
        }
        let mid = sorted.len() / 2;
        let median = if sorted.len().is_multiple_of(2) {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        } else {
            sorted[mid]
        };
        Self {
            min: sorted[0],
            median,
            max: sorted[sorted.len() - 1],
        }
    }

    /// `median (min-max)` with `decimals` digits.
    pub(crate) fn show(&self, decimals: usize) -> String {
        if self.median.is_nan() {
            // No finite value, e.g. a ratio to a CPU time below the 10 ms resolution.
            return "n/a".to_owned();
        }
        format!(
            "{:.d$} ({:.d$}-{:.d$})",
            self.median,
            self.min,
            self.max,
            d = decimals
        )
    }

    pub(crate) fn to_json(self) -> Value {
        json!({ "min": self.min, "median": self.median, "max": self.max })
    }
}

/// Per-repetition ratios `a[i] / b[i]` (repetitions interleave the kinds, so pairing them
/// cancels the slow drift of a noisy machine).
pub(crate) fn ratios(a: &[f64], b: &[f64]) -> Summary {
    let paired: Vec<f64> = a.iter().zip(b).map(|(a, b)| a / b).collect();
    Summary::of(&paired)
}

/// One performance target and whether this run met it.
struct Target {
    name: String,
    measured: String,
    required: String,
    met: bool,
}

/// The report being made.
#[derive(Default)]
pub(crate) struct Report {
    markdown: String,
    json: Map<String, Value>,
    targets: Vec<Target>,
}

impl Report {
    /// Free text (Markdown), printed and kept.
    pub(crate) fn text(&mut self, text: &str) {
        println!("{text}");
        self.markdown.push_str(text);
        self.markdown.push('\n');
    }

    /// A Markdown table, printed and kept.
    pub(crate) fn table(&mut self, headers: &[&str], rows: &[Vec<String>]) {
        let mut out = String::new();
        let _ = writeln!(out, "| {} |", headers.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(headers.len()));
        for row in rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        self.text(&out);
    }

    /// A value for the JSON file.
    pub(crate) fn value(&mut self, key: &str, value: Value) {
        self.json.insert(key.to_owned(), value);
    }

    /// Records a target: `measured` and `required` are shown as given.
    pub(crate) fn target(&mut self, name: &str, measured: String, required: &str, met: bool) {
        let verdict = if met { "met" } else { "MISSED" };
        println!("target: {name}: {measured} (needs {required}): {verdict}");
        self.targets.push(Target {
            name: name.to_owned(),
            measured,
            required: required.to_owned(),
            met,
        });
    }

    /// Writes `<out>.md` and `<out>.json`, the targets table first.
    pub(crate) fn write(mut self, out: &Path, header: &str) -> std::io::Result<()> {
        let mut targets = String::from("## Targets (medians of this run)\n\n");
        targets.push_str("| target | measured | required | verdict |\n|---|---|---|---|\n");
        for target in &self.targets {
            let _ = writeln!(
                targets,
                "| {} | {} | {} | {} |",
                target.name,
                target.measured,
                target.required,
                if target.met { "met" } else { "**missed**" }
            );
        }
        println!("\n{targets}");
        self.json.insert(
            "targets".to_owned(),
            self.targets
                .iter()
                .map(|t| json!({"name": t.name, "measured": t.measured, "required": t.required, "met": t.met}))
                .collect(),
        );
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let markdown = format!("{header}\n{targets}\n{}", self.markdown);
        std::fs::write(out.with_extension("md"), markdown)?;
        let json = serde_json::to_string_pretty(&Value::Object(self.json))
            .map_err(std::io::Error::other)?;
        std::fs::write(out.with_extension("json"), json)
    }
}
