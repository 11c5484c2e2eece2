//! Layered reads and writes over a read-only base.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

/// State writes: `Some(value)` sets a key, `None` removes it. Ordered, so applying them is
/// deterministic.
pub type Changes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A key and its value, as scans return them.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A key range in `BTreeMap::range` / redb form.
pub(crate) type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// A failure of the storage underneath. Never a transaction's fault: the node stops the block.
#[derive(Debug, Clone, thiserror::Error)]
#[error("storage fault: {0}")]
pub struct ReadError(pub String);

/// What a metered scan returned, and how many entries it looked at to find them: every
/// entry of every layer and of the base it stepped over, deletions and overwritten values
/// included. That count is what the scan cost.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    pub entries: Vec<Entry>,
    pub visited: u64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ScanError {
    /// The scan would have looked at more entries than it may pay for; it stopped there.
    #[error("a scan would visit more than the {0} entries it can pay for")]
    OverBudget(u64),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// Read access to a state.
pub trait StateRead: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError>;

    /// Up to `limit` entries whose key starts with `prefix`, in key order (reversed if
    /// `descending`), strictly after `start_after` in that order when it is given.
    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
        descending: bool,
    ) -> Result<Vec<Entry>, ReadError>;
}

/// An empty state, for tests and the genesis of an in-memory chain.
pub struct EmptyState;

impl StateRead for EmptyState {
    fn get(&self, _: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        Ok(None)
    }
    fn scan(&self, _: &[u8], _: Option<&[u8]>, _: usize, _: bool) -> Result<Vec<Entry>, ReadError> {
        Ok(Vec::new())
    }
}

/// The key range `[prefix, next(prefix))` restricted to keys after `start_after` in scan
/// order; `None` when that range is empty (a `BTreeMap` range with crossed bounds panics).
pub(crate) fn scan_bounds(
    prefix: &[u8],
    start_after: Option<&[u8]>,
    descending: bool,
) -> Option<KeyRange> {
    let successor = prefix_successor(prefix);
    let mut lower = Bound::Included(prefix.to_vec());
    let mut upper = match &successor {
        Some(p) => Bound::Excluded(p.clone()),
        None => Bound::Unbounded,
    };
    match (start_after, descending) {
        (None, _) => {}
        (Some(a), false) => {
            if a >= prefix {
                if successor.as_deref().is_some_and(|s| a >= s) {
                    return None;
                }
                lower = Bound::Excluded(a.to_vec());
            }
        }
        (Some(a), true) => {
            if a <= prefix {
                return None;
            }
            if successor.as_deref().is_none_or(|s| a < s) {
                upper = Bound::Excluded(a.to_vec());
            }
        }
    }
    Some((lower, upper))
}

/// The smallest key greater than every key starting with `prefix`, if any.
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut p = prefix.to_vec();
    while let Some(last) = p.pop() {
        if last < 0xff {
            p.push(last + 1);
            return Some(p);
        }
    }
    None
}

/// A base state with a stack of write layers on top.
///
/// Execution pushes a layer per transaction and per contract call; a layer is either merged
/// into the one below ([`StateStack::commit_layer`]) or dropped ([`StateStack::discard_layer`]).
/// The stack owns everything it refers to, so it can move into a wasmtime `Store` for the
/// duration of a call.
pub struct StateStack {
    base: Arc<dyn StateRead>,
    layers: Vec<Changes>,
}

/// An empty stack over an empty state; a placeholder while the real one is lent out.
impl Default for StateStack {
    fn default() -> Self {
        StateStack::new(Arc::new(EmptyState))
    }
}

impl StateStack {
    /// A stack with one (bottom) layer over `base`.
    pub fn new(base: Arc<dyn StateRead>) -> StateStack {
        StateStack {
            base,
            layers: vec![Changes::new()],
        }
    }

    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    pub fn push_layer(&mut self) {
        self.layers.push(Changes::new());
    }

    /// Merges the top layer into the one below it.
    pub fn commit_layer(&mut self) {
        if self.layers.len() < 2 {
            return;
        }
        let top = self.layers.pop().unwrap_or_default();
        if let Some(below) = self.layers.last_mut() {
            below.extend(top);
        }
    }

    /// Drops the top layer's writes.
    pub fn discard_layer(&mut self) {
        if self.layers.len() > 1 {
            self.layers.pop();
        } else if let Some(only) = self.layers.last_mut() {
            only.clear();
        }
    }

    pub fn set(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.top().insert(key, Some(value));
    }

    pub fn remove(&mut self, key: Vec<u8>) {
        self.top().insert(key, None);
    }

    fn top(&mut self) -> &mut Changes {
        if self.layers.is_empty() {
            self.layers.push(Changes::new());
        }
        let last = self.layers.len() - 1;
        &mut self.layers[last]
    }

    /// All writes of all layers, flattened. The stack is left with one empty layer.
    pub fn take_changes(&mut self) -> Changes {
        while self.layers.len() > 1 {
            self.commit_layer();
        }
        std::mem::take(self.top())
    }

    /// [`StateRead::scan`], metered: a lazy merge of the layers' writes and the base, from the
    /// start of the range, that stops as soon as `limit` live entries are found, counting each
    /// entry it steps over, and fails once that count would pass `max_visits`. Work is
    /// proportional to what is visited (so paid for), never to the pending writes in the range
    /// beyond the stopping point or outside it.
    pub fn scan_metered(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
        descending: bool,
        max_visits: u64,
    ) -> Result<Scan, ScanError> {
        let mut scan = Scan::default();
        if limit == 0 {
            return Ok(scan);
        }
        let Some(range) = scan_bounds(prefix, start_after, descending) else {
            return Ok(scan);
        };
        let visit = |n: u64, visited: &mut u64| {
            *visited = visited.saturating_add(n);
            if *visited > max_visits {
                Err(ScanError::OverBudget(max_visits))
            } else {
                Ok(())
            }
        };
        type LayerIter<'a> =
            std::iter::Peekable<Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)> + 'a>>;
        // Topmost layer first: on equal keys, the first holder's value wins.
        let mut layers: Vec<LayerIter<'_>> = self
            .layers
            .iter()
            .rev()
            .map(|l| {
                let r = l.range(range.clone());
                let it: Box<dyn Iterator<Item = _>> = if descending {
                    Box::new(r.rev())
                } else {
                    Box::new(r)
                };
                it.peekable()
            })
            .collect();
        let first = |a: &[u8], b: &[u8]| if descending { a > b } else { a < b };
        let mut cursor: Option<Vec<u8>> = start_after.map(|s| s.to_vec());
        let mut base_page: std::collections::VecDeque<Entry> = Default::default();
        let mut base_done = false;
        while scan.entries.len() < limit {
            if base_page.is_empty() && !base_done {
                let want = limit - scan.entries.len();
                let page = self
                    .base
                    .scan(prefix, cursor.as_deref(), want, descending)?;
                visit(page.len() as u64, &mut scan.visited)?;
                base_done = page.len() < want;
                if let Some((k, _)) = page.last() {
                    cursor = Some(k.clone());
                }
                base_page.extend(page);
            }
            let mut next: Option<&Vec<u8>> = None;
            for it in layers.iter_mut() {
                if let Some(&(k, _)) = it.peek()
                    && next.is_none_or(|n| first(k, n))
                {
                    next = Some(k);
                }
            }
            let from_layers = match (next, base_page.front()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(k), Some((bk, _))) => k == bk || first(k, bk),
            };
            if !from_layers {
                if let Some(entry) = base_page.pop_front() {
                    scan.entries.push(entry);
                }
                continue;
            }
            let Some(key) = next else { break };
            let mut value: Option<&Option<Vec<u8>>> = None;
            for it in layers.iter_mut() {
                if it.peek().is_some_and(|&(k, _)| k == key)
                    && let Some((_, v)) = it.next()
                {
                    visit(1, &mut scan.visited)?;
                    value.get_or_insert(v);
                }
            }
            if base_page.front().is_some_and(|(bk, _)| bk == key) {
                base_page.pop_front();
            }
            if let Some(Some(v)) = value {
                scan.entries.push((key.clone(), v.clone()));
            }
        }
        Ok(scan)
    }

    /// The writes so far, without consuming them.
    pub fn pending_changes(&self) -> Changes {
        let mut all = Changes::new();
        for l in &self.layers {
            all.extend(l.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        all
    }
}

impl StateRead for StateStack {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        for layer in self.layers.iter().rev() {
            if let Some(v) = layer.get(key) {
                return Ok(v.clone());
            }
        }
        self.base.get(key)
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
        descending: bool,
    ) -> Result<Vec<Entry>, ReadError> {
        match self.scan_metered(prefix, start_after, limit, descending, u64::MAX) {
            Ok(scan) => Ok(scan.entries),
            Err(ScanError::Read(e)) => Err(e),
            Err(e @ ScanError::OverBudget(_)) => Err(ReadError(e.to_string())),
        }
    }
}

/// A plain ordered map as a state, for tests and in-memory bases.
impl StateRead for BTreeMap<Vec<u8>, Vec<u8>> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        Ok(BTreeMap::get(self, key).cloned())
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
        descending: bool,
    ) -> Result<Vec<Entry>, ReadError> {
        let Some(bounds) = scan_bounds(prefix, start_after, descending) else {
            return Ok(Vec::new());
        };
        let range = self.range(bounds);
        let it: Box<dyn Iterator<Item = (&Vec<u8>, &Vec<u8>)>> = if descending {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        Ok(it
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn model_scan(
        m: &BTreeMap<Vec<u8>, Vec<u8>>,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        desc: bool,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut all: Vec<_> = m
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| match after {
                None => true,
                Some(a) => {
                    if desc {
                        k.as_slice() < a
                    } else {
                        k.as_slice() > a
                    }
                }
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if desc {
            all.reverse();
        }
        all.truncate(limit);
        all
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(0u8..4, 0..4)
    }

    proptest! {
        /// Reads and scans through layers equal those of the flattened map, for any writes,
        /// commits and discards.
        #[test]
        fn stack_matches_a_flat_model(
            base in proptest::collection::btree_map(key(), key(), 0..20),
            ops in proptest::collection::vec((0u8..5, key(), key()), 0..40),
            prefix in proptest::collection::vec(0u8..4, 0..2),
            after in proptest::option::of(key()),
            limit in 0usize..10,
            desc in any::<bool>(),
        ) {
            let mut stack = StateStack::new(Arc::new(base.clone()));
            // Model: a stack of full maps.
            let mut models = vec![base.clone()];
            for (op, k, v) in ops {
                match op {
                    0 | 1 => { stack.set(k.clone(), v.clone()); models.last_mut().unwrap().insert(k, v); }
                    2 => { stack.remove(k.clone()); models.last_mut().unwrap().remove(&k); }
                    3 => { stack.push_layer(); let top = models.last().unwrap().clone(); models.push(top); }
                    _ => {
                        if models.len() > 1 {
                            if v.first().copied().unwrap_or(0) % 2 == 0 {
                                stack.commit_layer(); let top = models.pop().unwrap(); *models.last_mut().unwrap() = top;
                            } else {
                                stack.discard_layer(); models.pop();
                            }
                        }
                    }
                }
            }
            let model = models.last().unwrap();
            for k in model.keys() {
                prop_assert_eq!(stack.get(k).unwrap(), Some(model[k].clone()));
            }
            let got = stack.scan(&prefix, after.as_deref(), limit, desc).unwrap();
            prop_assert_eq!(got, model_scan(model, &prefix, after.as_deref(), limit, desc));
        }
    }

    fn stack_over(base: BTreeMap<Vec<u8>, Vec<u8>>) -> StateStack {
        StateStack::new(Arc::new(base))
    }

    /// The cost of a scan is the entries it steps over: deletions and overwritten values
    /// pending in the layers count, and a budget smaller than that stops it.
    #[test]
    fn a_scan_pays_for_every_entry_it_visits() {
        let base: BTreeMap<Vec<u8>, Vec<u8>> = (0..100u32)
            .map(|i| (format!("p{i:05}").into_bytes(), b"v".to_vec()))
            .collect();
        let mut stack = stack_over(base);
        // Delete the base's 100 entries, then pile 1,000 deleted keys on a layer above.
        for i in 0..100u32 {
            stack.remove(format!("p{i:05}").into_bytes());
        }
        stack.push_layer();
        for i in 100..1_100u32 {
            stack.set(format!("p{i:05}").into_bytes(), b"x".to_vec());
            stack.remove(format!("p{i:05}").into_bytes());
        }
        stack.set(b"p99999".to_vec(), b"live".to_vec());
        let scan = stack.scan_metered(b"p", None, 1, false, u64::MAX).unwrap();
        assert_eq!(scan.entries, vec![(b"p99999".to_vec(), b"live".to_vec())]);
        assert!(scan.visited >= 1_201, "visited {}", scan.visited);
        assert!(matches!(
            stack.scan_metered(b"p", None, 1, false, 500),
            Err(ScanError::OverBudget(500))
        ));
    }

    /// A scan that stops after `limit` entries costs the same however many pending writes lie
    /// beyond where it stopped or outside its prefix.
    #[test]
    fn a_scans_cost_does_not_grow_with_writes_it_never_reaches() {
        let cost = |pending: u32| {
            let mut stack = stack_over(BTreeMap::new());
            for i in 0..pending {
                stack.set(format!("p{i:07}").into_bytes(), b"v".to_vec());
                stack.set(format!("q{i:07}").into_bytes(), b"v".to_vec());
            }
            stack.push_layer();
            stack.set(b"p".to_vec(), b"first".to_vec());
            stack.scan_metered(b"p", None, 1, false, u64::MAX).unwrap()
        };
        let (few, many) = (cost(10), cost(100_000));
        assert_eq!(few.entries, many.entries);
        assert_eq!(few.visited, many.visited);
        assert!(many.visited <= 2, "visited {}", many.visited);
    }
}
