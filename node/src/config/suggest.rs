//! "Did you mean …?" for unknown keys and environment variables.

/// The candidate most likely meant by `unknown`, if one is close enough:
/// 1. a candidate whose words (split on `.` and `_`) contain all of `unknown`'s,
///    or the other way round (`raft.heartbeat_ms` → `raft.heartbeat_interval_ms`);
/// 2. a candidate that ends in the same last segment (`heartbeat_interval_ms` at
///    the top level → `raft.heartbeat_interval_ms`);
/// 3. a candidate that starts with `unknown` or the other way round (`adm` → `admin`);
/// 4. a candidate within a small edit distance (typos).
///
/// Ties go to the smallest edit distance, then to the first candidate.
pub(crate) fn suggest<'a>(unknown: &str, candidates: impl Iterator<Item = &'a str> + Clone) -> Option<&'a str> {
    let unknown_lower = unknown.to_ascii_lowercase();
    let words = |s: &str| -> Vec<String> {
        s.to_ascii_lowercase().split(['.', '_']).filter(|w| !w.is_empty()).map(str::to_string).collect()
    };
    let unknown_words = words(unknown);
    let last = |s: &str| s.rsplit('.').next().unwrap_or(s).to_ascii_lowercase();
    let closest = |filter: &dyn Fn(&str) -> bool| {
        candidates.clone().filter(|c| filter(c)).min_by_key(|c| distance(&unknown_lower, &c.to_ascii_lowercase()))
    };
    let by_words = closest(&|c: &str| {
        let candidate_words = words(c);
        let subset = |a: &[String], b: &[String]| a.iter().all(|w| b.contains(w));
        unknown_words.len() >= 2
            && (subset(&unknown_words, &candidate_words) || subset(&candidate_words, &unknown_words))
    });
    if by_words.is_some() {
        return by_words;
    }
    let by_prefix = closest(&|c: &str| {
        let c = c.to_ascii_lowercase();
        unknown_lower.len() >= 2 && (c.starts_with(&unknown_lower) || unknown_lower.starts_with(&c))
    });
    if by_prefix.is_some() {
        return by_prefix;
    }
    let by_last = closest(&|c: &str| c.contains('.') && last(c) == last(unknown));
    if by_last.is_some() {
        return by_last;
    }
    let limit = (unknown.len() / 4).max(2);
    closest(&|c: &str| distance(&unknown_lower, &c.to_ascii_lowercase()) <= limit)
}

/// Levenshtein distance over bytes.
fn distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb)).min(above + 1).min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: [&str; 5] =
        ["raft.heartbeat_interval_ms", "raft.election_timeout_ms", "raft.pre_vote", "member_id", "kv.max_txn_ops"];

    #[test]
    fn suggestions() {
        let s = |u: &str| suggest(u, KEYS.iter().copied());
        assert_eq!(s("raft.heartbeat_ms"), Some("raft.heartbeat_interval_ms"));
        assert_eq!(s("heartbeat_interval_ms"), Some("raft.heartbeat_interval_ms"));
        assert_eq!(s("raft.prevote"), Some("raft.pre_vote"));
        assert_eq!(s("memberid"), Some("member_id"));
        assert_eq!(s("raft.election_timeout"), Some("raft.election_timeout_ms"));
        assert_eq!(s("storage.engine"), None);
        assert_eq!(s("x"), None);
    }

    #[test]
    fn edit_distance() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("same", "same"), 0);
    }
}
