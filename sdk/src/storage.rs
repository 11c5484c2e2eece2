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
            page: Vec::new().into_iter(),
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
            page: Vec::new().into_iter(),
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
    cursor: Option<Vec<u8>>,
    order: Order,
    page: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
    done: bool,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K: Key, V: DeserializeOwned> Iterator for MapIter<K, V> {
    type Item = Result<(K, V)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.len() == 0 {
            if self.done {
                return None;
            }
            let page = backend::storage_scan(
                &self.scan_prefix,
                self.cursor.as_deref(),
                PAGE,
                self.order == Order::Descending,
            );
            self.done = page.len() < PAGE as usize;
            self.cursor = page.last().map(|(k, _)| k.clone());
            self.page = page.into_iter();
        }
        let (k, v) = self.page.next()?;
        let mut rest = &k[self.strip.min(k.len())..];
        let key = match K::decode_key(&mut rest) {
            Some(key) if rest.is_empty() => key,
            _ => return Some(Err(Error::new("stored key does not decode"))),
        };
        Some(
            postcard::from_bytes(&v)
                .map(|v| (key, v))
                .map_err(Error::from),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
