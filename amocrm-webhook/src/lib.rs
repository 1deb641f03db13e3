//! Parses amoCRM / Kommo webhook bodies into typed events with a stable content hash.
//!
//! amoCRM posts `application/x-www-form-urlencoded` bodies whose keys are PHP-style bracketed
//! paths (`leads[status][0][custom_fields][0][values][0][value]=...`) plus an `account[...]`
//! block. This crate decodes such a body (or the same structure as JSON) into a tree, splits it
//! into one [`WebhookEvent`] per `section[action][index]`, and gives each event a dotted
//! [`event_type`](WebhookEvent::event_type), typed accessors and a SHA-256
//! [`event_hash`](WebhookEvent::event_hash) for de-duplication. It does no I/O.
//!
//! Ids and custom fields are the types of `amocrm-types`, re-exported as [`types`] and shared
//! with `amocrm-client`: [`status_id`](WebhookEvent::status_id) is a
//! [`StatusId`](types::StatusId), a lead event's id read with
//! [`entity_id_as::<LeadId>`](WebhookEvent::entity_id_as) is the [`LeadId`](types::LeadId) the
//! client fetches. [`entity_id`](WebhookEvent::entity_id) keeps the id as sent, as text.
//!
//! ```
//! use amocrm_webhook::types::{AccountId, LeadId, StatusId};
//!
//! let body = b"leads%5Bstatus%5D%5B0%5D%5Bid%5D=31840021\
//!     &leads%5Bstatus%5D%5B0%5D%5Bstatus_id%5D=142\
//!     &leads%5Bstatus%5D%5B0%5D%5Bold_status_id%5D=61208755\
//!     &account%5Bid%5D=29071803&account%5Bsubdomain%5D=geodrive";
//! let batch = amocrm_webhook::parse_form(body)?;
//! let event = &batch.events[0];
//! assert_eq!(event.event_type(), "lead.status");
//! assert_eq!(event.entity_id(), Some("31840021"));
//! assert_eq!(event.entity_id_as::<LeadId>(), Some(LeadId(31840021)));
//! assert_eq!(event.account_id(), Some(AccountId(29071803)));
//! assert_eq!(event.old_status_id(), Some(StatusId(61208755)));
//! assert_eq!(event.status_id(), Some(StatusId::WON));
//! assert_eq!(event.event_hash().len(), 64);
//! # Ok::<(), amocrm_webhook::Error>(())
//! ```
//!
//! # Reading custom fields, status, pipeline and price
//!
//! [`WebhookEvent::custom_field_by_id`] and [`WebhookEvent::custom_field_by_code`] find one
//! [`CustomField`] (the type `amocrm-client` reads from the API, too); its
//! [`text`](CustomField::text), [`enum_id`](CustomField::enum_id),
//! [`enum_ids`](CustomField::enum_ids) and [`unix_seconds`](CustomField::unix_seconds) read
//! the values whatever shape they came in: `values[j][value|enum]`, a date field's bare
//! `values[0]=<unix seconds>`, a radio button's `values[value]=..&values[enum]=..` with no
//! index, or a multiselect's repeated `values[j][enum]`. Brackets may arrive literal or, as
//! amoCRM sends them, as `%5B`/`%5D`: both decode alike.
//!
//! ```
//! use amocrm_webhook::types::{CustomFieldId, EnumId, PipelineId, StatusId, UserId};
//!
//! let body = "leads[status][0][id]=31840021\
//!     &leads[status][0][status_id]=142&leads[status][0][pipeline_id]=7401234\
//!     &leads[status][0][price]=10500&leads[status][0][responsible_user_id]=8215487\
//!     &leads[status][0][custom_fields][0][id]=771001\
//!     &leads[status][0][custom_fields][0][name]=RentProg+ID\
//!     &leads[status][0][custom_fields][0][values][0][value]=RP-48213\
//!     &leads[status][0][custom_fields][1][id]=771003\
//!     &leads[status][0][custom_fields][1][name]=utm_source\
//!     &leads[status][0][custom_fields][1][code]=UTM_SOURCE\
//!     &leads[status][0][custom_fields][1][values][0][value]=yandex\
//!     &leads[status][0][custom_fields][2][id]=771004\
//!     &leads[status][0][custom_fields][2][values][0]=1764000000\
//!     &leads[status][0][custom_fields][3][id]=771005\
//!     &leads[status][0][custom_fields][3][values][value]=%D0%94%D0%B0\
//!     &leads[status][0][custom_fields][3][values][enum]=551301\
//!     &account[id]=29071803&account[subdomain]=geodrive";
//! let batch = amocrm_webhook::parse_form(body.as_bytes())?;
//! let event = &batch.events[0];
//! assert_eq!(event.status_id(), Some(StatusId(142)));
//! assert_eq!(event.pipeline_id(), Some(PipelineId(7401234)));
//! assert_eq!(event.price(), Some(10500));
//! assert_eq!(event.responsible_user_id(), Some(UserId(8215487)));
//!
//! let rentprog = event.custom_field_by_id(CustomFieldId(771001)).expect("field 771001");
//! assert_eq!(rentprog.name.as_deref(), Some("RentProg ID"));
//! assert_eq!(rentprog.text(), Some("RP-48213"));
//!
//! let source = event.custom_field_by_code("UTM_SOURCE").expect("UTM_SOURCE");
//! assert_eq!((source.id, source.text()), (CustomFieldId(771003), Some("yandex")));
//!
//! // A date field: Unix seconds in `values[0]`, no `[value]` leaf.
//! let date = event.custom_field_by_id(CustomFieldId(771004)).expect("field 771004");
//! assert_eq!(date.unix_seconds(), Some(1764000000));
//!
//! // A radio button: one value object without an index.
//! let radio = event.custom_field_by_id(CustomFieldId(771005)).expect("field 771005");
//! assert_eq!((radio.text(), radio.enum_id()), (Some("Да"), Some(EnumId(551301))));
//!
//! assert!(event.custom_field_by_id(CustomFieldId(1)).is_none());
//! # Ok::<(), amocrm_webhook::Error>(())
//! ```
//!
//! # Decoding
//!
//! - `+` is a space and `%XX` a byte; keys and values must then be UTF-8. Values are kept
//!   exactly as sent: `&amp;` stays `&amp;`, a double-encoded `%2B` stays `%2B`.
//! - A key is `name` followed by any number of `[segment]`; `[]` appends to a list.
//! - A map whose keys are exactly `0..n`, in any order, becomes a JSON array in index order.
//!   Any other map — skipped indices, ids used as keys (`linked_leads_id[10701093][ID]`),
//!   names — stays a JSON object in first-seen order. Nothing is allocated by index value.
//! - A node that is both a scalar and a parent (`a=1&a[b]=2`) keeps its scalar under the
//!   empty key: `{"a": {"": "1", "b": "2"}}`. A repeated scalar key keeps the last value.
//! - Every leaf is a string. A JSON body is brought to the same shape: numbers as written,
//!   booleans as `1`/`0`, `null` as an empty string, objects keyed `0..n` as arrays.
//!
//! # Events
//!
//! Each child of `section[action]` is one event; its subtree is
//! [`fields`](WebhookEvent::fields), a [`Fields`]: the tree described above, kept in two
//! allocations (cheaper to build and free than a `serde_json::Value`), read with
//! [`get`](Fields::get), [`path`](Fields::path) and [`entries`](Fields::entries), serialized as
//! exactly that JSON, and turned into a `Value` with [`to_value`](Fields::to_value). Top-level keys that are not events are kept in
//! [`WebhookBatch::unparsed`]; a body with no event at all is [`Error::NoEvents`].
//!
//! | section | action | [`Entity`] | `event_type()` |
//! | --- | --- | --- | --- |
//! | `leads` | `add` `update` `delete` `restore` `status` `responsible` | `Lead` | `lead.add`, `lead.update`, `lead.delete`, `lead.restore`, `lead.status`, `lead.responsible` |
//! | `contacts` (no `type=company`) | as above | `Contact` | `contact.add`, `contact.update`, ... |
//! | `contacts` with `type=company` | as above | `Company` | `company.add`, `company.update`, ... |
//! | `companies` | as above | `Company` | `company.*` |
//! | `customers` | as above | `Customer` | `customer.*` |
//! | `tasks` | as above | `Task` | `task.*` |
//! | `catalogs` | as above | `Catalog` | `catalog.*` |
//! | `unsorted` | `add` `update` `delete` | `Unsorted` | `unsorted.add`, `unsorted.update`, `unsorted.delete` |
//! | `talk` | `add` `update` | `Talk` | `conversation.add`, `conversation.update` |
//! | `message` | `add` | `Message` | `message.add` |
//! | any of the above | `note` | `Note { parent }` | `note.add` |
//! | anything else, e.g. `widgets` | any | `Other("widgets")` | `widgets.<action>` |
//! | any known section | unknown, e.g. `merge` | as the section | e.g. `lead.merge` |
//!
//! A note's fields sit one level down (`leads[note][0][note][id]`): `fields` keeps the whole
//! item, and the typed accessors read the inner `note`. A note under `contacts` is a company
//! note (`Note { parent: Company }`) when the item or its note has `type=company`, or the note
//! has `element_type=3`.
//!
//! The entity id is `id`; a talk without one uses `talk_id`, an unsorted item `uid`. The
//! account id is `account[id]`, else the event's own `account_id`.
//!
//! # Hash
//!
//! [`WebhookEvent::event_hash`] is the hex SHA-256 of this canonical form, one line of
//! compact JSON (see [`canonical_form`]):
//!
//! ```text
//! ["amocrm-webhook/1",<account_id>,<subdomain>,<section>,<action>,<entity>,<entity_id>,<fields>]
//! ```
//!
//! `account_id` is a number or `null`, `subdomain` and `entity_id` strings or `null`,
//! `section` and `action` the raw names, `entity` the serde form of [`Entity`], and `fields`
//! the tree with every object's keys sorted by their UTF-8 bytes. JSON string escaping makes
//! the form unambiguous, so the same event hashes the same whatever its key order, and any
//! changed value changes the hash. An event survives a serde round trip with the same hash.
//!
//! # Limits
//!
//! [`Limits`] bounds a body: 1 MiB, 10,000 keys, 16 segments per key by default (real
//! deliveries stay under 8 KB, 90 keys and 10 segments). Breaking one, bad percent-encoding,
//! bad UTF-8 and malformed keys are each an [`Error`] variant naming the place (byte offset
//! or key). Parsing never panics; the fuzz target and property tests check that (see the
//! crate README).

#![warn(missing_docs)]

mod batch;
mod encode;
mod error;
mod event;
mod fields;
mod form;
mod hash;
mod json;
mod parser;
mod tree;

pub use batch::{Account, WebhookBatch};
pub use encode::encode_form;
pub use error::{Error, Result};
pub use event::{Action, Entity, EntityIdType, Tag, WebhookEvent};

/// The ids and custom-field types shared with `amocrm-client` (the `amocrm-types` crate).
pub use amocrm_types as types;
pub use amocrm_types::{CustomField, CustomFieldValue};
pub use fields::{Entries, Field, Fields};
pub use hash::canonical_form;
pub use parser::{Limits, Parser, looks_like_json, parse_form, parse_json};
