//! Hiding secrets in text meant for logs and error messages.

/// Hides the password in a URL (`postgres://user:***@host/db`, `smtps://user:***@relay`);
/// anything else (a file path, a URL without a password) is returned as it is.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_hidden() {
        assert_eq!(redact_url("postgres://scim:s3cret@db:5432/scim"), "postgres://scim:***@db:5432/scim");
        assert_eq!(redact_url("smtps://relay:p@ss@mail.example.com:465"), "smtps://relay:***@mail.example.com:465");
        assert_eq!(redact_url("smtp://user@relay:25"), "smtp://user@relay:25");
        assert_eq!(redact_url("/var/lib/scim.db"), "/var/lib/scim.db");
    }
}
