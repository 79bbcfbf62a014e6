//! TensorRT builder log lines, and the two lines that tell which layers run sparse:
//!
//! ```text
//! (Sparsity) Layers eligible for sparse math: conv1, conv2 + relu2, fc
//! (Sparsity) TRT inference plan picked sparse implementation for layers: conv2 + relu2
//! ```
//!
//! TensorRT prints them at kINFO severity during `buildSerializedNetwork` when
//! `kSPARSE_WEIGHTS` is set. Names are TensorRT's (possibly fused: `a + b`). The parser also
//! accepts trtexec's prefixed form (`[08/05/2024-12:06:54] [I] [TRT] (Sparsity) ...`), so a
//! trtexec `--verbose` log can be fed to [`SparsityReport::from_log`] as well.

use std::fmt;

/// `ILogger::Severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// `kINTERNAL_ERROR` = 0
    InternalError,
    /// `kERROR` = 1
    Error,
    /// `kWARNING` = 2
    Warning,
    /// `kINFO` = 3
    Info,
    /// `kVERBOSE` = 4
    Verbose,
}

impl Severity {
    /// From the header value; unknown values map to `Verbose`.
    pub fn from_value(v: i32) -> Severity {
        match v {
            0 => Severity::InternalError,
            1 => Severity::Error,
            2 => Severity::Warning,
            3 => Severity::Info,
            _ => Severity::Verbose,
        }
    }

    /// One-letter tag as trtexec prints it: `F`, `E`, `W`, `I`, `V`.
    pub fn tag(self) -> char {
        match self {
            Severity::InternalError => 'F',
            Severity::Error => 'E',
            Severity::Warning => 'W',
            Severity::Info => 'I',
            Severity::Verbose => 'V',
        }
    }
}

/// One message from TensorRT's logger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Severity.
    pub severity: Severity,
    /// The message, without trailing newline.
    pub message: String,
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.severity.tag(), self.message)
    }
}

/// Marker of the "eligible" line.
pub const ELIGIBLE_MARKER: &str = "Layers eligible for sparse math:";
/// Marker of the "picked" line.
pub const PICKED_MARKER: &str = "picked sparse implementation for layers:";

/// Which layers TensorRT found eligible for sparse math, and where the plan uses a sparse
/// implementation (as reported in the build log).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SparsityReport {
    /// Layers eligible for sparse math, in log order (unique).
    pub eligible: Vec<String>,
    /// Layers for which the plan picked a sparse implementation (unique).
    pub picked: Vec<String>,
    /// Whether any of the two lines was seen at all (false: kSPARSE_WEIGHTS off, or the log
    /// level hid them).
    pub seen: bool,
}

fn names_after<'a>(line: &'a str, marker: &str) -> Option<impl Iterator<Item = &'a str>> {
    let at = line.find(marker)?;
    let rest = &line[at + marker.len()..];
    Some(rest.split(',').map(str::trim).filter(|s| !s.is_empty()))
}

impl SparsityReport {
    /// Scans log messages for the two sparsity lines.
    pub fn from_log<'a, I: IntoIterator<Item = &'a str>>(lines: I) -> SparsityReport {
        let mut r = SparsityReport::default();
        for line in lines {
            for (marker, list) in [
                (ELIGIBLE_MARKER, &mut r.eligible),
                (PICKED_MARKER, &mut r.picked),
            ] {
                if let Some(names) = names_after(line, marker) {
                    r.seen = true;
                    for n in names {
                        if !list.iter().any(|x| x == n) {
                            list.push(n.to_string());
                        }
                    }
                }
            }
        }
        r
    }

    /// Eligible layers that did not get a sparse implementation (TensorRT timed a dense
    /// kernel faster).
    pub fn not_picked(&self) -> Vec<&str> {
        self.eligible
            .iter()
            .filter(|e| !self.picked.contains(e))
            .map(|s| s.as_str())
            .collect()
    }
}

impl fmt::Display for SparsityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.seen {
            return writeln!(f, "sparsity: the build log reported nothing (kSPARSE_WEIGHTS off, or no eligible layer)");
        }
        writeln!(
            f,
            "sparsity: {} layer(s) eligible, {} run sparse",
            self.eligible.len(),
            self.picked.len()
        )?;
        writeln!(
            f,
            "  sparse: {}",
            if self.picked.is_empty() {
                "-".into()
            } else {
                self.picked.join(", ")
            }
        )?;
        let np = self.not_picked();
        writeln!(
            f,
            "  eligible, dense kernel faster: {}",
            if np.is_empty() {
                "-".into()
            } else {
                np.join(", ")
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_lines() {
        let log = [
            "[08/05/2024-12:06:54] [I] [TRT] (Sparsity) Layers eligible for sparse math: MatMul_401, Conv_619 + Relu_620, Conv_626",
            "some other line",
            "(Sparsity) TRT inference plan picked sparse implementation for layers: Conv_619 + Relu_620",
            "(Sparsity) Layers eligible for sparse math: Conv_626, Conv_9",
        ];
        let r = SparsityReport::from_log(log);
        assert!(r.seen);
        assert_eq!(
            r.eligible,
            vec!["MatMul_401", "Conv_619 + Relu_620", "Conv_626", "Conv_9"]
        );
        assert_eq!(r.picked, vec!["Conv_619 + Relu_620"]);
        assert_eq!(r.not_picked(), vec!["MatMul_401", "Conv_626", "Conv_9"]);
        assert!(r.to_string().contains("4 layer(s) eligible, 1 run sparse"));
    }

    #[test]
    fn empty_picked_list_and_absent_lines() {
        let r = SparsityReport::from_log([
            "(Sparsity) TRT inference plan picked sparse implementation for layers:",
        ]);
        assert!(r.seen && r.picked.is_empty());
        let r = SparsityReport::from_log(["Engine built in 3 s"]);
        assert!(!r.seen);
        assert_eq!(Severity::from_value(1), Severity::Error);
    }
}
