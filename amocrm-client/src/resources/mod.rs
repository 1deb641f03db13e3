//! Resource handles (`client.leads()`, `client.webhooks()`, ...) and what they share:
//! HAL pages, list requests that stream every page, filters.

pub mod account;
pub mod companies;
pub mod contacts;
pub mod custom_fields;
pub mod events;
pub mod leads;
pub mod links;
pub mod notes;
pub mod pipelines;
pub mod tags;
pub mod tasks;
pub mod users;
pub mod webhooks;
pub mod write;

use std::collections::HashSet;
use std::fmt::{self, Display};
use std::hash::Hash;
use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::de::{DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::client::{ApiRequest, Client, Query};
use crate::error::{Error, Result};
use crate::models::ListItem;

/// The most items amoCRM returns in one page, and the most ids one `filter[id][]` call takes.
pub const MAX_PAGE_SIZE: u32 = 250;

/// Entities that own notes and custom fields; their path segment in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EntityType {
    /// `leads`
    Leads,
    /// `contacts`
    Contacts,
    /// `companies`
    Companies,
    /// `customers`
    Customers,
}

impl EntityType {
    /// The path segment, e.g. `leads`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityType::Leads => "leads",
            EntityType::Contacts => "contacts",
            EntityType::Companies => "companies",
            EntityType::Customers => "customers",
        }
    }
}

impl Display for EntityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A time interval for `filter[created_at]`-style filters, in Unix seconds (both ends inclusive).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// Start, Unix seconds.
    pub from: Option<i64>,
    /// End, Unix seconds.
    pub to: Option<i64>,
}

impl TimeRange {
    /// From `from` on.
    pub fn since(from: DateTime<Utc>) -> Self {
        TimeRange {
            from: Some(from.timestamp()),
            to: None,
        }
    }

    /// From `from` to `to`.
    pub fn between(from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        TimeRange {
            from: Some(from.timestamp()),
            to: Some(to.timestamp()),
        }
    }

    pub(crate) fn push(&self, query: &mut Query, key: &str) {
        if let Some(from) = self.from {
            query.push(format!("{key}[from]"), from);
        }
        if let Some(to) = self.to {
            query.push(format!("{key}[to]"), to);
        }
    }
}

/// Sort order for lists (`order[updated_at]=asc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    /// The field to sort by.
    pub field: OrderField,
    /// Newest (largest) first.
    pub descending: bool,
}

/// Fields lists can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OrderField {
    /// `created_at`
    CreatedAt,
    /// `updated_at`
    UpdatedAt,
    /// `id`
    Id,
}

impl Order {
    /// Smallest first.
    pub fn ascending(field: OrderField) -> Self {
        Order {
            field,
            descending: false,
        }
    }

    /// Largest first.
    pub fn descending(field: OrderField) -> Self {
        Order {
            field,
            descending: true,
        }
    }

    pub(crate) fn push(&self, query: &mut Query) {
        let field = match self.field {
            OrderField::CreatedAt => "created_at",
            OrderField::UpdatedAt => "updated_at",
            OrderField::Id => "id",
        };
        query.push(
            format!("order[{field}]"),
            if self.descending { "desc" } else { "asc" },
        );
    }
}

/// One page of a list.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Page<T> {
    /// The page's items.
    pub items: Vec<T>,
    /// 1-based page number.
    pub page: u32,
    /// Whether amoCRM linked a next page (`_links.next`).
    pub has_next: bool,
    /// `_total_items`, when amoCRM sends it.
    pub total_items: Option<u64>,
}

impl<T> Page<T> {
    fn empty(page: u32) -> Self {
        Page {
            items: Vec::new(),
            page,
            has_next: false,
            total_items: None,
        }
    }
}

/// A HAL list body: `{"_page": 1, "_links": {"next": ...}, "_embedded": {"leads": [...]}}`.
#[derive(Deserialize)]
#[serde(bound = "T: ListItem")]
pub(crate) struct HalList<T> {
    #[serde(rename = "_page", default)]
    page: Option<u32>,
    #[serde(rename = "_total_items", default)]
    total_items: Option<u64>,
    #[serde(rename = "_links", default)]
    links: Option<HalLinks>,
    #[serde(rename = "_embedded", default = "HalEmbedded::empty")]
    embedded: HalEmbedded<T>,
}

impl<T: ListItem> HalList<T> {
    pub(crate) fn into_items(self) -> Vec<T> {
        self.embedded.0
    }
}

#[derive(Deserialize)]
struct HalLinks {
    #[serde(default)]
    next: Option<IgnoredAny>,
}

/// `_embedded`: the array under `T::KEY`; other keys are skipped without being parsed.
pub(crate) struct HalEmbedded<T>(Vec<T>);

impl<T> HalEmbedded<T> {
    fn empty() -> Self {
        HalEmbedded(Vec::new())
    }
}

impl<'de, T: ListItem> Deserialize<'de> for HalEmbedded<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EmbeddedVisitor<T>(PhantomData<T>);

        impl<'de, T: ListItem> Visitor<'de> for EmbeddedVisitor<T> {
            type Value = HalEmbedded<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an _embedded object with `{}`", T::KEY)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key == T::KEY {
                        items = map.next_value::<Option<Vec<T>>>()?.unwrap_or_default();
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(HalEmbedded(items))
            }

            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(HalEmbedded::empty())
            }

            // An empty `_embedded` sometimes arrives as `[]`.
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(HalEmbedded::empty())
            }
        }

        deserializer.deserialize_any(EmbeddedVisitor(PhantomData))
    }
}

/// A list call: fetch one page, or stream every page as it comes.
#[derive(Debug, Clone)]
#[must_use = "a list request does nothing until a page or the stream is awaited"]
pub struct ListRequest<T> {
    client: Client,
    template: &'static str,
    path: String,
    query: Query,
    limit: Option<u32>,
    max_limit: u32,
    _item: PhantomData<fn() -> T>,
}

impl<T: ListItem> ListRequest<T> {
    pub(crate) fn new(
        client: &Client,
        template: &'static str,
        path: impl Into<String>,
        query: Query,
        limit: Option<u32>,
        max_limit: u32,
    ) -> Self {
        ListRequest {
            client: client.clone(),
            template,
            path: path.into(),
            query,
            limit,
            max_limit,
            _item: PhantomData,
        }
    }

    /// Items per page, capped at what the endpoint allows (250 for leads and contacts).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Fetches page `page` (1-based). 204 No Content is an empty last page.
    pub async fn page(&self, page: u32) -> Result<Page<T>> {
        let mut query = self.query.clone();
        if let Some(limit) = self.limit {
            query.push("limit", limit.clamp(1, self.max_limit));
        }
        query.push("page", page.max(1));
        let request = ApiRequest::get(self.template, self.path.clone()).query(query);
        Ok(match self.client.send_json::<HalList<T>>(&request).await? {
            None => Page::empty(page),
            Some(list) => Page {
                page: list.page.unwrap_or(page),
                has_next: list.links.is_some_and(|l| l.next.is_some()),
                total_items: list.total_items,
                items: list.embedded.0,
            },
        })
    }

    /// Every page in order, following `_links.next`; ends at a page without one, or at 204.
    ///
    /// The stream is boxed (and so `Unpin`): call `.next().await` on it directly.
    pub fn pages(self) -> BoxStream<Page<T>> {
        futures::stream::try_unfold((self, Some(1u32)), |(this, next)| async move {
            let Some(number) = next else {
                return Ok(None);
            };
            let page = this.page(number).await?;
            let next = (page.has_next && !page.items.is_empty()).then_some(number + 1);
            Ok(Some((page, (this, next))))
        })
        .boxed()
    }

    /// Every item of every page, fetching pages lazily.
    ///
    /// Boxed (and so `Unpin`) like [`pages`](Self::pages):
    ///
    /// ```no_run
    /// use amocrm_client::{Client, LeadsFilter, StreamExt};
    ///
    /// # async fn run(client: Client) -> amocrm_client::Result<()> {
    /// let since = chrono::Utc::now() - chrono::Duration::hours(1);
    /// let mut leads = client.leads().list(LeadsFilter::updated_since(since)).stream();
    /// while let Some(lead) = leads.next().await {
    ///     let lead = lead?;
    ///     println!("{} {}", lead.id.0, lead.name);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn stream(self) -> BoxStream<T> {
        self.pages()
            .map_ok(|page| futures::stream::iter(page.items.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    /// Every item of every page, collected.
    pub async fn all(self) -> Result<Vec<T>> {
        self.stream().try_collect().await
    }

    /// The query this request sends (without `page`/`limit`), e.g. for logging.
    pub fn query(&self) -> &Query {
        &self.query
    }
}

/// `GET /api/v4/{entity}/{id}`: `None` for 404 and for 204 (amoCRM answers a missing entity
/// either way).
pub(crate) async fn find_one<T: DeserializeOwned>(
    client: &Client,
    template: &str,
    path: String,
    query: Query,
) -> Result<Option<T>> {
    let request = ApiRequest::get(template, path).query(query);
    match client.send_json(&request).await {
        Err(Error::NotFound { .. }) => Ok(None),
        other => other,
    }
}

/// Like [`find_one`], a missing entity being [`Error::NotFound`].
pub(crate) async fn get_one<T: DeserializeOwned>(
    client: &Client,
    template: &str,
    path: String,
    query: Query,
) -> Result<T> {
    find_one(client, template, path, query)
        .await?
        .ok_or_else(|| Error::NotFound {
            endpoint: format!("GET {template}"),
        })
}

/// `GET /api/v4/{entity}?filter[id][]=..`: ids deduplicated, at most 250 a request, one
/// page per request (a chunk of n ids cannot fill more than one page of 250).
pub(crate) async fn get_many<T: ListItem, I: Copy + Display + Eq + Hash>(
    client: &Client,
    template: &'static str,
    path: &str,
    ids: &[I],
    base_query: Query,
) -> Result<Vec<T>> {
    let mut seen = HashSet::with_capacity(ids.len());
    let unique: Vec<I> = ids.iter().copied().filter(|id| seen.insert(*id)).collect();
    let mut items = Vec::with_capacity(unique.len());
    for chunk in unique.chunks(MAX_PAGE_SIZE as usize) {
        let mut query = Query::new();
        query.push_all("filter[id]", chunk.iter());
        for (key, value) in base_query.pairs() {
            query.push(key.clone(), value);
        }
        let list = ListRequest::<T>::new(
            client,
            template,
            path,
            query,
            Some(MAX_PAGE_SIZE),
            MAX_PAGE_SIZE,
        );
        items.extend(list.page(1).await?.items);
    }
    Ok(items)
}

pub(crate) fn with_query<W: AsRef<str>>(with: &[W]) -> Query {
    let mut query = Query::new();
    query.push_joined("with", with);
    query
}

pub(crate) fn push_extra(query: &mut Query, extra: &[(String, String)]) {
    for (key, value) in extra {
        query.push(key.clone(), value);
    }
}

/// Decodes a HAL list body (`{"_embedded": {"leads": [...]}}`) into its items, e.g. a page
/// fetched by other means.
pub fn decode_list<T: ListItem>(body: &[u8]) -> serde_json::Result<Vec<T>> {
    serde_json::from_slice::<HalList<T>>(body).map(HalList::into_items)
}

/// Boxed item stream, for callers that store streams in structs.
pub type BoxStream<T> = futures::stream::BoxStream<'static, Result<T>>;

impl<T: ListItem> ListRequest<T> {
    /// The same as [`stream`](Self::stream), which is boxed itself now; kept for existing callers.
    pub fn boxed_stream(self) -> BoxStream<T> {
        self.stream()
    }
}
