//! A user's conversations, kept sorted by id.
//!
//! Most users are in a few conversations, and the hub keeps this set for
//! every user it knows (on every node of a cluster). A `BTreeSet` spends a
//! whole node, about 270 bytes, on its first element; a sorted vector costs
//! its elements, grown one at a time while it is small. The ids are the
//! hub's shared names ([`Name`]), so an id costs a pointer here.

use super::Name;

/// Conversation ids in order, without duplicates.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct IdSet(Vec<Name>);

/// Below this many elements the vector grows by one at a time.
const EXACT_UP_TO: usize = 4;

impl IdSet {
    fn find(&self, id: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|x| (**x).cmp(id))
    }

    /// Add `id`; whether it was new.
    pub(super) fn insert(&mut self, id: &Name) -> bool {
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
        self.0.insert(at, id.clone());
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

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn iter(&self) -> std::slice::Iter<'_, Name> {
        self.0.iter()
    }

    /// The ids after `after` (all of them without one), in order.
    pub(super) fn after(&self, after: Option<&str>) -> std::slice::Iter<'_, Name> {
        let start = after.map_or(0, |a| self.0.partition_point(|x| &**x <= a));
        self.0[start..].iter()
    }
}

impl<'a> IntoIterator for &'a IdSet {
    type Item = &'a Name;
    type IntoIter = std::slice::Iter<'a, Name>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn strs<'a>(it: impl Iterator<Item = &'a Name>) -> Vec<&'a str> {
        it.map(|x| &**x).collect()
    }

    #[test]
    fn one_element_costs_one_slot() {
        let mut s = IdSet::default();
        assert!(s.insert(&Name::from("b")));
        assert_eq!(s.0.capacity(), 1);
        assert!(!s.insert(&Name::from("b")));
        assert!(s.insert(&Name::from("a")));
        assert_eq!(strs(s.iter()), ["a", "b"]);
        assert_eq!(strs(s.after(Some("a"))), ["b"]);
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
                    prop_assert_eq!(ours.insert(&Name::from(id.as_str())), theirs.insert(id.clone()));
                } else {
                    prop_assert_eq!(ours.remove(&id), theirs.remove(&id));
                }
                prop_assert_eq!(ours.len(), theirs.len());
            }
            prop_assert_eq!(strs(ours.iter()), theirs.iter().map(String::as_str).collect::<Vec<_>>());
            prop_assert_eq!(ours.contains(&probe), theirs.contains(&probe));
            let after = (!probe.is_empty()).then_some(probe.as_str());
            let expect: Vec<&str> = match after {
                Some(a) => theirs.range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)).map(String::as_str).collect(),
                None => theirs.iter().map(String::as_str).collect(),
            };
            prop_assert_eq!(strs(ours.after(after)), expect);
        }
    }
}
