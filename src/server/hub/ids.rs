//! A user's conversations, kept sorted by id.
//!
//! Most users are in a few conversations, and the hub keeps this set for
//! every user it knows (on every node of a cluster). A `BTreeSet` spends a
//! whole node, about 270 bytes, on its first element; a sorted vector costs
//! its elements, grown one at a time while it is small.

/// Conversation ids in order, without duplicates.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct IdSet(Vec<String>);

/// Below this many elements the vector grows by one at a time.
const EXACT_UP_TO: usize = 4;

impl IdSet {
    fn find(&self, id: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|x| x.as_str().cmp(id))
    }

    /// Add `id`; whether it was new.
    pub(super) fn insert(&mut self, id: &str) -> bool {
        let Err(at) = self.find(id) else {
            return false;
        };
        if self.0.len() == self.0.capacity() {
            if self.0.len() < EXACT_UP_TO {
                self.0.reserve_exact(1);
            } else {
                self.0.reserve(1);
            }
        }
        self.0.insert(at, id.to_string());
        true
    }

    /// Take `id` out; whether it was there.
    pub(super) fn remove(&mut self, id: &str) -> bool {
        let Ok(at) = self.find(id) else {
            return false;
        };
        self.0.remove(at);
        if self.0.capacity() > 2 * self.0.len() + EXACT_UP_TO {
            self.0.shrink_to_fit();
        }
        true
    }

    pub(super) fn contains(&self, id: &str) -> bool {
        self.find(id).is_ok()
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn iter(&self) -> std::slice::Iter<'_, String> {
        self.0.iter()
    }

    /// The ids after `after` (all of them without one), in order.
    pub(super) fn after(&self, after: Option<&str>) -> std::slice::Iter<'_, String> {
        let start = after.map_or(0, |a| self.0.partition_point(|x| x.as_str() <= a));
        self.0[start..].iter()
    }
}

impl<'a> IntoIterator for &'a IdSet {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn one_element_costs_one_slot() {
        let mut s = IdSet::default();
        assert!(s.insert("b"));
        assert_eq!(s.0.capacity(), 1);
        assert!(!s.insert("b"));
        assert!(s.insert("a"));
        assert_eq!(s.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(s.after(Some("a")).collect::<Vec<_>>(), ["b"]);
        assert_eq!(s.after(Some("0")).count(), 2);
        assert_eq!(s.after(Some("c")).count(), 0);
    }

    proptest! {
        /// The same answers as a `BTreeSet` for any run of inserts and
        /// removals.
        #[test]
        fn behaves_like_a_btreeset(
            ops in proptest::collection::vec((any::<bool>(), "[a-e]{1,2}"), 0..200),
            probe in "[a-e]{0,2}",
        ) {
            let mut ours = IdSet::default();
            let mut theirs = BTreeSet::new();
            for (add, id) in ops {
                if add {
                    prop_assert_eq!(ours.insert(&id), theirs.insert(id.clone()));
                } else {
                    prop_assert_eq!(ours.remove(&id), theirs.remove(&id));
                }
                prop_assert_eq!(ours.len(), theirs.len());
            }
            prop_assert_eq!(ours.iter().collect::<Vec<_>>(), theirs.iter().collect::<Vec<_>>());
            prop_assert_eq!(ours.contains(&probe), theirs.contains(&probe));
            let after = (!probe.is_empty()).then_some(probe.as_str());
            let expect: Vec<&String> = match after {
                Some(a) => theirs.range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)).collect(),
                None => theirs.iter().collect(),
            };
            prop_assert_eq!(ours.after(after).collect::<Vec<_>>(), expect);
        }
    }
}
