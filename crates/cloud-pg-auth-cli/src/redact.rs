//! Passwords out of URLs in text the tool prints. A `DATABASE_URL`, an identity endpoint or
//! a proxy may be written `scheme://user:password@host/...`, and a library's error or a
//! source's label may quote it; whatever `pgauth` prints goes through [`url_passwords`].

use serde_json::Value;

/// What stands in for a removed password.
pub(crate) const MASK: &str = "***";

/// `text` with the password of every `scheme://user:password@` replaced by [`MASK`], and
/// the value of every query parameter that names a secret (`password`, `sslpassword`,
/// `client_secret`, `X-Amz-Signature`, `...token`) too.
///
/// A URL runs from `://` to the next whitespace or quote. Its userinfo ends at the *last*
/// `@`: a password with an unencoded `/`, `?` or `@` is still a password, and hiding a
/// little too much of an odd URL is better than showing part of one.
#[must_use]
pub(crate) fn url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(after.len());
        let (url, tail) = after.split_at(end);
        redact_one(url, &mut out);
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// [`url_passwords`] on every string in `value`, keys included.
pub(crate) fn json(value: &mut Value) {
    match value {
        Value::String(s) if s.contains("://") => *s = url_passwords(s),
        Value::Array(items) => items.iter_mut().for_each(json),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (key, mut item) in entries {
                json(&mut item);
                map.insert(url_passwords(&key), item);
            }
        }
        _ => {}
    }
}

/// One URL without its scheme: `userinfo@host/path?query`.
fn redact_one(url: &str, out: &mut String) {
    let after_userinfo = match url.rsplit_once('@') {
        Some((userinfo, host)) => {
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(MASK);
                }
                None => out.push_str(userinfo),
            }
            out.push('@');
            host
        }
        None => url,
    };
    let Some((path, query)) = after_userinfo.split_once('?') else {
        out.push_str(after_userinfo);
        return;
    };
    out.push_str(path);
    out.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((key, _)) if names_a_secret(key) => {
                out.push_str(key);
                out.push('=');
                out.push_str(MASK);
            }
            _ => out.push_str(pair),
        }
    }
}

fn names_a_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "token", "signature"]
        .iter()
        .any(|word| key.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(url_passwords(input), expected, "{input:?}");
    }

    #[test]
    fn urls_with_userinfo_lose_their_password() {
        check(
            "postgres://app:s3cret@db.internal:6432/orders",
            "postgres://app:***@db.internal:6432/orders",
        );
        check(
            "cannot reach http://u:p%40ss@127.0.0.1:8080/msi/token?api-version=2019-08-01 (timeout)",
            "cannot reach http://u:***@127.0.0.1:8080/msi/token?api-version=2019-08-01 (timeout)",
        );
        // An unencoded '/', '?' or '@' in the password: all of it goes.
        check(
            "DATABASE_URL=postgresql://app:pa/ss?w@rd@db/app",
            "DATABASE_URL=postgresql://app:***@db/app",
        );
        // Two URLs, quoted; the text around them stays.
        check(
            "\"https://a:b@x\" and 'http://c:d@y/z'",
            "\"https://a:***@x\" and 'http://c:***@y/z'",
        );
        // Secrets in the query.
        check(
            "postgres://db/app?sslmode=verify-full&password=hunter2&application_name=api",
            "postgres://db/app?sslmode=verify-full&password=***&application_name=api",
        );
        check(
            "https://login.example/t?client_secret=abc&X-Amz-Signature=def&X-Amz-Security-Token=ghi",
            "https://login.example/t?client_secret=***&X-Amz-Signature=***&X-Amz-Security-Token=***",
        );
        // Nothing secret: unchanged.
        check("postgres://app@db/app", "postgres://app@db/app");
        check(
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01",
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01",
        );
        check("no url here: a:b@c", "no url here: a:b@c");
        check("", "");
    }

    #[test]
    fn json_strings_and_keys_lose_url_passwords() {
        let mut value = serde_json::json!({
            "endpoint": "http://u:hunter2@127.0.0.1/x",
            "list": ["postgres://a:hunter2@h/d", 3],
            "http://k:hunter2@h": null,
        });
        json(&mut value);
        let text = value.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(value["endpoint"], "http://u:***@127.0.0.1/x");
    }
}
