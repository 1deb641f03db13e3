//! Query-string handling in the PHP style amoCRM uses (`filter[id][]=1&filter[id][]=2`).

use std::collections::HashSet;

use percent_encoding::percent_decode_str;

use crate::form::encode_component;

/// Decoded `key=value` pairs in their original order; repeated keys are kept.
#[derive(Debug, Default, Clone)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

fn decode(s: &str) -> String {
    // Form encoding writes a space as '+'; a literal '+' arrives as %2B.
    let spaced = s.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

impl Query {
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (decode(k), decode(v)),
                None => (decode(p), String::new()),
            })
            .collect();
        Self { pairs }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value given for `base`, `base[]` or `base[N]`, comma lists split.
    pub(crate) fn list(&self, base: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| key_matches(k, base))
            .flat_map(|(_, v)| v.split(',').map(str::trim).map(str::to_owned))
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// `None` when the filter is absent, an error naming the bad value otherwise.
    pub(crate) fn ids(&self, base: &str) -> Result<Option<Vec<u64>>, String> {
        if !self.pairs.iter().any(|(k, _)| key_matches(k, base)) {
            return Ok(None);
        }
        self.list(base)
            .into_iter()
            .map(|v| v.parse::<u64>().map_err(|_| v))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    pub(crate) fn with(&self) -> HashSet<String> {
        self.list("with").into_iter().collect()
    }

    /// The query re-encoded with `page` replaced, for `_links` hrefs.
    pub(crate) fn with_page(&self, page: usize) -> String {
        let mut out: Vec<String> = self
            .pairs
            .iter()
            .filter(|(k, _)| k != "page")
            .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
            .collect();
        out.push(format!("page={page}"));
        out.join("&")
    }
}

fn key_matches(key: &str, base: &str) -> bool {
    let Some(rest) = key.strip_prefix(base) else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    rest.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .is_some_and(|inner| inner.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_all_documented_spellings() {
        let q = Query::parse(Some(
            "filter%5Bid%5D%5B%5D=1&filter[id][]=2&filter[id][0]=3&filter[id]=4,5&with=contacts",
        ));
        assert_eq!(q.ids("filter[id]").unwrap().unwrap(), vec![1, 2, 3, 4, 5]);
        assert!(q.with().contains("contacts"));
        assert_eq!(q.ids("filter[entity_id]").unwrap(), None);
    }

    #[test]
    fn rejects_non_numeric_ids() {
        let q = Query::parse(Some("filter[id][]=x"));
        assert_eq!(q.ids("filter[id]").unwrap_err(), "x");
    }
}
