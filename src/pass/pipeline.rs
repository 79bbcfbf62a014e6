//! Pipeline strings: `fold-bn,prune-2of4{min-channels=64,permute=true},insert-qdq`.

use super::options::PassOptions;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct PipelineEntry {
    pub name: String,
    pub options: PassOptions,
}

/// Parses a pipeline string. `none` (or an empty string) is the empty pipeline.
pub fn parse_pipeline(s: &str) -> Result<Vec<PipelineEntry>> {
    let s = s.trim();
    if s.is_empty() || s == "none" {
        return Ok(vec![]);
    }
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut cur = String::new();
    let mut parts = Vec::new();
    for c in s.chars() {
        match c {
            '{' => {
                depth += 1;
                cur.push(c)
            }
            '}' => {
                if depth == 0 {
                    return Err(Error::usage(format!("pipeline '{s}': unbalanced '}}'")));
                }
                depth -= 1;
                cur.push(c)
            }
            ',' if depth == 0 => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if depth != 0 {
        return Err(Error::usage(format!("pipeline '{s}': missing '}}'")));
    }
    parts.push(cur);
    for p in parts {
        let p = p.trim();
        if p.is_empty() {
            return Err(Error::usage(format!("pipeline '{s}': empty pass name (stray comma?)")));
        }
        let (name, opts) = match p.find('{') {
            Some(i) => {
                if !p.ends_with('}') {
                    return Err(Error::usage(format!("pipeline entry '{p}': text after '}}'")));
                }
                (p[..i].trim(), &p[i + 1..p.len() - 1])
            }
            None => (p, ""),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == ':') {
            return Err(Error::usage(format!("pipeline entry '{p}': bad pass name '{name}'")));
        }
        let mut options = PassOptions { pass: name.to_string(), ..Default::default() };
        for kv in opts.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            let (k, v) = match kv.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None => (kv, "true"),
            };
            if options.values.insert(k.to_string(), v.to_string()).is_some() {
                return Err(Error::usage(format!("pass '{name}': option '{k}' given twice")));
            }
        }
        out.push(PipelineEntry { name: name.to_string(), options });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parses_options_and_none() {
        let p = parse_pipeline("fold-bn, prune-2of4{min-channels=64,permute}, insert-qdq").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[1].options.str("min-channels"), Some("64"));
        assert_eq!(p[1].options.str("permute"), Some("true"));
        assert!(parse_pipeline("none").unwrap().is_empty());
        assert!(parse_pipeline("a{b=1").is_err());
        assert!(parse_pipeline("a,,b").is_err());
        assert!(parse_pipeline("a{x=1,x=2}").is_err());
    }
}
