//! Property sets: `name = value` pairs attached to logs and metrics.
//!
//! A set is interned once ([`PropertySet::find_or_create`]) and lives for the rest of the
//! process, so recording it costs one pointer per event. Interning takes a global lock:
//! create sets once (in a `static` [`std::sync::OnceLock`], at startup, or per distinct
//! value you can bound) and keep the `&'static` reference. Never intern a set per request
//! with an unbounded value (a request id): the memory is never given back.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, PoisonError};

/// An interned, immutable set of properties, sorted by name.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PropertySet {
    properties: Vec<(Box<str>, Box<str>)>,
}

impl PropertySet {
    /// The interned set with these properties (a later duplicate name wins).
    pub fn find_or_create<I, K, V>(properties: I) -> &'static PropertySet
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut list: Vec<(Box<str>, Box<str>)> = Vec::new();
        for (k, v) in properties {
            let (k, v): (String, String) = (k.into(), v.into());
            list.retain(|(name, _)| **name != *k);
            list.push((k.into_boxed_str(), v.into_boxed_str()));
        }
        list.sort();
        let set = PropertySet { properties: list };
        static SETS: OnceLock<Mutex<HashSet<&'static PropertySet>>> = OnceLock::new();
        let mut sets = SETS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = sets.get(&set) {
            return existing;
        }
        let interned: &'static PropertySet = Box::leak(Box::new(set));
        sets.insert(interned);
        interned
    }

    /// The empty set.
    pub fn empty() -> &'static PropertySet {
        static EMPTY: PropertySet = PropertySet {
            properties: Vec::new(),
        };
        &EMPTY
    }

    /// The properties, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.properties.iter().map(|(k, v)| (&**k, &**v))
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| **k == *name)
            .map(|(_, v)| &**v)
    }

    /// Number of properties.
    pub fn len(&self) -> usize {
        self.properties.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.properties.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_interned_by_content() {
        let a = PropertySet::find_or_create([("b", "2"), ("a", "1")]);
        let b = PropertySet::find_or_create(vec![
            ("a".to_owned(), "1".to_owned()),
            ("b".into(), "2".into()),
        ]);
        assert!(std::ptr::eq(a, b));
        assert_eq!(a.iter().collect::<Vec<_>>(), [("a", "1"), ("b", "2")]);
        assert_eq!(a.get("b"), Some("2"));
        let c = PropertySet::find_or_create([("a", "1"), ("a", "3")]);
        assert_eq!(c.get("a"), Some("3"));
        assert!(PropertySet::empty().is_empty());
    }
}
