//! Deserializing JSON objects into maps while refusing a key that appears twice.
//!
//! serde's own map implementations keep the last of two equal keys without a word. mcp-authd
//! never writes such a file, so two entries for one client or one refresh-token family mean
//! the file was edited or damaged: which entry is the real one cannot be known, and the load
//! must stop rather than pick one silently.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};

/// A map that can be filled one entry at a time, reporting a key it already held.
pub trait InsertNew: Default {
    /// The key type.
    type Key;
    /// The value type.
    type Value;
    /// Inserts the entry; `false` if the key was already present.
    fn insert_new(&mut self, key: Self::Key, value: Self::Value) -> bool;
}

impl<K: Ord, V> InsertNew for BTreeMap<K, V> {
    type Key = K;
    type Value = V;
    fn insert_new(&mut self, key: K, value: V) -> bool {
        self.insert(key, value).is_none()
    }
}

impl<K: Eq + Hash, V> InsertNew for HashMap<K, V> {
    type Key = K;
    type Value = V;
    fn insert_new(&mut self, key: K, value: V) -> bool {
        self.insert(key, value).is_none()
    }
}

/// A map deserialized with every key checked for uniqueness.
pub struct Unique<M>(pub M);

impl<'de, K, V, M> Deserialize<'de> for Unique<M>
where
    K: Deserialize<'de>,
    V: Deserialize<'de>,
    M: InsertNew<Key = K, Value = V>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UniqueVisitor<M>(PhantomData<M>);

        impl<'de, K, V, M> Visitor<'de> for UniqueVisitor<M>
        where
            K: Deserialize<'de>,
            V: Deserialize<'de>,
            M: InsertNew<Key = K, Value = V>,
        {
            type Value = Unique<M>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object whose keys are all different")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut map = M::default();
                while let Some((key, value)) = access.next_entry::<K, V>()? {
                    // The key is not named: a family id is half of a refresh token, and the
                    // position serde adds is enough to find it.
                    if !map.insert_new(key, value) {
                        return Err(A::Error::custom("duplicate key"));
                    }
                }
                Ok(Unique(map))
            }
        }

        deserializer.deserialize_map(UniqueVisitor(PhantomData))
    }
}

/// `#[serde(deserialize_with = "unique_keys::map")]`: a map with no key twice.
pub fn map<'de, D, M>(deserializer: D) -> Result<M, D::Error>
where
    D: Deserializer<'de>,
    Unique<M>: Deserialize<'de>,
{
    Unique::<M>::deserialize(deserializer).map(|u| u.0)
}

/// `#[serde(deserialize_with = "unique_keys::nested")]`: a map of maps with no key twice at
/// either level (consents: client id → user → time).
pub fn nested<'de, D, K, M>(deserializer: D) -> Result<BTreeMap<K, M>, D::Error>
where
    D: Deserializer<'de>,
    K: Ord,
    Unique<BTreeMap<K, Unique<M>>>: Deserialize<'de>,
{
    let Unique(outer) = Unique::<BTreeMap<K, Unique<M>>>::deserialize(deserializer)?;
    Ok(outer
        .into_iter()
        .map(|(k, Unique(inner))| (k, inner))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Doc {
        #[serde(deserialize_with = "map")]
        flat: HashMap<String, u64>,
        #[serde(deserialize_with = "nested")]
        deep: BTreeMap<String, BTreeMap<String, u64>>,
    }

    #[test]
    fn distinct_keys_load_and_a_repeated_key_at_either_level_is_refused() {
        let ok: Doc =
            serde_json::from_str(r#"{"flat":{"a":1,"b":2},"deep":{"c":{"x":1},"d":{"x":2}}}"#)
                .unwrap();
        assert_eq!(ok.flat.len(), 2);
        assert_eq!(ok.deep["d"]["x"], 2);
        for bad in [
            r#"{"flat":{"a":1,"a":2},"deep":{}}"#,
            r#"{"flat":{},"deep":{"c":{"x":1},"c":{"y":1}}}"#,
            r#"{"flat":{},"deep":{"c":{"x":1,"x":2}}}"#,
        ] {
            let err = serde_json::from_str::<Doc>(bad).unwrap_err().to_string();
            assert!(err.contains("duplicate key"), "{bad}: {err}");
        }
    }
}
