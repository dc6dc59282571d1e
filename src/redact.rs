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

/// Replaces every occurrence of each of `secrets` in `text` with `***`: for messages that
/// quote what a foreign server answered, which may echo what it was sent. Empty secrets are
/// skipped (they would match everywhere).
pub fn hide_secrets<'a>(text: &str, secrets: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if !s.is_empty() {
            out = out.replace(s, "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_echoed_in_messages_are_hidden() {
        let echoed = "401: invalid token s3cr3t-token for client ops (secret hunter2)";
        assert_eq!(
            hide_secrets(echoed, ["s3cr3t-token", "hunter2", ""]),
            "401: invalid token *** for client ops (secret ***)"
        );
        assert_eq!(hide_secrets("nothing to hide", ["absent"]), "nothing to hide");
    }

    #[test]
    fn passwords_in_urls_are_hidden() {
        assert_eq!(redact_url("postgres://scim:s3cret@db:5432/scim"), "postgres://scim:***@db:5432/scim");
        assert_eq!(redact_url("smtps://relay:p@ss@mail.example.com:465"), "smtps://relay:***@mail.example.com:465");
        assert_eq!(redact_url("smtp://user@relay:25"), "smtp://user@relay:25");
        assert_eq!(redact_url("/var/lib/scim.db"), "/var/lib/scim.db");
    }
}
