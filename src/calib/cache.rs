//! Calibration tables: TensorRT's calibration cache text format and a JSON form.
//!
//! # TensorRT cache (text)
//!
//! ```text
//! TRT-8601-EntropyCalibration2
//! conv1_out: 3c000000
//! input: 3c010204
//! ```
//!
//! The first line is a header (`TRT-<version>-<calibrator>`); each further line is
//! `name: hex`, the 8 hex digits being the big-endian IEEE-754 bits of the f32 **scale**
//! (`amax / 127`). Names may contain `:` and spaces (TensorRT writes names such as
//! `(Unnamed Layer* 3) [Shuffle]_output`): a line is split at its *last* `:`. Reading accepts
//! 1 to 8 hex digits in either case, CRLF line ends and blank lines; writing always emits 8
//! lowercase digits and `\n` line ends.
//!
//! **Order**: a [`CalibTable`] keeps its tensors in a `BTreeMap`, so both forms are written
//! sorted by name (byte order), whatever order they were read or inserted in. TensorRT does
//! not care about the order; sorting makes the output deterministic, and write → read → write
//! gives the identical file.
//!
//! # JSON
//!
//! ```json
//! {"header": "TRT-8601-EntropyCalibration2",
//!  "tensors": {"conv1_out": {"amax": 0.9921875, "scale": 0.0078125, "method": "entropy"}}}
//! ```
//!
//! On reading, `scale` or `amax` may be left out (derived from the other), `method` is
//! optional; when both numbers are given they must agree (`scale == amax / 127` to 1e-5
//! relative). Floats are written in the shortest form that reads back to the same `f32`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::calib::methods::{Calibration, Method};
use crate::error::{Error, Result, ResultExt};

/// TensorRT version number used in default headers (8.6.1, the last release whose
/// calibrators are not deprecated).
pub const DEFAULT_TRT_VERSION: &str = "8601";

/// The cache header for a method: TensorRT's own names for the methods it has
/// (`TRT-8601-EntropyCalibration2`, `TRT-8601-MinMaxCalibration`), and the same pattern
/// naming the method for those it has not (`TRT-8601-PercentileCalibration`,
/// `TRT-8601-MseCalibration`, TensorRT has no such calibrator): the header says how the
/// scales were chosen. The JSON form also keeps the method per tensor.
pub fn default_header(method: Method) -> String {
    let kind = match method {
        Method::Entropy => "EntropyCalibration2",
        Method::Max => "MinMaxCalibration",
        Method::Percentile(_) => "PercentileCalibration",
        Method::Mse => "MseCalibration",
    };
    format!("TRT-{DEFAULT_TRT_VERSION}-{kind}")
}

/// One tensor's entry.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibEntry {
    /// Clipping threshold.
    pub amax: f32,
    /// INT8 scale, `amax / 127` (kept separately so a cache's bits survive a round trip).
    pub scale: f32,
    /// The method that produced it, when known (not stored in the text cache).
    pub method: Option<String>,
}

/// A calibration table: header plus one entry per tensor, sorted by name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CalibTable {
    /// The header line of the text cache, e.g. `TRT-8601-EntropyCalibration2`.
    pub header: String,
    /// Entries by tensor name.
    pub tensors: BTreeMap<String, CalibEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonTable {
    header: String,
    tensors: BTreeMap<String, JsonEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    amax: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scale: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    method: Option<String>,
}

impl CalibTable {
    /// An empty table with the given header.
    pub fn new(header: impl Into<String>) -> Self {
        CalibTable {
            header: header.into(),
            tensors: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) a tensor from a calibration result.
    pub fn insert(&mut self, name: impl Into<String>, cal: &Calibration, method: Method) {
        self.tensors.insert(
            name.into(),
            CalibEntry {
                amax: cal.amax,
                scale: cal.scale,
                method: Some(method.to_string()),
            },
        );
    }

    /// Adds (or replaces) a tensor from an amax; the scale is `amax / 127`.
    pub fn insert_amax(&mut self, name: impl Into<String>, amax: f32, method: Option<String>) {
        self.tensors.insert(
            name.into(),
            CalibEntry {
                amax,
                scale: amax / 127.0,
                method,
            },
        );
    }

    fn check_writable(&self) -> Result<()> {
        if self.header.contains(['\n', '\r']) {
            return Err(Error::user(
                "calibration cache header contains a line break",
            ));
        }
        for (name, e) in &self.tensors {
            if name.is_empty() || name.contains(['\n', '\r']) {
                return Err(Error::user(format!(
                    "tensor name {name:?} cannot be written to a calibration cache"
                )));
            }
            if !(e.scale.is_finite() && e.scale >= 0.0) {
                return Err(Error::user(format!(
                    "tensor '{name}': invalid scale {}",
                    e.scale
                )));
            }
        }
        Ok(())
    }

    /// The TensorRT calibration cache text (sorted by name, `\n` line ends, final newline).
    pub fn to_trt_cache(&self) -> Result<String> {
        self.check_writable()?;
        let mut s = String::with_capacity(32 + 40 * self.tensors.len());
        s.push_str(&self.header);
        s.push('\n');
        for (name, e) in &self.tensors {
            s.push_str(&format!("{name}: {:08x}\n", e.scale.to_bits()));
        }
        Ok(s)
    }

    /// Parses TensorRT calibration cache text; `source` (e.g. the file name) prefixes errors,
    /// which name the line number. amax is set to `scale * 127`.
    pub fn from_trt_cache(text: &str, source: &str) -> Result<CalibTable> {
        let mut lines = text.split('\n').enumerate();
        let err =
            |line: usize, msg: String| Error::user(format!("line {line}: {msg}")).context(source);
        let header = loop {
            match lines.next() {
                Some((i, l)) => {
                    let l = l.trim_end_matches('\r').trim();
                    if l.is_empty() {
                        continue;
                    }
                    if !l.starts_with("TRT-") {
                        return Err(err(
                            i + 1,
                            format!(
                                "expected a header such as 'TRT-8601-EntropyCalibration2', found '{}'",
                                clip(l)
                            ),
                        ));
                    }
                    break l.to_string();
                }
                None => return Err(Error::user("empty calibration cache").context(source)),
            }
        };
        let mut table = CalibTable::new(header);
        for (i, raw) in lines {
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let Some((name, hex)) = line.rsplit_once(':') else {
                return Err(err(
                    i + 1,
                    format!("expected 'name: hexscale', found '{}'", clip(line)),
                ));
            };
            let hex = hex.trim();
            if name.is_empty() {
                return Err(err(i + 1, "empty tensor name".into()));
            }
            if hex.is_empty() || hex.len() > 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err(
                    i + 1,
                    format!(
                        "tensor '{name}': expected up to 8 hex digits, found '{}'",
                        clip(hex)
                    ),
                ));
            }
            // Unwrap: 1..=8 hex digits always fit a u32.
            let bits = u32::from_str_radix(hex, 16).unwrap();
            let scale = f32::from_bits(bits);
            if !(scale.is_finite() && scale >= 0.0) {
                return Err(err(
                    i + 1,
                    format!(
                        "tensor '{name}': scale {hex} is {scale}, not a finite non-negative float"
                    ),
                ));
            }
            let entry = CalibEntry {
                amax: scale * 127.0,
                scale,
                method: None,
            };
            if table.tensors.insert(name.to_string(), entry).is_some() {
                return Err(err(i + 1, format!("tensor '{name}' appears twice")));
            }
        }
        Ok(table)
    }

    /// The JSON form (pretty-printed, sorted by name, final newline).
    pub fn to_json(&self) -> Result<String> {
        let t = JsonTable {
            header: self.header.clone(),
            tensors: self
                .tensors
                .iter()
                .map(|(k, e)| {
                    (
                        k.clone(),
                        JsonEntry {
                            amax: Some(e.amax),
                            scale: Some(e.scale),
                            method: e.method.clone(),
                        },
                    )
                })
                .collect(),
        };
        let mut s = serde_json::to_string_pretty(&t)
            .map_err(|e| Error::internal(format!("serialising calibration table: {e}")))?;
        s.push('\n');
        Ok(s)
    }

    /// Parses the JSON form; `source` prefixes errors.
    pub fn from_json(text: &str, source: &str) -> Result<CalibTable> {
        let t: JsonTable = serde_json::from_str(text).map_err(|e| {
            Error::user(format!("line {}, column {}: {e}", e.line(), e.column())).context(source)
        })?;
        let mut table = CalibTable::new(t.header);
        for (name, e) in t.tensors {
            let bad = |msg: String| Error::user(format!("tensor '{name}': {msg}")).context(source);
            let (amax, scale) = match (e.amax, e.scale) {
                (Some(a), Some(s)) => {
                    let expect = a / 127.0;
                    if (s - expect).abs() > 1e-5 * expect.abs().max(f32::MIN_POSITIVE) {
                        return Err(bad(format!(
                            "scale {s} does not equal amax / 127 = {expect}"
                        )));
                    }
                    (a, s)
                }
                (Some(a), None) => (a, a / 127.0),
                (None, Some(s)) => (s * 127.0, s),
                (None, None) => return Err(bad("needs 'amax' or 'scale'".into())),
            };
            if !(amax.is_finite() && amax >= 0.0 && scale.is_finite()) {
                return Err(bad(format!(
                    "amax {amax} is not a finite non-negative number"
                )));
            }
            table.tensors.insert(
                name,
                CalibEntry {
                    amax,
                    scale,
                    method: e.method,
                },
            );
        }
        Ok(table)
    }

    /// Writes the text cache to `path`.
    pub fn write_trt_cache(&self, path: &Path) -> Result<()> {
        let s = self
            .to_trt_cache()
            .with_ctx(|| path.display().to_string())?;
        crate::util::write_atomic(path, s.as_bytes())
    }

    /// Writes the JSON form to `path`.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let s = self.to_json().with_ctx(|| path.display().to_string())?;
        crate::util::write_atomic(path, s.as_bytes())
    }

    /// Reads a table from `path`, JSON when the first non-blank character is `{`, else the
    /// TensorRT text cache.
    pub fn read(path: &Path) -> Result<CalibTable> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).ctx(name.clone())?;
        let text = String::from_utf8(bytes)
            .map_err(|e| {
                Error::user(format!(
                    "not UTF-8 text (byte {})",
                    e.utf8_error().valid_up_to()
                ))
            })
            .ctx(name.clone())?;
        if text.trim_start().starts_with('{') {
            CalibTable::from_json(&text, &name)
        } else {
            CalibTable::from_trt_cache(&text, &name)
        }
    }
}

/// Shortens a line for an error message.
fn clip(s: &str) -> String {
    if s.chars().count() > 80 {
        format!("{}...", s.chars().take(80).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HAND: &str = "TRT-8601-EntropyCalibration2\n\
        input: 3c000000\n\
        (Unnamed Layer* 3) [Shuffle]_output: 3d8f5c29\n\
        x:0: 3F800000\n";

    #[test]
    fn reads_exact_bits() {
        let t = CalibTable::from_trt_cache(HAND, "hand.cache").unwrap();
        assert_eq!(t.header, "TRT-8601-EntropyCalibration2");
        assert_eq!(t.tensors.len(), 3);
        let e = &t.tensors["input"];
        assert_eq!(e.scale, 0.0078125);
        assert_eq!(e.scale.to_bits(), 0x3c00_0000);
        assert_eq!(e.amax, 0.9921875);
        assert_eq!(
            t.tensors["(Unnamed Layer* 3) [Shuffle]_output"]
                .scale
                .to_bits(),
            0x3d8f_5c29
        );
        assert_eq!(t.tensors["x:0"].scale, 1.0);
    }

    #[test]
    fn writes_sorted_exact_and_round_trips() {
        let mut t = CalibTable::new("TRT-8601-MinMaxCalibration");
        t.insert_amax("zeta", 0.9921875, Some("max".into()));
        t.insert_amax("alpha", 127.0, None);
        let s = t.to_trt_cache().unwrap();
        assert_eq!(
            s,
            "TRT-8601-MinMaxCalibration\nalpha: 3f800000\nzeta: 3c000000\n"
        );
        let back = CalibTable::from_trt_cache(&s, "x").unwrap();
        assert_eq!(back.to_trt_cache().unwrap(), s);

        let hand = CalibTable::from_trt_cache(HAND, "hand").unwrap();
        let once = hand.to_trt_cache().unwrap();
        let twice = CalibTable::from_trt_cache(&once, "x")
            .unwrap()
            .to_trt_cache()
            .unwrap();
        assert_eq!(once, twice);
        assert!(once.contains("x:0: 3f800000\n"));
    }

    #[test]
    fn tolerates_crlf_blank_lines_and_short_hex() {
        let t =
            CalibTable::from_trt_cache("\r\nTRT-1-X\r\na: 3c000000\r\n\r\nb: 1\r\n", "f").unwrap();
        assert_eq!(t.tensors["a"].scale, 0.0078125);
        assert_eq!(t.tensors["b"].scale.to_bits(), 1);
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let cases = [
            ("TRT-1-X\na: 3c000000\nno colon here\n", "line 3"),
            ("TRT-1-X\na: xyz\n", "line 2"),
            ("TRT-1-X\na: 123456789\n", "line 2"),
            ("TRT-1-X\na: 7fc00000\n", "line 2"),
            ("TRT-1-X\na: bf800000\n", "line 2"),
            ("TRT-1-X\na: 1\na: 2\n", "line 3"),
            ("TRT-1-X\n: 3c000000\n", "line 2"),
            ("a: 3c000000\n", "line 1"),
        ];
        for (text, line) in cases {
            let e = CalibTable::from_trt_cache(text, "my.cache")
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("my.cache: {line}:")),
                "{text:?} -> {e}"
            );
        }
        assert!(CalibTable::from_trt_cache("\n\n", "f").is_err());
    }

    #[test]
    fn json_round_trip_and_checks() {
        let mut t = CalibTable::new(default_header(Method::Entropy));
        t.insert(
            "conv1_out",
            &Calibration {
                amax: 2.5,
                scale: 2.5 / 127.0,
                fraction_clipped: 0.0,
                all_zero: false,
            },
            Method::Entropy,
        );
        t.insert_amax("b", 0.1, None);
        let j = t.to_json().unwrap();
        let back = CalibTable::from_json(&j, "t.json").unwrap();
        assert_eq!(back, t);
        assert_eq!(back.to_json().unwrap(), j);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["header"], "TRT-8601-EntropyCalibration2");
        assert_eq!(v["tensors"]["conv1_out"]["amax"], 2.5);
        assert_eq!(v["tensors"]["conv1_out"]["method"], "entropy");

        // Either number may be omitted; inconsistent ones are refused.
        let t = CalibTable::from_json(r#"{"header":"h","tensors":{"a":{"scale":0.0078125}}}"#, "f")
            .unwrap();
        assert_eq!(t.tensors["a"].amax, 0.9921875);
        let e = CalibTable::from_json(
            r#"{"header":"h","tensors":{"a":{"amax":1.0,"scale":1.0}}}"#,
            "f.json",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("f.json: tensor 'a': scale"), "{e}");
        let e = CalibTable::from_json(
            "{\"header\":\"h\",\n\"tensors\":{\"a\":{\"amx\":1}}}",
            "f.json",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("f.json: line 2"), "{e}");
        assert!(CalibTable::from_json(r#"{"header":"h","tensors":{"a":{}}}"#, "f").is_err());
    }

    #[test]
    fn text_and_json_files_and_detection() {
        let dir = tempfile::tempdir().unwrap();
        let t = CalibTable::from_trt_cache(HAND, "hand").unwrap();
        let c = dir.path().join("calib.cache");
        let j = dir.path().join("calib.json");
        t.write_trt_cache(&c).unwrap();
        t.write_json(&j).unwrap();
        assert_eq!(CalibTable::read(&c).unwrap(), t);
        assert_eq!(CalibTable::read(&j).unwrap(), t);
        let e = CalibTable::read(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
        assert_eq!(default_header(Method::Max), "TRT-8601-MinMaxCalibration");
        assert_eq!(default_header(Method::Entropy), "TRT-8601-EntropyCalibration2");
        assert_eq!(default_header(Method::Percentile(99.99)), "TRT-8601-PercentileCalibration");
        assert_eq!(default_header(Method::Mse), "TRT-8601-MseCalibration");
        let mut bad = CalibTable::new("h");
        bad.insert_amax("a\nb", 1.0, None);
        assert!(bad.to_trt_cache().is_err());
    }
}
