//! Verdicts and the two reports: text for a person (grouped by area, non-passes with
//! what was seen and a hint, a summary line) and JSON for CI.

use super::cases::Area;
use serde::Serialize;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// A case's verdict, in Autobahn's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Verdict {
    /// The behaviour the RFC asks for.
    Pass,
    /// Allowed by the RFC, though a stricter peer does better (Autobahn's NON-STRICT).
    Lenient,
    /// The RFC leaves it open; recorded for information (Autobahn's INFORMATIONAL).
    Info,
    /// Against the RFC.
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Lenient => "lenient",
            Verdict::Info => "info",
            Verdict::Fail => "fail",
        }
    }
}

/// What running a case gave.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub verdict: Verdict,
    /// What the peer did, in one line.
    pub observed: String,
    /// For a non-pass: what to do, naming the RFC rule.
    pub hint: String,
}

impl Outcome {
    pub fn new(verdict: Verdict, observed: impl Into<String>, hint: impl Into<String>) -> Outcome {
        Outcome {
            verdict,
            observed: observed.into(),
            hint: hint.into(),
        }
    }
}

/// One case's line of the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub id: String,
    pub area: &'static str,
    pub rfc: &'static str,
    /// The Autobahn|Testsuite case it mirrors.
    pub autobahn: Option<String>,
    pub title: String,
    pub verdict: Verdict,
    pub observed: String,
    /// Empty for a pass.
    pub hint: String,
    pub ms: u64,
    #[serde(skip)]
    pub area_order: Area,
}

impl Row {
    /// The line of case `case`, run from `started`, that came out as `outcome`.
    pub(crate) fn of(case: &super::cases::Case, outcome: Outcome, started: Instant) -> Row {
        Row {
            id: case.id.clone(),
            area: case.area.key(),
            rfc: case.rfc,
            autobahn: case.autobahn.then(|| case.id.clone()),
            title: case.title.clone(),
            verdict: outcome.verdict,
            observed: outcome.observed,
            hint: outcome.hint,
            ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            area_order: case.area,
        }
    }
}

/// Counts by verdict.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Summary {
    pub total: usize,
    pub pass: usize,
    pub lenient: usize,
    pub info: usize,
    pub fail: usize,
}

impl Summary {
    pub fn of<'a>(rows: impl IntoIterator<Item = &'a Row>) -> Summary {
        let mut s = Summary::default();
        for row in rows {
            s.total += 1;
            match row.verdict {
                Verdict::Pass => s.pass += 1,
                Verdict::Lenient => s.lenient += 1,
                Verdict::Info => s.info += 1,
                Verdict::Fail => s.fail += 1,
            }
        }
        s
    }

    fn line(&self) -> String {
        format!(
            "{} cases: {} pass, {} lenient, {} info, {} fail",
            self.total, self.pass, self.lenient, self.info, self.fail
        )
    }
}

/// The whole report.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// What was graded: the URL, or the client agent.
    pub target: String,
    pub summary: Summary,
    pub seconds: f64,
    pub cases: Vec<Row>,
}

impl Report {
    pub fn new(target: String, mut cases: Vec<Row>, elapsed: Duration) -> Report {
        cases.sort_by(|a, b| a.area_order.cmp(&b.area_order).then(order(&a.id, &b.id)));
        Report {
            target,
            summary: Summary::of(&cases),
            seconds: (elapsed.as_secs_f64() * 10.0).round() / 10.0,
            cases,
        }
    }

    /// The JSON report.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The text report: per area a heading with its counts, then every case that did
    /// not pass (all of them with `verbose`), then the summary line.
    pub fn text(&self, verbose: bool) -> String {
        let mut out = format!("switchboard check {}\n", self.target);
        for area in Area::ALL {
            let rows: Vec<&Row> = self.cases.iter().filter(|r| r.area_order == area).collect();
            if rows.is_empty() {
                continue;
            }
            let s = Summary::of(rows.iter().copied());
            let _ = write!(out, "\n{}: {} of {} pass", area.title(), s.pass, s.total);
            for (n, what) in [(s.lenient, "lenient"), (s.info, "info"), (s.fail, "FAIL")] {
                if n > 0 {
                    let _ = write!(out, ", {n} {what}");
                }
            }
            out.push('\n');
            for row in rows {
                if row.verdict == Verdict::Pass && !verbose {
                    continue;
                }
                let mirror = match &row.autobahn {
                    Some(id) => format!(" [Autobahn {id}]"),
                    None => String::new(),
                };
                let verdict = match row.verdict {
                    Verdict::Fail => "FAIL".to_owned(),
                    v => v.as_str().to_owned(),
                };
                let _ = writeln!(
                    out,
                    "  {:<8} {:<7} {} {}{mirror}",
                    row.id, verdict, row.rfc, row.title
                );
                if row.verdict != Verdict::Pass {
                    let _ = writeln!(out, "           seen: {}", row.observed);
                    let _ = writeln!(out, "           hint: {}", row.hint);
                }
            }
        }
        let _ = writeln!(out, "\n{} in {:.1} s", self.summary.line(), self.seconds);
        out
    }
}

/// Case ids in numeric order: `6.10.1` after `6.9.2`.
pub(crate) fn order(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |s: &str| -> Vec<u64> {
        s.split('.')
            .map(|p| p.parse().unwrap_or(u64::MAX))
            .collect()
    };
    key(a).cmp(&key(b)).then_with(|| a.cmp(b))
}
