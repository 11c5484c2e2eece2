//! Typed storage over the contract's key-value store.
//!
//! Values are encoded with postcard (compact, deterministic). Map keys are encoded so that
//! byte order equals key order: integers big-endian (signed ones with the sign bit flipped),
//! strings and byte strings escaped and terminated, so tuples of them sort component-wise.

use crate::backend;
use crate::types::{Address, Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

/// One value under a fixed key.
pub struct Item<T> {
    key: &'static str,
    _t: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> Item<T> {
    pub const fn new(key: &'static str) -> Item<T> {
        Item {
            key,
            _t: PhantomData,
        }
    }

    pub fn may_load(&self) -> Result<Option<T>> {
        match backend::storage_get(self.key.as_bytes()) {
            Some(b) => Ok(Some(postcard::from_bytes(&b)?)),
            None => Ok(None),
        }
    }

    /// Loads the value, failing if it was never saved.
    pub fn load(&self) -> Result<T> {
        self.may_load()?
            .ok_or_else(|| Error::new(format!("{} is not set", self.key)))
    }

    pub fn save(&self, value: &T) -> Result<()> {
        store(self.key.as_bytes(), value)?;
        Ok(())
    }

    pub fn remove(&self) {
        backend::storage_remove(self.key.as_bytes());
    }

    /// Loads, changes and saves.
    pub fn update(&self, f: impl FnOnce(Option<T>) -> Result<T>) -> Result<T> {
        let new = f(self.may_load()?)?;
        self.save(&new)?;
        Ok(new)
    }
}

/// A key of a [`Map`]: encodes to bytes whose order is the key's order.
pub trait Key: Sized {
    fn encode_key(&self, out: &mut Vec<u8>);
    /// Decodes from the front of `input`, advancing it.
    fn decode_key(input: &mut &[u8]) -> Option<Self>;

    fn key_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_key(&mut v);
        v
    }
}

macro_rules! unsigned_key {
    ($($t:ty),*) => {$(
        impl Key for $t {
            fn encode_key(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
            fn decode_key(input: &mut &[u8]) -> Option<Self> {
                const N: usize = std::mem::size_of::<$t>();
                let (head, rest) = input.split_at_checked(N)?;
                *input = rest;
                Some(<$t>::from_be_bytes(head.try_into().ok()?))
            }
        }
    )*};
}
unsigned_key!(u8, u16, u32, u64, u128);

macro_rules! signed_key {
    ($($t:ty => $u:ty),*) => {$(
        impl Key for $t {
            fn encode_key(&self, out: &mut Vec<u8>) {
                // Flipping the sign bit makes two's complement sort as unsigned.
                ((*self as $u) ^ (1 << (<$u>::BITS - 1))).encode_key(out);
            }
            fn decode_key(input: &mut &[u8]) -> Option<Self> {
                <$u>::decode_key(input).map(|u| (u ^ (1 << (<$u>::BITS - 1))) as $t)
            }
        }
    )*};
}
signed_key!(i32 => u32, i64 => u64);

/// Byte strings: 0x00 escaped as 0x00 0xff, terminated by 0x00 0x00. Order-preserving, and
/// self-delimiting so it can be followed by more components.
impl Key for Vec<u8> {
    fn encode_key(&self, out: &mut Vec<u8>) {
        for &b in self {
            out.push(b);
            if b == 0 {
                out.push(0xff);
            }
        }
        out.extend_from_slice(&[0, 0]);
    }
    fn decode_key(input: &mut &[u8]) -> Option<Self> {
        let mut v = Vec::new();
        let mut i = 0;
        loop {
            let b = *input.get(i)?;
            if b == 0 {
                match *input.get(i + 1)? {
                    0 => {
                        *input = &input[i + 2..];
                        return Some(v);
                    }
                    0xff => {
                        v.push(0);
                        i += 2;
                    }
                    _ => return None,
                }
            } else {
                v.push(b);
                i += 1;
            }
        }
    }
}

impl Key for String {
    fn encode_key(&self, out: &mut Vec<u8>) {
        self.as_bytes().to_vec().encode_key(out)
    }
    fn decode_key(input: &mut &[u8]) -> Option<Self> {
        String::from_utf8(Vec::<u8>::decode_key(input)?).ok()
    }
}

impl Key for Address {
    fn encode_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
    fn decode_key(input: &mut &[u8]) -> Option<Self> {
        let (head, rest) = input.split_at_checked(32)?;
        *input = rest;
        Address::from_slice(head)
    }
}

impl<A: Key, B: Key> Key for (A, B) {
    fn encode_key(&self, out: &mut Vec<u8>) {
        self.0.encode_key(out);
        self.1.encode_key(out);
    }
    fn decode_key(input: &mut &[u8]) -> Option<Self> {
        Some((A::decode_key(input)?, B::decode_key(input)?))
    }
}

impl<A: Key, B: Key, C: Key> Key for (A, B, C) {
    fn encode_key(&self, out: &mut Vec<u8>) {
        self.0.encode_key(out);
        self.1.encode_key(out);
        self.2.encode_key(out);
    }
    fn decode_key(input: &mut &[u8]) -> Option<Self> {
        Some((
            A::decode_key(input)?,
            B::decode_key(input)?,
            C::decode_key(input)?,
        ))
    }
}

/// Writes `value`'s encoding at `key`, encoded into a buffer kept between writes: a call that
/// saves many large entries (a cleared period's pages) grows one buffer once rather than a new
/// one, doubling, for each. The host copies the bytes, so the buffer is free again after.
fn store<T: Serialize + ?Sized>(key: &[u8], value: &T) -> Result<()> {
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUFFER.with(|b| {
        let mut buffer = std::mem::take(&mut *b.borrow_mut());
        buffer.clear();
        let buffer = postcard::to_extend(value, buffer)?;
        backend::storage_set(key, &buffer);
        *b.borrow_mut() = buffer;
        Ok(())
    })
}

/// Iteration order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Ascending,
    Descending,
}

/// Many values under a namespace, keyed by `K`, iterable in key order.
pub struct Map<K, V> {
    namespace: &'static str,
    _t: PhantomData<fn() -> (K, V)>,
}

/// Entries fetched from the host per scan call while iterating.
const PAGE: u32 = 64;

impl<K: Key, V: Serialize + DeserializeOwned> Map<K, V> {
    pub const fn new(namespace: &'static str) -> Map<K, V> {
        Map {
            namespace,
            _t: PhantomData,
        }
    }

    /// The namespace prefix: its bytes, escaped and terminated like a key component, so no
    /// namespace is a prefix of another.
    fn prefix(&self) -> Vec<u8> {
        self.namespace.as_bytes().to_vec().key_bytes()
    }

    fn full_key(&self, key: &K) -> Vec<u8> {
        let mut k = self.prefix();
        key.encode_key(&mut k);
        k
    }

    pub fn may_load(&self, key: &K) -> Result<Option<V>> {
        match backend::storage_get(&self.full_key(key)) {
            Some(b) => Ok(Some(postcard::from_bytes(&b)?)),
            None => Ok(None),
        }
    }

    pub fn load(&self, key: &K) -> Result<V> {
        self.may_load(key)?
            .ok_or_else(|| Error::new(format!("{}: no such entry", self.namespace)))
    }

    pub fn has(&self, key: &K) -> bool {
        backend::storage_get(&self.full_key(key)).is_some()
    }

    pub fn save(&self, key: &K, value: &V) -> Result<()> {
        store(&self.full_key(key), value)?;
        Ok(())
    }

    pub fn remove(&self, key: &K) {
        backend::storage_remove(&self.full_key(key));
    }

    pub fn update(&self, key: &K, f: impl FnOnce(Option<V>) -> Result<V>) -> Result<V> {
        let new = f(self.may_load(key)?)?;
        self.save(key, &new)?;
        Ok(new)
    }

    /// All entries in `order`, fetched lazily in pages.
    pub fn iter(&self, order: Order) -> MapIter<K, V> {
        self.range(None, order)
    }

    /// Entries strictly after `start_after` in `order`.
    pub fn range(&self, start_after: Option<&K>, order: Order) -> MapIter<K, V> {
        let prefix = self.prefix();
        MapIter {
            cursor: start_after.map(|k| self.full_key(k)),
            strip: prefix.len(),
            scan_prefix: prefix,
            order,
            page: Vec::new(),
            at: 0,
            done: false,
            _t: PhantomData,
        }
    }

    /// Entries whose key starts with the component(s) `first`, e.g. all `(period, _)` of a
    /// map keyed by `(u64, Address)`.
    pub fn prefixed<P: Key>(&self, first: &P, order: Order) -> MapIter<K, V> {
        let strip = self.prefix().len();
        let mut scan_prefix = self.prefix();
        first.encode_key(&mut scan_prefix);
        MapIter {
            cursor: None,
            strip,
            scan_prefix,
            order,
            page: Vec::new(),
            at: 0,
            done: false,
            _t: PhantomData,
        }
    }
}

impl<K: Key, T: Serialize + DeserializeOwned> Map<K, Vec<T>> {
    /// Saves `items` as the `Vec<T>` at `key` (the same bytes [`Map::save`] writes for a
    /// vector of them), without first copying them into one.
    pub fn save_slice(&self, key: &K, items: &[T]) -> Result<()> {
        store(&self.full_key(key), items)?;
        Ok(())
    }
}

/// Iterator over a [`Map`]; yields an error if stored bytes do not decode.
pub struct MapIter<K, V> {
    scan_prefix: Vec<u8>,
    strip: usize,
    /// The last key of the page fetched last: the next page starts after it.
    cursor: Option<Vec<u8>>,
    order: Order,
    /// The current page in the host's packed layout (see [`packed_part`]), read up to `at`.
    /// One buffer per page, not two per entry: clearing a period reads thousands of orders.
    page: Vec<u8>,
    at: usize,
    /// No page follows the current one.
    done: bool,
    _t: PhantomData<fn() -> (K, V)>,
}

/// The next length-prefixed part (u32 little-endian length, then its bytes) of a packed page
/// at `*at`, as a range of the page; moves `*at` past it.
fn packed_part(page: &[u8], at: &mut usize) -> Result<std::ops::Range<usize>> {
    let malformed = || Error::new("the host's scan page does not decode");
    let body = at.checked_add(4).ok_or_else(malformed)?;
    let len: [u8; 4] = page
        .get(*at..body)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(malformed)?;
    let end = body
        .checked_add(u32::from_le_bytes(len) as usize)
        .filter(|&end| end <= page.len())
        .ok_or_else(malformed)?;
    *at = end;
    Ok(body..end)
}

impl<K, V> MapIter<K, V> {
    /// Fetches the next page; learns from it whether another follows and where it starts.
    fn fetch(&mut self) -> Result<()> {
        let page = backend::storage_scan_packed(
            &self.scan_prefix,
            self.cursor.as_deref(),
            PAGE,
            self.order == Order::Descending,
        );
        let (mut at, mut entries, mut last_key) = (0, 0u32, None);
        while at < page.len() {
            last_key = Some(packed_part(&page, &mut at)?);
            packed_part(&page, &mut at)?;
            entries += 1;
        }
        self.done = entries < PAGE;
        if let Some(key) = last_key {
            self.cursor = Some(page[key].to_vec());
        }
        self.page = page;
        self.at = 0;
        Ok(())
    }
}

impl<K: Key, V: DeserializeOwned> Iterator for MapIter<K, V> {
    type Item = Result<(K, V)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.page.len() {
            if self.done {
                return None;
            }
            if let Err(e) = self.fetch() {
                // A page that does not decode ends the iteration: nothing after it is known.
                self.done = true;
                self.page.clear();
                return Some(Err(e));
            }
            if self.page.is_empty() {
                return None;
            }
        }
        let entry = packed_part(&self.page, &mut self.at).and_then(|key| {
            let value = packed_part(&self.page, &mut self.at)?;
            Ok((key, value))
        });
        let (key, value) = match entry {
            Ok(entry) => entry,
            Err(e) => {
                // Unreachable for a page `fetch` accepted; never loop on one that is not.
                (self.at, self.done) = (self.page.len(), true);
                return Some(Err(e));
            }
        };
        let k = &self.page[key];
        let mut rest = &k[self.strip.min(k.len())..];
        let key = match K::decode_key(&mut rest) {
            Some(key) if rest.is_empty() => key,
            _ => return Some(Err(Error::new("stored key does not decode"))),
        };
        Some(
            postcard::from_bytes(&self.page[value])
                .map(|v| (key, v))
                .map_err(Error::from),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MockChain;
    use crate::{Contract, Ctx, NoMsg, Response};
    use proptest::prelude::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    const KV: Map<(u32, u32), u32> = Map::new("kv");

    /// A contract that stores entries and lists them back through [`MapIter`].
    struct Lister;

    #[derive(Deserialize)]
    enum Put {
        Put(Vec<((u32, u32), u32)>),
    }

    #[derive(Serialize, Deserialize)]
    enum List {
        After(Option<(u32, u32)>, bool),
        Group(u32, bool),
    }

    fn order(descending: bool) -> Order {
        if descending {
            Order::Descending
        } else {
            Order::Ascending
        }
    }

    impl Contract for Lister {
        const NAME: &'static str = "lister";
        const VERSION: u32 = 1;
        type InstantiateMsg = NoMsg;
        type ExecuteMsg = Put;
        type QueryMsg = List;
        type MigrateMsg = NoMsg;
        type SudoMsg = NoMsg;
        fn instantiate(_: &mut Ctx, _: NoMsg) -> Result<Response> {
            Ok(Response::new())
        }
        fn execute(_: &mut Ctx, Put::Put(entries): Put) -> Result<Response> {
            for (k, v) in entries {
                KV.save(&k, &v)?;
            }
            Ok(Response::new())
        }
        fn query(_: &Ctx, msg: List) -> Result<Response> {
            let listed: Result<Vec<((u32, u32), u32)>> = match msg {
                List::After(after, d) => KV.range(after.as_ref(), order(d)).collect(),
                List::Group(g, d) => KV.prefixed(&g, order(d)).collect(),
            };
            Response::json(&listed?)
        }
    }

    /// A chain holding `entries` in a `Lister`.
    fn lister(entries: &BTreeMap<(u32, u32), u32>) -> (MockChain, Address) {
        let mut chain = MockChain::new();
        let alice = MockChain::addr("alice");
        let c = chain.instantiate::<Lister>(alice, &NoMsg, 0).unwrap();
        let put: Vec<_> = entries.iter().map(|(k, v)| (*k, *v)).collect();
        chain
            .execute(c, alice, &serde_json::json!({ "Put": put }), 0)
            .unwrap();
        (chain, c)
    }

    proptest! {
        /// Iteration crosses page boundaries without losing or repeating an entry, in both
        /// orders, from any start and under a prefix (oracle: the BTreeMap's own ranges).
        #[test]
        fn iteration_across_pages_yields_the_range(
            entries in proptest::collection::btree_map((0u32..3, 0u32..200), any::<u32>(), 0..300),
            after in (0u32..3, 0u32..200),
            group in 0u32..3,
            descending: bool,
        ) {
            let (chain, c) = lister(&entries);
            let mut want: Vec<_> = entries.iter().filter(|(k, _)| if descending { **k < after } else { **k > after }).map(|(k, v)| (*k, *v)).collect();
            if descending { want.reverse(); }
            let got: Vec<((u32, u32), u32)> = chain.query(c, &List::After(Some(after), descending)).unwrap();
            prop_assert_eq!(got, want);

            let mut want: Vec<_> = entries.iter().filter(|(k, _)| k.0 == group).map(|(k, v)| (*k, *v)).collect();
            if descending { want.reverse(); }
            let got: Vec<((u32, u32), u32)> = chain.query(c, &List::Group(group, descending)).unwrap();
            prop_assert_eq!(got, want);
        }
    }

    /// Exactly full pages: the iterator asks for one more page, finds it empty, and stops.
    #[test]
    fn iteration_ends_after_exactly_full_pages() {
        let page = PAGE;
        for n in [0, 1, page - 1, page, page + 1, 2 * page] {
            let entries: BTreeMap<_, _> = (0..n).map(|i| ((0, i), i * 7)).collect();
            let (chain, c) = lister(&entries);
            for descending in [false, true] {
                let got: Vec<((u32, u32), u32)> =
                    chain.query(c, &List::After(None, descending)).unwrap();
                assert_eq!(
                    got.len(),
                    n as usize,
                    "{n} entries, descending {descending}"
                );
                let mut want: Vec<_> = entries.iter().map(|(k, v)| (*k, *v)).collect();
                if descending {
                    want.reverse();
                }
                assert_eq!(got, want);
            }
        }
    }

    /// A packed page whose lengths run past its end is an error, never a panic or a loop.
    #[test]
    fn a_truncated_page_does_not_decode() {
        let mut page = Vec::new();
        page.extend_from_slice(&3u32.to_le_bytes());
        page.extend_from_slice(b"key");
        page.extend_from_slice(&5u32.to_le_bytes());
        page.extend_from_slice(b"val");
        let mut at = 0;
        assert_eq!(packed_part(&page, &mut at).unwrap(), 4..7);
        assert!(packed_part(&page, &mut at).is_err());
        assert_eq!(at, 7, "a failed part does not move the reader");
        let mut at = 0;
        assert!(packed_part(&page[..3], &mut at).is_err());
        let huge = u32::MAX.to_le_bytes();
        assert!(packed_part(&huge, &mut 0).is_err());
    }

    proptest! {
        /// Encoded keys sort exactly like the keys, and decode back.
        #[test]
        fn tuple_keys_keep_order(a in any::<(i64, Vec<u8>, u32)>(), b in any::<(i64, Vec<u8>, u32)>()) {
            let (ka, kb) = (a.key_bytes(), b.key_bytes());
            prop_assert_eq!(a.cmp(&b), ka.cmp(&kb));
            let mut rest = ka.as_slice();
            prop_assert_eq!(<(i64, Vec<u8>, u32)>::decode_key(&mut rest), Some(a));
            prop_assert!(rest.is_empty());
        }

        /// A slice saved with `save_slice` is the vector `save` would have written.
        #[test]
        fn a_saved_slice_is_the_vector(items in proptest::collection::vec(any::<(u64, String)>(), 0..20)) {
            prop_assert_eq!(postcard::to_allocvec(&items[..]).unwrap(), postcard::to_allocvec(&items).unwrap());
        }

        #[test]
        fn string_keys_keep_order(a in ".*", b in ".*") {
            prop_assert_eq!(a.cmp(&b), a.key_bytes().cmp(&b.key_bytes()));
        }
    }
}
