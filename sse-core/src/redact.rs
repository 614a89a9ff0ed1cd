//! [`redact_url`]: a connection URL fit for logs and error messages.

/// Query parameters whose values are secrets in the URLs the backends take
/// (sqlx's `password` and `sslpassword`, tokens of HTTP-style brokers).
const SECRET_PARAMS: &[&str] = &["password", "sslpassword", "pass", "token", "auth_token"];

/// `url` without its secrets, for printing: a password in the userinfo
/// becomes `***` (the user name stays), a userinfo of one part that may be
/// a token (`nats://TOKEN@host`, `redis://SECRET@host`) becomes `***`
/// except on PostgreSQL URLs (where it is the user), and the values of
/// `password`-like query parameters become `***`. Every backend's errors
/// name their URL this way; print yours through it too.
///
/// ```
/// use sse_core::redact_url;
/// assert_eq!(redact_url("redis://:s3cret@cache:6379/0"), "redis://:***@cache:6379/0");
/// assert_eq!(redact_url("postgres://app:s3cret@db/app"), "postgres://app:***@db/app");
/// assert_eq!(redact_url("postgres://app@db/app?password=s3cret&sslmode=require"),
///            "postgres://app@db/app?password=***&sslmode=require");
/// assert_eq!(redact_url("nats://t0ken@broker:4222"), "nats://***@broker:4222");
/// assert_eq!(redact_url("sqlite://notifications.db"), "sqlite://notifications.db");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let scheme = &url[..scheme_end];
    let rest = &url[scheme_end + 3..];
    // The authority ends at the first `/`, `?` or `#`; userinfo is what
    // precedes its last `@`.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let userinfo = match userinfo.split_once(':') {
                Some((user, _password)) => format!("{user}:***"),
                None if scheme.starts_with("postgres") => userinfo.to_owned(),
                None => "***".to_owned(),
            };
            format!("{userinfo}@{host}")
        }
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((query, fragment)) => (query, Some(fragment)),
                None => (query, None),
            };
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _))
                        if SECRET_PARAMS.contains(&name.to_ascii_lowercase().as_str()) =>
                    {
                        format!("{name}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            let mut tail = format!("{path}?{}", query.join("&"));
            if let Some(fragment) = fragment {
                tail.push('#');
                tail.push_str(fragment);
            }
            tail
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn no_secret_survives() {
        for (url, secret) in [
            ("redis://user:pw1@h:1", "pw1"),
            ("rediss://:pw2@h", "pw2"),
            ("redis://pw3@h", "pw3"),
            ("postgresql://u:pw4@h/db", "pw4"),
            ("postgres://u@h/db?sslpassword=pw5", "pw5"),
            ("postgres://u@h/db?a=1&PASSWORD=pw6#x", "pw6"),
            ("nats://u:pw7@h", "pw7"),
            ("redis://u:p@w8@h", "p@w8"),
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains(secret), "{url} -> {shown}");
            assert!(shown.contains('h'), "{shown}");
        }
        assert_eq!(redact_url("memory"), "memory");
        assert_eq!(redact_url("redis://h:6379/0?db=1"), "redis://h:6379/0?db=1");
    }
}
