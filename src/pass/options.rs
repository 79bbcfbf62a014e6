//! Typed pass options from the pipeline string: `name{key=value,flag,other=1.5}`.

use crate::error::{Error, Result};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    Bool,
    Int,
    Float,
    Str,
}

/// Declares one option of a pass (for validation and `sparseqc passes`).
#[derive(Debug, Clone)]
pub struct OptionSpec {
    pub name: &'static str,
    pub kind: OptionKind,
    pub default: &'static str,
    pub help: &'static str,
}

impl OptionSpec {
    pub const fn new(name: &'static str, kind: OptionKind, default: &'static str, help: &'static str) -> Self {
        OptionSpec { name, kind, default, help }
    }
}

/// Parsed `key=value` options of one pipeline entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassOptions {
    pub pass: String,
    pub values: BTreeMap<String, String>,
}

impl PassOptions {
    /// Checks every given option against the pass's declared options and types.
    pub fn validate(&self, specs: &[OptionSpec]) -> Result<()> {
        for (k, v) in &self.values {
            let spec = specs.iter().find(|s| s.name == k).ok_or_else(|| {
                let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
                Error::usage(format!(
                    "pass '{}' has no option '{k}'; its options are: {}",
                    self.pass,
                    if names.is_empty() { "(none)".to_string() } else { names.join(", ") }
                ))
            })?;
            let ok = match spec.kind {
                OptionKind::Bool => parse_bool(v).is_some(),
                OptionKind::Int => v.parse::<i64>().is_ok(),
                OptionKind::Float => v.parse::<f64>().is_ok(),
                OptionKind::Str => true,
            };
            if !ok {
                return Err(Error::usage(format!(
                    "pass '{}': option '{k}' expects {}, got '{v}'",
                    self.pass,
                    match spec.kind {
                        OptionKind::Bool => "true or false",
                        OptionKind::Int => "an integer",
                        OptionKind::Float => "a number",
                        OptionKind::Str => "a string",
                    }
                )));
            }
        }
        Ok(())
    }
    pub fn str(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|s| s.as_str())
    }
    pub fn bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.values.get(key) {
            None => Ok(default),
            Some(v) => parse_bool(v)
                .ok_or_else(|| Error::usage(format!("pass '{}': option '{key}' expects true or false, got '{v}'", self.pass))),
        }
    }
    pub fn int(&self, key: &str, default: i64) -> Result<i64> {
        match self.values.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| Error::usage(format!("pass '{}': option '{key}' expects an integer, got '{v}'", self.pass))),
        }
    }
    pub fn float(&self, key: &str, default: f64) -> Result<f64> {
        match self.values.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| Error::usage(format!("pass '{}': option '{key}' expects a number, got '{v}'", self.pass))),
        }
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "true" | "1" | "yes" | "on" | "" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}
