//! An event's fields: a compact, owned tree whose leaves are strings.
//!
//! A body's tree could be handed out as `serde_json::Value`, but a `Value` costs an allocation
//! per key, per value and per map, and a SipHash per key for the map's index: most of the time
//! spent parsing a body went into building and freeing it. [`Fields`] keeps one event's whole
//! tree in two allocations (one string holding every key and value, one array of nodes whose
//! children sit side by side) and still reads, serializes and compares like the JSON it stands
//! for. [`Fields::to_value`] gives that JSON when a `Value` is wanted.

use std::fmt;
use std::iter::FusedIterator;
use std::ops::Range;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// A piece of [`Fields::text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    start: usize,
    end: usize,
}

impl Span {
    /// No text: the key of a list item, or of the root.
    pub(crate) const EMPTY: Span = Span { start: 0, end: 0 };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text(Span),
    /// Children are `nodes[first..first + len]`, in first-seen order.
    Object {
        first: usize,
        len: usize,
    },
    /// Items are `nodes[first..first + len]`, in index order.
    List {
        first: usize,
        len: usize,
    },
}

#[derive(Debug, Clone, Copy)]
struct Node {
    key: Span,
    kind: Kind,
}

/// The fields of one event: what the body held under `section[action][index]`.
///
/// A tree of objects (keys in first-seen order), lists and string leaves, exactly the JSON the
/// crate docs describe. Read it with [`get`](Fields::get), [`path`](Fields::path) and
/// [`entries`](Fields::entries), which give [`Field`] views; it serializes as that JSON and
/// deserializes from it, and converts to and from `serde_json::Value`. Equality is the JSON's:
/// object keys in any order.
#[derive(Clone)]
pub struct Fields {
    /// Every key and text value, back to back.
    text: String,
    /// The root first; the children of a node are contiguous.
    nodes: Vec<Node>,
}

impl Fields {
    /// The whole tree as a [`Field`].
    pub fn as_field(&self) -> Field<'_> {
        Field {
            fields: self,
            node: self.nodes[0],
        }
    }

    /// The child of the root named `key` (a decimal position when the root is a list).
    pub fn get(&self, key: &str) -> Option<Field<'_>> {
        self.as_field().get(key)
    }

    /// The node at `path` below the root; the empty path is the root.
    pub fn path(&self, path: &[&str]) -> Option<Field<'_>> {
        path.iter()
            .try_fold(self.as_field(), |node, key| node.get(key))
    }

    /// The root's children: `(Some(key), field)` for an object, `(None, item)` for a list.
    pub fn entries(&self) -> Entries<'_> {
        self.as_field().entries()
    }

    /// How many children the root has (0 for a text).
    pub fn len(&self) -> usize {
        self.as_field().len()
    }

    /// True when the root has no children: an empty object, or a text.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tree as JSON.
    pub fn to_value(&self) -> Value {
        self.as_field().to_value()
    }
}

impl Default for Fields {
    /// An empty object.
    fn default() -> Self {
        Fields {
            text: String::new(),
            nodes: vec![Node {
                key: Span::EMPTY,
                kind: Kind::Object { first: 1, len: 0 },
            }],
        }
    }
}

/// One node of [`Fields`]: a text, an object or a list. Cheap to copy.
#[derive(Clone, Copy)]
pub struct Field<'a> {
    fields: &'a Fields,
    node: Node,
}

impl<'a> Field<'a> {
    fn text_of(&self, span: Span) -> &'a str {
        &self.fields.text[span.start..span.end]
    }

    fn children(&self) -> Range<usize> {
        match self.node.kind {
            Kind::Text(_) => 0..0,
            Kind::Object { first, len } | Kind::List { first, len } => first..first + len,
        }
    }

    /// The text of a leaf; `None` for an object or a list.
    pub fn as_str(&self) -> Option<&'a str> {
        match self.node.kind {
            Kind::Text(span) => Some(self.text_of(span)),
            _ => None,
        }
    }

    /// True for a leaf (a string value).
    pub fn is_text(&self) -> bool {
        matches!(self.node.kind, Kind::Text(_))
    }

    /// True for a map whose keys are not exactly `0..n` (serialized as a JSON object).
    pub fn is_object(&self) -> bool {
        matches!(self.node.kind, Kind::Object { .. })
    }

    /// True for a map keyed exactly `0..n` (serialized as a JSON array, in index order).
    pub fn is_list(&self) -> bool {
        matches!(self.node.kind, Kind::List { .. })
    }

    /// How many children an object or a list has (0 for a text).
    pub fn len(&self) -> usize {
        self.children().len()
    }

    /// True when the node has no children: an empty object or list, or a text.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An object's child named `key`, or a list's item at the decimal position `key`.
    pub fn get(&self, key: &str) -> Option<Field<'a>> {
        let children = self.children();
        let node = match self.node.kind {
            Kind::Text(_) => return None,
            Kind::List { .. } => {
                let index: usize = key.parse().ok()?;
                self.fields.nodes[children].get(index)?
            }
            Kind::Object { .. } => self.fields.nodes[children]
                .iter()
                .find(|node| self.text_of(node.key) == key)?,
        };
        Some(Field {
            fields: self.fields,
            node: *node,
        })
    }

    /// The children: `(Some(key), field)` for an object, `(None, item)` for a list, nothing
    /// for a text.
    pub fn entries(&self) -> Entries<'a> {
        Entries {
            fields: self.fields,
            keyed: self.is_object(),
            range: self.children(),
        }
    }

    /// This node as JSON.
    pub fn to_value(&self) -> Value {
        match self.node.kind {
            Kind::Text(span) => Value::String(self.text_of(span).to_owned()),
            Kind::List { .. } => Value::Array(self.entries().map(|(_, f)| f.to_value()).collect()),
            Kind::Object { .. } => {
                let mut object = Map::with_capacity(self.len());
                for (key, field) in self.entries() {
                    object.insert(key.unwrap_or_default().to_owned(), field.to_value());
                }
                Value::Object(object)
            }
        }
    }
}

/// The children of a [`Field`], from [`Field::entries`].
#[derive(Clone)]
pub struct Entries<'a> {
    fields: &'a Fields,
    keyed: bool,
    range: Range<usize>,
}

impl<'a> Entries<'a> {
    fn item(&self, at: usize) -> (Option<&'a str>, Field<'a>) {
        let node = self.fields.nodes[at];
        let field = Field {
            fields: self.fields,
            node,
        };
        let key = self.keyed.then(|| field.text_of(node.key));
        (key, field)
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = (Option<&'a str>, Field<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        self.range.next().map(|at| self.item(at))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.range.size_hint()
    }
}

impl DoubleEndedIterator for Entries<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.range.next_back().map(|at| self.item(at))
    }
}

impl ExactSizeIterator for Entries<'_> {}

impl FusedIterator for Entries<'_> {}

/// Builds [`Fields`] depth first: a node's children are given a block of slots as soon as
/// their number is known, and each slot is filled once its own subtree is laid out.
pub(crate) struct Builder {
    text: String,
    nodes: Vec<Node>,
}

impl Builder {
    /// An empty builder with room for `nodes` nodes (the root included) and `bytes` of text.
    pub(crate) fn with_capacity(nodes: usize, bytes: usize) -> Builder {
        let mut builder = Builder {
            text: String::with_capacity(bytes),
            nodes: Vec::with_capacity(nodes.max(1)),
        };
        builder.block(1);
        builder
    }

    /// Appends `text`, for a key or a value.
    pub(crate) fn text(&mut self, text: &str) -> Span {
        let start = self.text.len();
        self.text.push_str(text);
        Span {
            start,
            end: self.text.len(),
        }
    }

    /// `len` empty slots for the children of one node; gives the first.
    pub(crate) fn block(&mut self, len: usize) -> usize {
        let first = self.nodes.len();
        self.nodes.resize(
            first + len,
            Node {
                key: Span::EMPTY,
                kind: Kind::Text(Span::EMPTY),
            },
        );
        first
    }

    /// Fills the slot `at` (0 is the root) with a leaf.
    pub(crate) fn leaf(&mut self, at: usize, key: Span, value: Span) {
        self.nodes[at] = Node {
            key,
            kind: Kind::Text(value),
        };
    }

    /// Fills the slot `at` with an object or a list whose children are the block at `first`.
    pub(crate) fn parent(&mut self, at: usize, key: Span, first: usize, len: usize, list: bool) {
        let kind = if list {
            Kind::List { first, len }
        } else {
            Kind::Object { first, len }
        };
        self.nodes[at] = Node { key, kind };
    }

    pub(crate) fn finish(self) -> Fields {
        Fields {
            text: self.text,
            nodes: self.nodes,
        }
    }

    /// Lays out `value` in the slot `at`. Leaves become strings as in a JSON body: numbers as
    /// written, booleans `1`/`0`, `null` empty.
    fn value(&mut self, at: usize, key: Span, value: &Value) {
        match value {
            Value::String(text) => {
                let span = self.text(text);
                self.leaf(at, key, span);
            }
            Value::Number(number) => {
                let span = self.text(&number.to_string());
                self.leaf(at, key, span);
            }
            Value::Bool(flag) => {
                let span = self.text(if *flag { "1" } else { "0" });
                self.leaf(at, key, span);
            }
            Value::Null => self.leaf(at, key, Span::EMPTY),
            Value::Array(items) => {
                let first = self.block(items.len());
                for (i, item) in items.iter().enumerate() {
                    self.value(first + i, Span::EMPTY, item);
                }
                self.parent(at, key, first, items.len(), true);
            }
            Value::Object(object) => {
                let first = self.block(object.len());
                for (i, (name, child)) in object.iter().enumerate() {
                    let name = self.text(name);
                    self.value(first + i, name, child);
                }
                self.parent(at, key, first, object.len(), false);
            }
        }
    }
}

impl From<&Value> for Fields {
    /// The same tree; leaves that are not strings are written as a JSON body's are (numbers
    /// as written, booleans `1`/`0`, `null` empty). Objects stay objects and arrays lists.
    fn from(value: &Value) -> Self {
        let mut builder = Builder::with_capacity(1, 0);
        builder.value(0, Span::EMPTY, value);
        builder.finish()
    }
}

impl From<Value> for Fields {
    fn from(value: Value) -> Self {
        Fields::from(&value)
    }
}

impl From<&Fields> for Value {
    fn from(fields: &Fields) -> Self {
        fields.to_value()
    }
}

impl From<Fields> for Value {
    fn from(fields: Fields) -> Self {
        fields.to_value()
    }
}

impl Serialize for Field<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.node.kind {
            Kind::Text(span) => serializer.serialize_str(self.text_of(span)),
            Kind::List { len, .. } => {
                let mut seq = serializer.serialize_seq(Some(len))?;
                for (_, item) in self.entries() {
                    seq.serialize_element(&item)?;
                }
                seq.end()
            }
            Kind::Object { len, .. } => {
                let mut map = serializer.serialize_map(Some(len))?;
                for (key, child) in self.entries() {
                    map.serialize_entry(key.unwrap_or_default(), &child)?;
                }
                map.end()
            }
        }
    }
}

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.as_field().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Fields::from)
    }
}

impl PartialEq for Field<'_> {
    fn eq(&self, other: &Field<'_>) -> bool {
        match (self.node.kind, other.node.kind) {
            (Kind::Text(_), Kind::Text(_)) => self.as_str() == other.as_str(),
            (Kind::List { .. }, Kind::List { .. }) => {
                self.len() == other.len()
                    && self
                        .entries()
                        .zip(other.entries())
                        .all(|((_, a), (_, b))| a == b)
            }
            (Kind::Object { .. }, Kind::Object { .. }) => {
                self.len() == other.len()
                    && self
                        .entries()
                        .all(|(key, a)| other.get(key.unwrap_or_default()).is_some_and(|b| a == b))
            }
            _ => false,
        }
    }
}

impl PartialEq<Value> for Field<'_> {
    fn eq(&self, other: &Value) -> bool {
        match (self.node.kind, other) {
            (Kind::Text(_), Value::String(text)) => self.as_str() == Some(text),
            (Kind::List { .. }, Value::Array(items)) => {
                self.len() == items.len() && self.entries().zip(items).all(|((_, a), b)| a == *b)
            }
            (Kind::Object { .. }, Value::Object(object)) => {
                self.len() == object.len()
                    && self.entries().all(|(key, a)| {
                        object.get(key.unwrap_or_default()).is_some_and(|b| a == *b)
                    })
            }
            _ => false,
        }
    }
}

impl PartialEq<&str> for Field<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == Some(*other)
    }
}

impl PartialEq for Fields {
    fn eq(&self, other: &Fields) -> bool {
        self.as_field() == other.as_field()
    }
}

impl PartialEq<Value> for Fields {
    fn eq(&self, other: &Value) -> bool {
        self.as_field() == *other
    }
}

impl fmt::Debug for Field<'_> {
    /// The JSON the node stands for.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_string(self) {
            Ok(json) => f.write_str(&json),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_field().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "id": "1",
            "custom_fields": [{"id": "7", "values": [{"value": "a"}, {"value": "b"}]}],
            "linked_leads_id": {"10701093": {"ID": "10701093"}},
            "": "self",
        })
    }

    #[test]
    fn round_trips_through_value_and_serde() {
        let value = sample();
        let fields = Fields::from(&value);
        assert_eq!(fields.to_value(), value);
        assert_eq!(
            serde_json::to_string(&fields).unwrap(),
            serde_json::to_string(&value).unwrap()
        );
        let back: Fields = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(back, fields);
        assert_eq!(fields, value);
    }

    #[test]
    fn reads_by_key_position_and_path() {
        let fields = Fields::from(sample());
        assert_eq!(fields.get("id").unwrap().as_str(), Some("1"));
        assert_eq!(fields.get("").unwrap(), "self");
        assert!(fields.get("missing").is_none());
        let value = fields.path(&["custom_fields", "0", "values", "1", "value"]);
        assert_eq!(value.unwrap().as_str(), Some("b"));
        assert!(fields.path(&["custom_fields", "1"]).is_none());
        assert!(fields.path(&["custom_fields", "x"]).is_none());
        assert!(fields.path(&["id", "x"]).is_none());
        let custom = fields.get("custom_fields").unwrap();
        assert!(custom.is_list() && !custom.is_object() && !custom.is_text());
        let keys: Vec<_> = fields.entries().map(|(key, _)| key).collect();
        assert_eq!(
            keys,
            [
                Some("id"),
                Some("custom_fields"),
                Some("linked_leads_id"),
                Some("")
            ]
        );
        assert_eq!(
            custom.entries().map(|(key, _)| key).collect::<Vec<_>>(),
            [None]
        );
    }

    #[test]
    fn equality_ignores_key_order_but_not_values_or_shape() {
        let a = Fields::from(json!({"a": "1", "b": {"c": "2"}}));
        let b = Fields::from(json!({"b": {"c": "2"}, "a": "1"}));
        assert_eq!(a, b);
        assert_ne!(a, Fields::from(json!({"a": "1", "b": {"c": "3"}})));
        assert_ne!(a, Fields::from(json!({"a": "1"})));
        assert_ne!(
            Fields::from(json!({"a": ["1"]})),
            Fields::from(json!({"a": {"0": "1"}}))
        );
        assert_ne!(a, json!({"a": 1, "b": {"c": "2"}}));
    }

    #[test]
    fn scalars_become_strings() {
        let fields = Fields::from(json!({"n": 1.5, "t": true, "f": false, "z": null}));
        assert_eq!(fields, json!({"n": "1.5", "t": "1", "f": "0", "z": ""}));
    }

    #[test]
    fn default_is_an_empty_object() {
        let fields = Fields::default();
        assert!(fields.is_empty());
        assert_eq!(fields.to_value(), json!({}));
        assert_eq!(format!("{fields:?}"), "{}");
    }
}
