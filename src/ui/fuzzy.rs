//! Fuzzy matching for the quick switcher: the query's characters must appear
//! in order (case-insensitive); contiguous runs and word starts score higher.

/// A score for `candidate` against `query`, or `None` when it does not
/// match. Higher is better; an empty query matches everything with 0.
pub fn score(query: &str, candidate: &str) -> Option<i64> {
    let query: Vec<char> = query.chars().flat_map(char::to_lowercase).collect();
    if query.is_empty() {
        return Some(0);
    }
    let cand: Vec<char> = candidate.chars().flat_map(char::to_lowercase).collect();
    let mut qi = 0;
    let mut score = 0i64;
    let mut prev_match: Option<usize> = None;
    for (ci, c) in cand.iter().enumerate() {
        if qi < query.len() && *c == query[qi] {
            score += 1;
            if prev_match.is_some_and(|p| p + 1 == ci) {
                score += 5;
            }
            if ci == 0 {
                score += 15;
            } else if !cand[ci - 1].is_alphanumeric() {
                score += 8;
            }
            prev_match = Some(ci);
            qi += 1;
        }
    }
    (qi == query.len()).then(|| score * 100 - cand.len() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsequence_match_and_ranking() {
        assert!(score("gnl", "general").is_some());
        assert!(score("xyz", "general").is_none());
        assert!(score("GEN", "general").is_some());
        assert!(score("gen", "general") > score("gen", "a-good-end-note"));
        assert!(score("bo", "bob") > score("bo", "rainbow-ops"));
        assert_eq!(score("", "anything"), Some(0));
        assert!(score("世", "世界").is_some());
    }
}
