//! The safety rules: what a validator may sign. Everything else in the engine is about
//! liveness; a bug there stalls the chain, a bug here can fork it.
//!
//! Simplex (Chan & Pass, 2023) is safe if every honest validator keeps three rules:
//!
//! 1. **One block per view.** Notarize at most one digest in a view.
//! 2. **Finalize xor nullify.** Never sign both `finalize(v)` and `nullify(v)`. A finalization
//!    of view `v` then means `n - f` validators never nullified `v`, so no nullification of `v`
//!    can form, and every later notarized chain must pass through `v`'s block.
//! 3. **Nothing below the finalized view.** Views at or below the last finalized view are
//!    settled; signing in them is pointless and pruned records could not guard it.
//!
//! The record of what was signed is persisted before any vote leaves the validator (the
//! engine emits `Persist` ahead of the send), so a validator that crashes and restarts never
//! votes against itself.

use crate::types::{Digest, View};
use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::{BTreeMap, BTreeSet};

/// What this validator has signed, since its last finalized view.
#[derive(Clone, Default, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SafetyRecord {
    /// The last finalized view: no vote at or below it is signed again.
    pub floor: View,
    pub notarized: BTreeMap<View, Digest>,
    pub nullified: BTreeSet<View>,
    pub finalized: BTreeMap<View, Digest>,
}

impl SafetyRecord {
    pub fn may_notarize(&self, view: View, digest: &Digest) -> bool {
        view > self.floor
            && !self.nullified.contains(&view)
            && self.notarized.get(&view).is_none_or(|d| d == digest)
    }

    pub fn may_nullify(&self, view: View) -> bool {
        view > self.floor && !self.finalized.contains_key(&view)
    }

    pub fn may_finalize(&self, view: View, digest: &Digest) -> bool {
        view > self.floor
            && !self.nullified.contains(&view)
            && self.finalized.get(&view).is_none_or(|d| d == digest)
    }

    /// Records a notarize vote; false (and no change) if the rules forbid it.
    pub fn notarize(&mut self, view: View, digest: Digest) -> bool {
        self.may_notarize(view, &digest) && {
            self.notarized.insert(view, digest);
            true
        }
    }

    pub fn nullify(&mut self, view: View) -> bool {
        self.may_nullify(view) && {
            self.nullified.insert(view);
            true
        }
    }

    pub fn finalize(&mut self, view: View, digest: Digest) -> bool {
        self.may_finalize(view, &digest) && {
            self.finalized.insert(view, digest);
            true
        }
    }

    /// Forgets views at or below a newly finalized view.
    pub fn raise_floor(&mut self, floor: View) {
        if floor <= self.floor {
            return;
        }
        self.floor = floor;
        self.notarized = self.notarized.split_off(&(floor + 1));
        self.nullified = self.nullified.split_off(&(floor + 1));
        self.finalized = self.finalized.split_off(&(floor + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules() {
        let (a, b) = (Digest([1; 32]), Digest([2; 32]));
        let mut s = SafetyRecord::default();
        assert!(s.notarize(5, a));
        assert!(s.notarize(5, a), "signing the same vote again is fine");
        assert!(!s.notarize(5, b), "one block per view");
        assert!(s.finalize(5, a));
        assert!(!s.nullify(5), "finalize xor nullify");
        assert!(s.nullify(6));
        assert!(!s.finalize(6, b), "finalize xor nullify");
        assert!(!s.notarize(6, b), "no notarize after timing out");
        s.raise_floor(6);
        assert!(
            !s.notarize(6, b) && !s.nullify(4),
            "nothing at or below the floor"
        );
        assert!(s.notarized.is_empty() && s.nullified.is_empty());
        assert!(s.notarize(7, b));
    }
}
