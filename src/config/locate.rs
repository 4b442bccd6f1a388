//! Finds the line and column of a key path (`routes[1].bucket`) in YAML text.
//!
//! serde_yaml 0.9 keeps no spans, but it does attach the position of the current event to any
//! error raised while deserializing. So to locate a value we walk the document with a
//! `DeserializeSeed` that follows the path and raises an error when it arrives: the error's
//! location is the value's. That lets checks that need the whole config (an unknown bucket name,
//! a missing root) report a line just like a type error does.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// Renders a path the way serde_yaml does: `routes[1].bucket`.
pub fn render(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// The 1-based (line, column) where the value at `path` starts, if it exists.
pub fn locate(yaml: &str, path: &[Step]) -> Option<(usize, usize)> {
    let seed = Seek { path };
    match seed.deserialize(serde_yaml::Deserializer::from_str(yaml)) {
        Err(e) if e.to_string().contains(ARRIVED) => {
            let at = e.location()?;
            Some((at.line(), at.column()))
        }
        _ => None,
    }
}

const ARRIVED: &str = "spillway-locate-arrived";

struct Seek<'p> {
    path: &'p [Step],
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Step::Key(want), rest)) = self.path.split_first() else {
            return Err(de::Error::custom(ARRIVED));
        };
        while let Some(key) = map.next_key::<String>()? {
            if &key == want {
                return map.next_value_seed(Seek { path: rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Step::Index(want), rest)) = self.path.split_first() else {
            return Err(de::Error::custom(ARRIVED));
        };
        for _ in 0..*want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Seek { path: rest }).map(|_| ())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
}

impl Seek<'_> {
    fn scalar<E: de::Error>(self) -> Result<(), E> {
        if self.path.is_empty() {
            Err(E::custom(ARRIVED))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "listen: x\nroutes:\n  - prefix: /a\n    bucket: one\n  - prefix: /b\n    bucket: two\n    rules:\n      - match: '*.jpg'\n";

    fn key(k: &str) -> Step {
        Step::Key(k.into())
    }

    #[test]
    fn finds_nested_values() {
        let path = [key("routes"), Step::Index(1), key("bucket")];
        assert_eq!(
            locate(DOC, &path),
            Some((6, 13)),
            "routes[1].bucket is on line 6"
        );
        assert_eq!(render(&path), "routes[1].bucket");
        let path = [
            key("routes"),
            Step::Index(1),
            key("rules"),
            Step::Index(0),
            key("match"),
        ];
        assert_eq!(
            locate(DOC, &path).map(|p| p.0),
            Some(8),
            "a value inside a nested list"
        );
        assert_eq!(
            locate(DOC, &[key("listen")]),
            Some((1, 9)),
            "a top-level scalar"
        );
    }

    #[test]
    fn a_missing_path_has_no_location() {
        assert_eq!(
            locate(DOC, &[key("routes"), Step::Index(7)]),
            None,
            "index past the end"
        );
        assert_eq!(locate(DOC, &[key("nope")]), None, "absent key");
    }
}
