//! Reading `application/x-www-form-urlencoded` query strings.
//!
//! `EventSource` cannot set headers, so streams read some values (an access
//! token, a `Last-Event-ID` fallback, topics) from the query.

/// The first value of parameter `name`, percent-decoded.
///
/// ```
/// assert_eq!(sse_core::query::param("a=1&b=x%20y", "b").as_deref(), Some("x y"));
/// assert_eq!(sse_core::query::param("a=1", "b"), None);
/// ```
pub fn param(query: &str, name: &str) -> Option<String> {
    params(query, name).next()
}

/// Every value of parameter `name`, percent-decoded, in order.
///
/// ```
/// let topics: Vec<_> = sse_core::query::params("topic=a&x=1&topic=b", "topic").collect();
/// assert_eq!(topics, ["a", "b"]);
/// ```
pub fn params<'a>(query: &'a str, name: &'a str) -> impl Iterator<Item = String> + 'a {
    form_urlencoded::parse(query.as_bytes())
        .filter(move |(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}
