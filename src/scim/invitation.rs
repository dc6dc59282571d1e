//! The request header by which a client asks the server to create a user without sending its
//! invitation. The operator sends it for users declared in namespaces it does not trust, so
//! that such a namespace cannot make the service e-mail any address it likes.

/// Header name (lower case, as HTTP/2 carries it).
pub const HEADER: &str = "scim-invitation";

/// The one value: create the user, withhold the invitation (an administrator may send it later
/// with a resend).
pub const WITHHOLD: &str = "withhold";

/// Whether a request carrying `value` in [`HEADER`] asks to withhold the invitation. Any other
/// value is ignored, so a header meant for another server asks nothing of this one.
pub fn withholds(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case(WITHHOLD))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_withhold_value_withholds() {
        assert!(withholds(Some("withhold")));
        assert!(withholds(Some(" Withhold ")));
        assert!(!withholds(None));
        assert!(!withholds(Some("send")));
        assert!(!withholds(Some("")));
    }
}
