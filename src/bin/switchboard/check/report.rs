//! Verdicts and the two reports: text for a person (grouped by area, non-passes with
//! what was seen and a hint, a summary line) and JSON for CI.

use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

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

/// The areas of RFC 6455 the catalogue covers, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Area {
    Handshake,
    Framing,
    Masking,
    Control,
    Reserved,
    Fragmentation,
    Utf8,
    Closing,
    Limits,
    Segmentation,
}

impl Area {
    /// Every area, in report order.
    pub const ALL: [Area; 10] = [
        Area::Handshake,
        Area::Framing,
        Area::Masking,
        Area::Control,
        Area::Reserved,
        Area::Fragmentation,
        Area::Utf8,
        Area::Closing,
        Area::Limits,
        Area::Segmentation,
    ];

    /// The short name used in `--json`.
    pub fn key(self) -> &'static str {
        match self {
            Area::Handshake => "handshake",
            Area::Framing => "framing",
            Area::Masking => "masking",
            Area::Control => "control",
            Area::Reserved => "reserved",
            Area::Fragmentation => "fragmentation",
            Area::Utf8 => "utf8",
            Area::Closing => "closing",
            Area::Limits => "limits",
            Area::Segmentation => "segmentation",
        }
    }

    /// The heading in the report, with the RFC sections.
    pub fn title(self) -> &'static str {
        match self {
            Area::Handshake => "Opening handshake (RFC 6455 §4)",
            Area::Framing => "Framing and the 7/16/64-bit lengths (§5.2)",
            Area::Masking => "Masking (§5.1, §5.3)",
            Area::Control => "Control frames: ping and pong (§5.5)",
            Area::Reserved => "Reserved bits and opcodes (§5.2)",
            Area::Fragmentation => "Fragmentation (§5.4)",
            Area::Utf8 => "UTF-8 in text messages (§5.6, §8.1)",
            Area::Closing => "Closing handshake and close codes (§5.5.1, §7)",
            Area::Limits => "Large messages, up to 16 MiB (§5.2, §10.4)",
            Area::Segmentation => "TCP segmentation: frames are not writes (§5.2)",
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
