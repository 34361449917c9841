//! Glob matching with the semantics of Redis `MATCH` / `KEYS` / `PSUBSCRIBE`
//! (`*`, `?`, `[abc]`, `[^a-z]`, `\` escapes), so that a pattern evicts in
//! process exactly the keys it deletes in Redis.

/// Returns whether `text` matches `pattern`, byte for byte as Redis does.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative matcher with single-star backtracking: linear in practice and
    // free of the exponential blow-up a naive recursive `*` would have.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, t));
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((hit, next)) = match_class(pattern, p, text[t])
                        && hit
                    {
                        p = next;
                        t += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == text[t] {
                        p += 2;
                        t += 1;
                        continue;
                    }
                }
                c => {
                    if c == text[t] {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches one byte against the class starting at `pattern[open] == b'['`.
/// Returns whether it matched and the index just past the class. An unclosed
/// class runs to the end of the pattern, as in Redis.
fn match_class(pattern: &[u8], open: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = open + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut hit = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            hit |= pattern[i + 1] == c;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' {
            let (lo, hi) = (
                pattern[i].min(pattern[i + 2]),
                pattern[i].max(pattern[i + 2]),
            );
            hit |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            hit |= pattern[i] == c;
            i += 1;
        }
    }
    let next = if i < pattern.len() { i + 1 } else { i };
    Some((hit != negate, next))
}

#[cfg(test)]
mod tests {
    use super::matches;

    fn m(p: &str, t: &str) -> bool {
        matches(p.as_bytes(), t.as_bytes())
    }

    #[test]
    fn literals_and_wildcards() {
        assert!(m("item:1", "item:1"));
        assert!(!m("item:1", "item:10"));
        assert!(m("item:*", "item:"));
        assert!(m("item:*", "item:abc"));
        assert!(!m("item:*", "items:abc"));
        assert!(m("item:?", "item:7"));
        assert!(!m("item:?", "item:77"));
        assert!(m("*:1*", "item:123"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("**", ""));
    }

    #[test]
    fn classes_ranges_negation_and_escapes() {
        assert!(m("item:[12]", "item:2"));
        assert!(!m("item:[12]", "item:3"));
        assert!(m("item:[0-9]", "item:5"));
        assert!(
            m("item:[9-0]", "item:5"),
            "reversed ranges work as in Redis"
        );
        assert!(!m("item:[^0-9]", "item:5"));
        assert!(m("item:[^0-9]", "item:x"));
        assert!(m("item:\\*", "item:*"));
        assert!(!m("item:\\*", "item:1"));
        assert!(m("item:[\\]]", "item:]"));
        // As in Redis, `-` followed by two more bytes is always a range, even `]`.
        assert!(m("[a-]", "^"), "range from ']' to 'a'");
        assert!(!m("[a-]", "b"));
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let text = "a".repeat(10_000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!m(&pattern, &text));
    }
}
