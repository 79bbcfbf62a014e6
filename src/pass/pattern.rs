//! Layer selection patterns: `conv1|layer3.*|op:Gemm`. Alternatives are separated by
//! `|`; `*` matches any run of characters and `?` one character; `op:X` matches the op
//! type instead of the node name. A leading `!` negates an alternative (exclusion wins).

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pattern {
    include: Vec<(bool, String)>,
    exclude: Vec<(bool, String)>,
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    // iterative wildcard match with backtracking on the last '*'
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (usize::MAX, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = pi;
            mark = si;
            pi += 1;
        } else if star != usize::MAX {
            pi = star + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

impl Pattern {
    pub fn parse(s: &str) -> Pattern {
        let mut p = Pattern::default();
        for alt in s.split('|').map(str::trim).filter(|a| !a.is_empty()) {
            let (neg, alt) = match alt.strip_prefix('!') {
                Some(r) => (true, r),
                None => (false, alt),
            };
            let (is_op, body) = match alt.strip_prefix("op:") {
                Some(r) => (true, r.to_string()),
                None => (false, alt.to_string()),
            };
            if neg {
                p.exclude.push((is_op, body));
            } else {
                p.include.push((is_op, body));
            }
        }
        p
    }
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }
    fn hit(list: &[(bool, String)], name: &str, op: &str) -> bool {
        list.iter().any(|(is_op, g)| glob(g.as_bytes(), if *is_op { op } else { name }.as_bytes()))
    }
    /// Whether a node (name, op type) is selected. An empty include list selects all.
    pub fn matches(&self, name: &str, op: &str) -> bool {
        if Self::hit(&self.exclude, name, op) {
            return false;
        }
        self.include.is_empty() || Self::hit(&self.include, name, op)
    }
    /// Whether any include alternative matches (false for an empty pattern).
    pub fn matches_any(&self, name: &str, op: &str) -> bool {
        !self.include.is_empty() && Self::hit(&self.include, name, op) && !Self::hit(&self.exclude, name, op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn globs_and_ops() {
        let p = Pattern::parse("layer1.*|op:Gemm|!layer1.0.conv2");
        assert!(p.matches("layer1.0.conv1", "Conv"));
        assert!(!p.matches("layer1.0.conv2", "Conv"));
        assert!(p.matches("fc", "Gemm"));
        assert!(!p.matches("layer2.0.conv1", "Conv"));
        assert!(Pattern::parse("").matches("x", "Conv"));
        assert!(!Pattern::parse("").matches_any("x", "Conv"));
        assert!(glob(b"a*b?d", b"axxbcd"));
        assert!(!glob(b"a*b?d", b"axxbd"));
    }
}
