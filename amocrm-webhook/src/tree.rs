//! The nested tree that bracketed keys build, and its conversion to JSON.
//!
//! Rules (PHP's, except where PHP would lose data):
//! - map keys keep their first-seen order;
//! - `[]` appends under the next index (largest numeric key so far plus one);
//! - a node that is both a scalar and a parent (`a=1&a[b]=2`, in either order) keeps its scalar
//!   under the empty key: `{"a": {"": "1", "b": "2"}}`;
//! - a repeated scalar key keeps the last value, as PHP does;
//! - a map whose keys are exactly `0..n` (any arrival order) becomes a JSON array in index order;
//!   any other map (skipped indices, ids as keys, names) stays an object in first-seen order, so
//!   a key like `[99999999]` never allocates by its value.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::{Map, Value};

/// Above this many entries a map gets a hash index, so a flat hostile body stays linear.
const LOOKUP_THRESHOLD: usize = 32;

/// The key under which a node that is also a parent keeps its own scalar.
pub(crate) const SELF_KEY: &str = "";

#[derive(Debug)]
pub(crate) enum Node {
    Leaf(String),
    Map(MapNode),
}

#[derive(Debug, Default)]
pub(crate) struct MapNode {
    entries: Vec<Entry>,
    /// Where the next `[]` goes: one past the largest numeric key seen.
    next_index: u64,
    /// Built once a map grows past [`LOOKUP_THRESHOLD`].
    lookup: Option<HashMap<String, usize>>,
}

#[derive(Debug)]
struct Entry {
    /// A cheap fingerprint of `key`, so a scan compares strings only on a likely match.
    tag: u64,
    key: String,
    node: Node,
}

/// FNV-1a: fast on the short keys of a webhook, good enough to skip most string compares.
fn tag(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One segment of a key: a name (an index is a name too) or `[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment<'k> {
    Name(Cow<'k, str>),
    Push,
}

/// Parses a canonical list index (`0`, `17`; not `007`, `-1` or `+1`).
pub(crate) fn parse_index(key: &str) -> Option<u64> {
    let bytes = key.as_bytes();
    match bytes {
        [] => None,
        [b'0'] => Some(0),
        [b'0', ..] => None,
        _ if bytes.iter().all(u8::is_ascii_digit) => key.parse().ok(),
        _ => None,
    }
}

impl MapNode {
    fn find(&self, key: &str) -> Option<usize> {
        match &self.lookup {
            Some(lookup) => lookup.get(key).copied(),
            None => {
                let tag = tag(key);
                self.entries
                    .iter()
                    .position(|entry| entry.tag == tag && entry.key == key)
            }
        }
    }

    fn push_entry(&mut self, key: String, node: Node) -> usize {
        if let Some(index) = parse_index(&key) {
            self.next_index = self.next_index.max(index.saturating_add(1));
        }
        let position = self.entries.len();
        if let Some(lookup) = &mut self.lookup {
            lookup.insert(key.clone(), position);
        }
        self.entries.push(Entry {
            tag: tag(&key),
            key,
            node,
        });
        if self.lookup.is_none() && self.entries.len() > LOOKUP_THRESHOLD {
            let lookup = self
                .entries
                .iter()
                .enumerate()
                .map(|(i, entry)| (entry.key.clone(), i))
                .collect();
            self.lookup = Some(lookup);
        }
        position
    }

    /// Finds or creates the child for `segment`; `make` builds a new child.
    fn child(&mut self, segment: Segment<'_>, make: impl FnOnce() -> Node) -> usize {
        let key = match segment {
            Segment::Name(name) => name,
            Segment::Push => Cow::Owned(self.next_index.to_string()),
        };
        // A pushed key exists already only once indices saturate at u64::MAX: merge then.
        match self.find(&key) {
            Some(position) => position,
            None => self.push_entry(key.into_owned(), make()),
        }
    }

    fn set_self_value(&mut self, value: String) {
        match self.find(SELF_KEY) {
            Some(position) => self.entries[position].node = Node::Leaf(value),
            None => {
                self.push_entry(String::new(), Node::Leaf(value));
            }
        }
    }

    /// Inserts `value` under the path `segments` (the name first). Empty paths are ignored.
    #[cfg(test)]
    pub(crate) fn insert<'k>(
        &mut self,
        segments: impl IntoIterator<Item = Segment<'k>>,
        value: String,
    ) {
        self.insert_below(&mut Vec::new(), segments, value);
    }

    /// Inserts `value` under the nodes at `parents` (entry positions, level by level, each a
    /// map), then `segments`. Leaves in `parents` the positions of the new value's parents.
    pub(crate) fn insert_below<'k>(
        &mut self,
        parents: &mut Vec<usize>,
        segments: impl IntoIterator<Item = Segment<'k>>,
        value: String,
    ) {
        let mut map = self;
        for &position in parents.iter() {
            match map.entries.get_mut(position) {
                Some(entry) => map = make_map(&mut entry.node),
                None => return debug_assert!(false, "stale parent position"),
            }
        }
        let mut segments = segments.into_iter().peekable();
        let last = loop {
            let Some(segment) = segments.next() else {
                return;
            };
            if segments.peek().is_none() {
                break segment;
            }
            let position = map.child(segment, || Node::Map(MapNode::default()));
            parents.push(position);
            map = make_map(&mut map.entries[position].node);
        };
        let position = map.child(last, || Node::Leaf(String::new()));
        match &mut map.entries[position].node {
            Node::Leaf(old) => *old = value,
            Node::Map(child) => child.set_self_value(value),
        }
    }

    /// The top level as a JSON object (never turned into an array).
    pub(crate) fn into_object(self) -> Map<String, Value> {
        let mut object = Map::with_capacity(self.entries.len());
        for entry in self.entries {
            object.insert(entry.key, entry.node.into_value());
        }
        object
    }

    fn into_value(self) -> Value {
        if is_dense(self.entries.iter().map(|entry| entry.key.as_str())) {
            let mut slots: Vec<Option<Value>> = Vec::with_capacity(self.entries.len());
            slots.resize_with(self.entries.len(), || None);
            for entry in self.entries {
                let slot = parse_index(&entry.key).and_then(|i| slots.get_mut(i as usize));
                if let Some(slot) = slot {
                    *slot = Some(entry.node.into_value());
                }
            }
            Value::Array(slots.into_iter().flatten().collect())
        } else {
            Value::Object(self.into_object())
        }
    }
}

impl Node {
    fn into_value(self) -> Value {
        match self {
            Node::Leaf(value) => Value::String(value),
            Node::Map(map) => map.into_value(),
        }
    }
}

/// Turns a scalar into a map that keeps the scalar under [`SELF_KEY`].
fn make_map(node: &mut Node) -> &mut MapNode {
    if let Node::Leaf(value) = node {
        let value = std::mem::take(value);
        let mut map = MapNode::default();
        map.push_entry(String::new(), Node::Leaf(value));
        *node = Node::Map(map);
    }
    match node {
        Node::Map(map) => map,
        Node::Leaf(_) => unreachable!("a leaf was just replaced by a map"),
    }
}

/// True when the keys are exactly `0..n` for n > 0, in any order (keys are unique).
pub(crate) fn is_dense<'a>(keys: impl ExactSizeIterator<Item = &'a str>) -> bool {
    let len = keys.len() as u64;
    let mut keys = keys.peekable();
    keys.peek().is_some() && keys.all(|k| parse_index(k).is_some_and(|i| i < len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn build(pairs: &[(&[Segment<'_>], &str)]) -> Value {
        let mut root = MapNode::default();
        for (segments, value) in pairs {
            root.insert(segments.iter().cloned(), (*value).to_owned());
        }
        Value::Object(root.into_object())
    }

    use Segment::Push as P;

    #[allow(non_snake_case)]
    fn N(name: &str) -> Segment<'_> {
        Segment::Name(Cow::Borrowed(name))
    }

    #[test]
    fn dense_indices_become_an_array_in_index_order() {
        let tree = build(&[(&[N("a"), N("1")], "second"), (&[N("a"), N("0")], "first")]);
        assert_eq!(tree, json!({"a": ["first", "second"]}));
    }

    #[test]
    fn sparse_indices_stay_an_object_in_first_seen_order() {
        let tree = build(&[
            (&[N("a"), N("99999999"), N("ID")], "99999999"),
            (&[N("a"), N("5")], "x"),
        ]);
        assert_eq!(
            tree,
            json!({"a": {"99999999": {"ID": "99999999"}, "5": "x"}})
        );
        let keys: Vec<_> = tree["a"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["99999999", "5"]);
    }

    #[test]
    fn push_appends_after_the_largest_index() {
        let tree = build(&[
            (&[N("a"), P], "x"),
            (&[N("a"), P], "y"),
            (&[N("b"), N("5")], "five"),
            (&[N("b"), P], "six"),
        ]);
        assert_eq!(
            tree,
            json!({"a": ["x", "y"], "b": {"5": "five", "6": "six"}})
        );
    }

    #[test]
    fn push_of_a_parent_starts_a_new_element() {
        let tree = build(&[(&[N("a"), P, N("x")], "1"), (&[N("a"), P, N("y")], "2")]);
        assert_eq!(tree, json!({"a": [{"x": "1"}, {"y": "2"}]}));
    }

    #[test]
    fn scalar_then_parent_keeps_both() {
        let tree = build(&[(&[N("a")], "1"), (&[N("a"), N("b")], "2")]);
        assert_eq!(tree, json!({"a": {"": "1", "b": "2"}}));
    }

    #[test]
    fn parent_then_scalar_keeps_both() {
        let tree = build(&[(&[N("a"), N("b")], "2"), (&[N("a")], "1")]);
        assert_eq!(tree, json!({"a": {"b": "2", "": "1"}}));
    }

    #[test]
    fn repeated_scalar_keeps_the_last_value() {
        let tree = build(&[(&[N("a")], "1"), (&[N("a")], "2")]);
        assert_eq!(tree, json!({"a": "2"}));
    }

    #[test]
    fn index_parsing_is_canonical() {
        assert_eq!(parse_index("0"), Some(0));
        assert_eq!(parse_index("10701093"), Some(10_701_093));
        assert_eq!(parse_index("007"), None);
        assert_eq!(parse_index("-1"), None);
        assert_eq!(parse_index("+1"), None);
        assert_eq!(parse_index(""), None);
        assert_eq!(parse_index("99999999999999999999999"), None);
    }

    #[test]
    fn saturated_push_merges_instead_of_failing() {
        let tree = build(&[
            (&[N("a"), N("18446744073709551615")], "x"),
            (&[N("a"), P], "y"),
        ]);
        assert_eq!(tree, json!({"a": {"18446744073709551615": "y"}}));
    }

    #[test]
    fn large_maps_use_the_index_and_stay_correct() {
        let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
        let mut root = MapNode::default();
        for key in &keys {
            root.insert([N("a"), N(key)], "1".to_owned());
        }
        root.insert([N("a"), N("k50")], "2".to_owned());
        let tree = Value::Object(root.into_object());
        assert_eq!(tree["a"].as_object().unwrap().len(), 100);
        assert_eq!(tree["a"]["k50"], "2");
    }
}
