//! A JSON value that keeps object keys in the order the client wrote them.
//!
//! ComfyUI is Python: a prompt graph is a `dict`, and dicts keep insertion order. The order of
//! nodes and of each node's inputs decides the order nodes run in (`ExecutionList.add_node` walks
//! inputs in order), so the simulator must not sort them the way `serde_json::Map` does.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

/// A JSON value whose objects are ordered lists of `(key, value)` pairs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OValue {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<OValue>),
    Object(Vec<(String, OValue)>),
}

impl OValue {
    /// Looks a key up in an object; a duplicated key resolves to its last value, as in Python.
    pub(crate) fn get(&self, key: &str) -> Option<&OValue> {
        match self {
            OValue::Object(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The entries of an object with duplicates removed (last one wins, first position kept).
    pub(crate) fn entries(&self) -> Option<Vec<(&str, &OValue)>> {
        let OValue::Object(entries) = self else {
            return None;
        };
        let mut out: Vec<(&str, &OValue)> = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            if let Some(slot) = out.iter_mut().find(|(k, _)| *k == key.as_str()) {
                slot.1 = value;
            } else {
                out.push((key.as_str(), value));
            }
        }
        Some(out)
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            OValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// Converts into a plain `serde_json::Value` (object keys then sort, which only matters for echoes).
    pub(crate) fn to_value(&self) -> Value {
        match self {
            OValue::Null => Value::Null,
            OValue::Bool(b) => Value::Bool(*b),
            OValue::Number(n) => Value::Number(n.clone()),
            OValue::String(s) => Value::String(s.clone()),
            OValue::Array(items) => Value::Array(items.iter().map(OValue::to_value).collect()),
            OValue::Object(entries) => {
                Value::Object(entries.iter().map(|(k, v)| (k.clone(), v.to_value())).collect())
            }
        }
    }
}

impl<'de> Deserialize<'de> for OValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(OValueVisitor)
    }
}

struct OValueVisitor;

impl<'de> Visitor<'de> for OValueVisitor {
    type Value = OValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<OValue, E> {
        Ok(OValue::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<OValue, E> {
        Ok(OValue::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<OValue, E> {
        Ok(OValue::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<OValue, E> {
        Ok(Number::from_f64(v).map_or(OValue::Null, OValue::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<OValue, E> {
        Ok(OValue::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<OValue, E> {
        Ok(OValue::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<OValue, E> {
        Ok(OValue::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<OValue, E> {
        Ok(OValue::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<OValue, D::Error> {
        OValue::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(OValue::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OValue, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, OValue>()? {
            entries.push((key, value));
        }
        Ok(OValue::Object(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_keep_the_order_they_were_written_in() {
        let value: OValue = serde_json::from_str(r#"{"10": 1, "2": 2, "1": {"b": 1, "a": 2}}"#).unwrap();
        let keys: Vec<&str> = value.entries().unwrap().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["10", "2", "1"]);
        let inner: Vec<&str> = value
            .get("1")
            .unwrap()
            .entries()
            .unwrap()
            .iter()
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(inner, ["b", "a"]);
    }

    #[test]
    fn a_duplicated_key_resolves_to_its_last_value_like_a_python_dict() {
        let value: OValue = serde_json::from_str(r#"{"a": 1, "b": 2, "a": 3}"#).unwrap();
        assert_eq!(value.get("a"), Some(&OValue::Number(3.into())));
        assert_eq!(value.entries().unwrap().len(), 2);
    }

    #[test]
    fn converting_to_a_plain_value_keeps_every_field() {
        let text = r#"{"x": [1, 2.5, "s", null, true], "y": {"z": {}}}"#;
        let value: OValue = serde_json::from_str(text).unwrap();
        let plain: Value = serde_json::from_str(text).unwrap();
        assert_eq!(value.to_value(), plain);
    }
}
