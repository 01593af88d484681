//! Reciprocal rank fusion: several ranked lists become one, each item scored
//! `Σ 1 / (k + rank)` over the lists it appears in (rank from 1). Only ranks
//! count, so BM25 scores and cosines need no common scale.

use std::collections::HashMap;
use std::hash::Hash;

/// The usual constant: damps the head of each list so that agreement between
/// lists outweighs one list's first place.
pub const K: f32 = 60.0;

/// Fuses `lists` (each best first, without repeats) into one list, best
/// first, with fused scores. Ties keep the order of first appearance (list by
/// list), so the result is deterministic.
pub fn rrf<T: Clone + Eq + Hash>(lists: &[&[T]], k: f32) -> Vec<(T, f32)> {
    let mut scores: HashMap<&T, (f32, usize)> = HashMap::new();
    let mut order = 0;
    for list in lists {
        for (rank, item) in list.iter().enumerate() {
            let entry = scores.entry(item).or_insert_with(|| {
                order += 1;
                (0.0, order)
            });
            entry.0 += 1.0 / (k + rank as f32 + 1.0);
        }
    }
    let mut fused: Vec<(&T, f32, usize)> = scores
        .into_iter()
        .map(|(item, (score, first))| (item, score, first))
        .collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)));
    fused
        .into_iter()
        .map(|(item, score, _)| (item.clone(), score))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(lists: &[&[&str]], want: &[&str]) {
        let got: Vec<&str> = rrf(lists, K).into_iter().map(|(x, _)| x).collect();
        assert_eq!(got, want, "lists {lists:?}");
    }

    #[test]
    fn fuses_by_rank() {
        // Found by both beats first in one.
        check(
            &[&["a", "b", "c"], &["d", "b", "e"]],
            &["b", "a", "d", "c", "e"],
        );
        // One list passes through in order.
        check(&[&["x", "y", "z"]], &["x", "y", "z"]);
        check(&[&["x", "y"], &[]], &["x", "y"]);
        check(&[], &[]);
        // Equal scores: first appearance wins, list by list.
        check(&[&["a", "b"], &["b", "a"]], &["a", "b"]);
        check(&[&["p"], &["q"]], &["p", "q"]);
    }

    #[test]
    fn scores_are_sums_of_reciprocal_ranks() {
        let fused = rrf(&[&[1, 2], &[2]], 60.0);
        assert_eq!(fused[0].0, 2);
        assert!((fused[0].1 - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-7);
        assert_eq!(fused[1].0, 1);
        assert!((fused[1].1 - 1.0 / 61.0).abs() < 1e-7);
    }
}
