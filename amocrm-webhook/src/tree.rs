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

use crate::batch::{Entries, Level};
use crate::fields::{Builder, Fields, Span};

/// Above this many entries a map gets a hash index, so a flat hostile body stays linear.
const LOOKUP_THRESHOLD: usize = 32;

/// The key under which a node that is also a parent keeps its own scalar.
pub(crate) const SELF_KEY: &str = "";

/// A node's place in [`Tree::nodes`].
pub(crate) type NodeId = usize;

/// No node (the end of a child list), or no map (a leaf).
const NONE: usize = usize::MAX;

/// The tree of one body, every node in one arena. Keys and values borrow the body unless they
/// needed decoding, so building it allocates little; at the end each event's subtree is laid
/// out as [`Fields`], in two allocations of their final size.
#[derive(Debug)]
pub(crate) struct Tree<'k> {
    /// The root (always a map) first, then every node in creation order.
    nodes: Vec<Node<'k>>,
    /// The children of the nodes that are maps.
    maps: Vec<Children>,
    /// Hash indexes of the maps that grew past [`LOOKUP_THRESHOLD`].
    lookups: Vec<HashMap<Cow<'k, str>, NodeId>>,
}

/// One node of a [`Tree`]; a spare `Vec` of them can be handed from tree to tree. Kept
/// small, as every key pushes one.
#[derive(Debug)]
pub(crate) struct Node<'k> {
    key: Cow<'k, str>,
    /// A leaf's value; a map keeps its own scalar in a [`SELF_KEY`] child instead.
    value: Cow<'k, str>,
    /// A cheap fingerprint of `key`, so a scan compares strings only on a likely match.
    tag: u64,
    /// The next child of the same parent, in first-seen order.
    next: NodeId,
    /// Into [`Tree::maps`] when the node is a map, else [`NONE`].
    map: usize,
}

/// A map's children, a singly linked list through [`Node::next`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Children {
    first: NodeId,
    last: NodeId,
    len: usize,
    /// Where the next `[]` goes: one past the largest numeric key seen.
    next_index: u64,
    /// How many keys are not canonical indices.
    named: usize,
    /// Every index key so far arrived at its own position (`0`, then `1`, ...).
    in_order: bool,
    /// Into [`Tree::lookups`], once the map is large.
    lookup: Option<usize>,
}

impl Children {
    const EMPTY: Children = Children {
        first: NONE,
        last: NONE,
        len: 0,
        next_index: 0,
        named: 0,
        in_order: true,
        lookup: None,
    };

    /// True when the keys are exactly `0..n` for n > 0, in any order (keys are unique).
    fn is_dense(&self) -> bool {
        self.len > 0 && self.named == 0 && self.next_index == self.len as u64
    }
}

/// A fingerprint of a key from its length and its first and last 8 bytes: a few
/// instructions for any key, and distinct for the keys of a webhook.
fn tag(key: &str) -> u64 {
    let bytes = key.as_bytes();
    let len = bytes.len();
    let (head, tail) = match (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
        (Some(head), Some(tail)) => (u64::from_le_bytes(*head), u64::from_le_bytes(*tail)),
        _ => (
            bytes
                .iter()
                .fold(0u64, |word, &byte| word << 8 | u64::from(byte)),
            0,
        ),
    };
    (head ^ tail.rotate_left(23) ^ (len as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_mul(0x0100_0000_01b3)
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
        [digit @ b'1'..=b'9'] => Some(u64::from(digit - b'0')),
        _ if bytes.iter().all(u8::is_ascii_digit) => key.parse().ok(),
        _ => None,
    }
}

/// The buffers of a [`Tree`], emptied, for the next one.
#[derive(Debug, Default)]
pub(crate) struct Spare {
    nodes: Vec<Node<'static>>,
    maps: Vec<Children>,
}

impl Spare {
    pub(crate) const EMPTY: Spare = Spare {
        nodes: Vec::new(),
        maps: Vec::new(),
    };

    /// How many nodes the buffers hold without growing.
    pub(crate) fn capacity(&self) -> usize {
        self.nodes.capacity()
    }
}

impl<'k> Tree<'k> {
    /// The top-level map.
    pub(crate) const ROOT: NodeId = 0;

    /// An empty tree with room for `nodes` nodes before it grows.
    #[cfg(test)]
    pub(crate) fn with_capacity(nodes: usize) -> Self {
        Self::reusing(Spare::EMPTY, nodes)
    }

    /// An empty tree in the buffers of `spare` (see [`Tree::into_entries`]), with room for
    /// `nodes` nodes before it grows.
    pub(crate) fn reusing(spare: Spare, nodes: usize) -> Self {
        let mut tree = Tree {
            nodes: reuse(spare.nodes),
            maps: spare.maps,
            lookups: Vec::new(),
        };
        tree.maps.clear();
        tree.nodes.reserve(nodes.saturating_add(1));
        tree.maps.reserve(nodes / 4 + 1);
        tree.maps.push(Children::EMPTY);
        tree.nodes.push(Node {
            key: Cow::Borrowed(""),
            value: Cow::Borrowed(""),
            tag: 0,
            next: NONE,
            map: 0,
        });
        tree
    }

    fn find(&self, map: usize, key: &str, tag: u64) -> Option<NodeId> {
        let children = &self.maps[map];
        if let Some(lookup) = children.lookup {
            return self.lookups[lookup].get(key).copied();
        }
        let mut id = children.first;
        while id != NONE {
            let node = &self.nodes[id];
            if node.tag == tag && node.key == key {
                return Some(id);
            }
            id = node.next;
        }
        None
    }

    /// An empty map, for a new node.
    fn new_map(&mut self) -> usize {
        self.maps.push(Children::EMPTY);
        self.maps.len() - 1
    }

    /// Appends a new child to `map`: a leaf holding `value`, or an empty map when `is_map`.
    fn push_child(
        &mut self,
        map: usize,
        key: Cow<'k, str>,
        tag: u64,
        is_map: bool,
        value: Cow<'k, str>,
    ) -> NodeId {
        let id = self.nodes.len();
        let index = parse_index(&key);
        let child_map = if is_map { self.new_map() } else { NONE };
        self.nodes.push(Node {
            key,
            value,
            tag,
            next: NONE,
            map: child_map,
        });
        let children = &mut self.maps[map];
        match index {
            Some(index) => {
                children.in_order &= index == children.len as u64;
                children.next_index = children.next_index.max(index.saturating_add(1));
            }
            None => children.named += 1,
        }
        let previous = children.last;
        if previous == NONE {
            children.first = id;
        }
        children.last = id;
        children.len += 1;
        let (len, lookup, first) = (children.len, children.lookup, children.first);
        if previous != NONE {
            self.nodes[previous].next = id;
        }
        match lookup {
            Some(lookup) => {
                let key = self.nodes[id].key.clone();
                self.lookups[lookup].insert(key, id);
            }
            None if len > LOOKUP_THRESHOLD => {
                let mut lookup = HashMap::with_capacity(len * 2);
                let mut child = first;
                while child != NONE {
                    lookup.insert(self.nodes[child].key.clone(), child);
                    child = self.nodes[child].next;
                }
                self.maps[map].lookup = Some(self.lookups.len());
                self.lookups.push(lookup);
            }
            None => {}
        }
        id
    }

    /// Finds or creates the child of `map` for `segment`; a new child is an empty map when
    /// `is_map`, else an empty leaf.
    fn child(&mut self, map: usize, segment: Segment<'k>, is_map: bool) -> NodeId {
        let key = match segment {
            Segment::Name(name) => name,
            Segment::Push => Cow::Owned(self.maps[map].next_index.to_string()),
        };
        let tag = tag(&key);
        // A pushed key exists already only once indices saturate at u64::MAX: merge then.
        match self.find(map, &key, tag) {
            Some(id) => id,
            None => self.push_child(map, key, tag, is_map, Cow::Borrowed("")),
        }
    }

    /// The children of the node `id`, turning a scalar into a map that keeps the scalar
    /// under [`SELF_KEY`].
    fn make_map(&mut self, id: NodeId) -> usize {
        let map = self.nodes[id].map;
        if map != NONE {
            return map;
        }
        let map = self.new_map();
        let node = &mut self.nodes[id];
        node.map = map;
        let value = std::mem::take(&mut node.value);
        self.push_child(map, Cow::Borrowed(SELF_KEY), tag(SELF_KEY), false, value);
        map
    }

    /// Gives the node `id` the scalar `value`: a leaf's is replaced, a map keeps it under
    /// [`SELF_KEY`]. A repeated scalar keeps the last value.
    fn set_value(&mut self, id: NodeId, value: Cow<'k, str>) {
        let map = self.nodes[id].map;
        if map == NONE {
            self.nodes[id].value = value;
            return;
        }
        let self_tag = tag(SELF_KEY);
        match self.find(map, SELF_KEY, self_tag) {
            Some(child) => {
                let child = &mut self.nodes[child];
                child.value = value;
                child.map = NONE;
            }
            None => {
                self.push_child(map, Cow::Borrowed(SELF_KEY), self_tag, false, value);
            }
        }
    }

    /// Inserts `value` under the path `segments` (the name first). Empty paths are ignored.
    #[cfg(test)]
    pub(crate) fn insert(
        &mut self,
        segments: impl IntoIterator<Item = Segment<'k>>,
        value: Cow<'k, str>,
    ) {
        self.insert_below(Self::ROOT, &mut Vec::new(), segments, value);
    }

    /// Inserts `value` under the node `start` (the root, or a node an earlier key led to),
    /// then `segments`; with no segments, `start` itself gets the value. Appends to `path`
    /// the node each segment leads to.
    pub(crate) fn insert_below(
        &mut self,
        start: NodeId,
        path: &mut Vec<NodeId>,
        segments: impl IntoIterator<Item = Segment<'k>>,
        value: Cow<'k, str>,
    ) {
        let mut node = start;
        let mut segments = segments.into_iter().peekable();
        while let Some(segment) = segments.next() {
            let map = self.make_map(node);
            node = self.child(map, segment, segments.peek().is_some());
            path.push(node);
        }
        if node != Self::ROOT {
            self.set_value(node, value);
        }
    }

    /// [`Tree::insert_below`] for one segment naming a leaf; gives the leaf.
    pub(crate) fn insert_leaf(
        &mut self,
        start: NodeId,
        segment: Segment<'k>,
        value: Cow<'k, str>,
    ) -> NodeId {
        let map = self.make_map(start);
        let node = self.child(map, segment, false);
        self.set_value(node, value);
        node
    }

    /// The whole tree as JSON (the root stays an object).
    #[cfg(test)]
    pub(crate) fn into_value(self) -> serde_json::Value {
        let mut builder = Builder::with_capacity(1, 0);
        self.lay_out(&mut builder, 0, Span::EMPTY, Self::ROOT, true);
        builder.finish().to_value()
    }

    /// The top level (never a list) and the two levels below it (actions, then items) as
    /// entries, anything deeper as [`Fields`]; and the emptied buffers, for [`Tree::reusing`].
    pub(crate) fn into_entries(mut self) -> (Entries<'k>, Spare) {
        let entries = self.entries(self.maps[0], 3);
        let spare = Spare {
            nodes: reuse(self.nodes),
            maps: self.maps,
        };
        (entries, spare)
    }

    /// `children` as entries, in first-seen order; the maps among them as entries again
    /// while `levels` lasts.
    fn entries(&mut self, children: Children, levels: usize) -> Entries<'k> {
        let mut entries = Vec::with_capacity(children.len);
        let mut child = children.first;
        while child != NONE {
            let node = &mut self.nodes[child];
            let key = std::mem::take(&mut node.key);
            let next = node.next;
            let map = node.map;
            let level = if map == NONE {
                Level::Text(std::mem::take(&mut node.value).into_owned())
            } else if levels > 1 {
                let grandchildren = self.maps[map];
                let mut entries = self.entries(grandchildren, levels - 1);
                let list = grandchildren.is_dense();
                if list && !grandchildren.in_order {
                    // Dense keys are unique indices, so this orders them exactly.
                    entries.sort_by_key(|(key, _)| parse_index(key));
                }
                Level::Map { list, entries }
            } else {
                Level::Fields(self.fields(child))
            };
            entries.push((key, level));
            child = next;
        }
        entries
    }

    /// The subtree of the node `id` as [`Fields`], sized exactly.
    fn fields(&self, id: NodeId) -> Fields {
        let (nodes, bytes) = self.measure(id);
        let mut builder = Builder::with_capacity(nodes, bytes);
        self.lay_out(&mut builder, 0, Span::EMPTY, id, false);
        builder.finish()
    }

    /// How many nodes and bytes of keys and values the subtree of `id` holds.
    fn measure(&self, id: NodeId) -> (usize, usize) {
        let node = &self.nodes[id];
        if node.map == NONE {
            return (1, node.value.len());
        }
        let (mut nodes, mut bytes) = (1, 0);
        let mut child = self.maps[node.map].first;
        while child != NONE {
            let (n, b) = self.measure(child);
            nodes += n;
            bytes += b + self.nodes[child].key.len();
            child = self.nodes[child].next;
        }
        (nodes, bytes)
    }

    /// Lays out the node `id` in the slot `at` of `builder`, under `key`. Unless `keep_keys`,
    /// a map whose keys are exactly `0..n` becomes a list in index order.
    fn lay_out(&self, builder: &mut Builder, at: usize, key: Span, id: NodeId, keep_keys: bool) {
        let node = &self.nodes[id];
        if node.map == NONE {
            let value = builder.text(&node.value);
            builder.leaf(at, key, value);
            return;
        }
        let children = self.maps[node.map];
        let dense = children.is_dense();
        let list = dense && !keep_keys;
        let first = builder.block(children.len);
        let mut child = children.first;
        let mut i = 0;
        while child != NONE {
            let child_node = &self.nodes[child];
            let slot = if dense && !children.in_order {
                // Dense keys are unique indices below `len`, so each finds its own slot.
                parse_index(&child_node.key).map_or(i, |index| index as usize)
            } else {
                i
            };
            let child_key = if list {
                Span::EMPTY
            } else {
                builder.text(&child_node.key)
            };
            self.lay_out(builder, first + slot, child_key, child, false);
            child = child_node.next;
            i += 1;
        }
        builder.parent(at, key, first, children.len, list);
    }
}

/// An empty `Vec` of `U` in the allocation of `vec` (emptied first) when `T` and `U` have the
/// same layout, as the same type under another lifetime does; else a new empty `Vec`. This
/// relies on std collecting a `Vec`'s `into_iter` in place, which it does without `unsafe` on
/// our side, and costs nothing but the reuse when it does not happen.
pub(crate) fn reuse<T, U>(mut vec: Vec<T>) -> Vec<U> {
    vec.clear();
    vec.into_iter().filter_map(|_| None).collect()
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
    use serde_json::{Value, json};

    fn build(pairs: &[(&[Segment<'_>], &str)]) -> Value {
        let mut root = Tree::with_capacity(0);
        for (segments, value) in pairs {
            root.insert(segments.iter().cloned(), Cow::Borrowed(*value));
        }
        root.into_value()
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
        let mut root = Tree::with_capacity(0);
        for key in &keys {
            root.insert([N("a"), N(key)], Cow::Borrowed("1"));
        }
        root.insert([N("a"), N("k50")], Cow::Borrowed("2"));
        let tree = root.into_value();
        assert_eq!(tree["a"].as_object().unwrap().len(), 100);
        assert_eq!(tree["a"]["k50"], "2");
    }
}
