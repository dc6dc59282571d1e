//! A discovery probe: what an identity provider's "Test connection" does first. It asks a SCIM
//! base URL for `/ServiceProviderConfig`, `/ResourceTypes` and `/Schemas` (RFC 7644 §4) and
//! says, per endpoint, what answered: the status and what the answer advertises, or why there
//! was none. The console's *Connect an identity provider* page runs it against this server's own
//! public base URL.

use serde_json::Value;
use std::time::Duration;

/// The endpoints asked, in order.
pub const ENDPOINTS: [&str; 3] = ["/ServiceProviderConfig", "/ResourceTypes", "/Schemas"];

/// What one endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeStep {
    /// The URL asked.
    pub url: String,
    /// The HTTP status, or `None` when nothing answered.
    pub status: Option<u16>,
    /// Whether the answer is what a SCIM service provider sends (2xx with the expected JSON).
    pub ok: bool,
    /// What the answer says, one line each (capabilities, resource types, schema ids), or the
    /// error: the SCIM error's detail, the body's first characters, or why nothing answered.
    pub lines: Vec<String>,
}

/// Asks the discovery endpoints under `base_url`, sending `token` as the bearer key if given;
/// follows no redirect (an identity provider does not either) and waits at most `timeout` for
/// each.
pub async fn probe(base_url: &str, token: Option<&str>, timeout: Duration) -> Vec<ProbeStep> {
    let base = base_url.trim_end_matches('/');
    let http = match reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("scim-operator-console/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            let failed = |p: &str| ProbeStep {
                url: format!("{base}{p}"),
                status: None,
                ok: false,
                lines: vec![format!("no HTTP client: {e}")],
            };
            return ENDPOINTS.iter().map(|p| failed(p)).collect();
        }
    };
    let mut steps = Vec::new();
    for path in ENDPOINTS {
        let url = format!("{base}{path}");
        let mut req = http.get(&url).header(reqwest::header::ACCEPT, "application/scim+json");
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let step = match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                answered(url, path, status, &body)
            }
            Err(e) => ProbeStep { url, status: None, ok: false, lines: vec![unreachable(&e)] },
        };
        steps.push(step);
    }
    steps
}

/// Why nothing answered, in words.
fn unreachable(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = if e.is_timeout() {
        "no answer in time".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else {
        "the request failed".to_string()
    };
    // The innermost cause says what failed (DNS, refused, certificate).
    let mut source = e.source();
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    if let Some(cause) = last {
        text.push_str(": ");
        text.push_str(&cause);
    }
    text
}

/// The step of an answer with `status` and `body` from `path`.
pub fn answered(url: String, path: &str, status: u16, body: &str) -> ProbeStep {
    let json: Option<Value> = serde_json::from_str(body).ok();
    if !(200..300).contains(&status) {
        let detail = json
            .as_ref()
            .and_then(|j| j.get("detail"))
            .and_then(Value::as_str)
            .map(|d| format!("SCIM error: {d}"))
            .unwrap_or_else(|| format!("answer: {}", first_chars(body, 200)));
        let mut lines = vec![detail];
        match status {
            401 => lines.push("The URL reaches a SCIM server that wants a key: give the key to test it.".into()),
            301 | 302 | 303 | 307 | 308 => {
                lines.push("A redirect: identity providers do not follow them; use the URL it points at.".into())
            }
            404 => lines.push("Nothing SCIM at this URL: check the path (it ends in /scim/v2).".into()),
            _ => {}
        }
        return ProbeStep { url, status: Some(status), ok: false, lines };
    }
    let Some(json) = json else {
        return ProbeStep {
            url,
            status: Some(status),
            ok: false,
            lines: vec![format!("the answer is not JSON: {}", first_chars(body, 200))],
        };
    };
    let lines = match path {
        "/ServiceProviderConfig" => capabilities(&json),
        "/ResourceTypes" => resources(&json, |r| {
            let name = text(r, "name");
            let endpoint = text(r, "endpoint");
            let extensions: Vec<String> = r
                .get("schemaExtensions")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|e| text(e, "schema")).collect())
                .unwrap_or_default();
            if extensions.is_empty() {
                format!("{name} at {endpoint}")
            } else {
                format!("{name} at {endpoint} (extensions: {})", extensions.join(", "))
            }
        }),
        _ => resources(&json, |r| text(r, "id")),
    };
    let ok = !lines.is_empty();
    let lines = if ok { lines } else { vec!["the answer advertises nothing".into()] };
    ProbeStep { url, status: Some(status), ok, lines }
}

/// The capabilities a ServiceProviderConfig advertises.
fn capabilities(c: &Value) -> Vec<String> {
    let supported = |name: &str| c.get(name).and_then(|f| f.get("supported")).and_then(Value::as_bool);
    let word = |b: Option<bool>| match b {
        Some(true) => "supported",
        Some(false) => "not supported",
        None => "not said",
    };
    let mut lines = Vec::new();
    if c.get("schemas").is_none() {
        return lines;
    }
    lines.push(format!("PATCH: {}", word(supported("patch"))));
    let filter = c.get("filter");
    let max_results = filter.and_then(|f| f.get("maxResults")).and_then(Value::as_u64);
    lines.push(match max_results {
        Some(n) if supported("filter") == Some(true) => format!("filter: supported, at most {n} results per page"),
        _ => format!("filter: {}", word(supported("filter"))),
    });
    let bulk = c.get("bulk");
    let max_ops = bulk.and_then(|b| b.get("maxOperations")).and_then(Value::as_u64);
    lines.push(match max_ops {
        Some(n) if supported("bulk") == Some(true) => format!("bulk: supported, at most {n} operations"),
        _ => format!("bulk: {}", word(supported("bulk"))),
    });
    for name in ["sort", "etag", "changePassword"] {
        lines.push(format!("{name}: {}", word(supported(name))));
    }
    let schemes: Vec<String> = c
        .get("authenticationSchemes")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|s| text(s, "name")).collect())
        .unwrap_or_default();
    if !schemes.is_empty() {
        lines.push(format!("authentication: {}", schemes.join(", ")));
    }
    lines
}

/// One line per resource of a ListResponse (or of a plain array).
fn resources(list: &Value, line: impl Fn(&Value) -> String) -> Vec<String> {
    let items = list.get("Resources").or(Some(list)).and_then(Value::as_array);
    items.map(|a| a.iter().map(line).collect()).unwrap_or_default()
}

fn text(v: &Value, name: &str) -> String {
    v.get(name).and_then(Value::as_str).unwrap_or("?").to_string()
}

/// At most `n` characters of `s`, on one line.
fn first_chars(s: &str, n: usize) -> String {
    let one_line: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).take(n).collect();
    if s.chars().count() > n { format!("{one_line}…") } else { one_line }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_service_provider_config_reads_as_its_capabilities() {
        let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": {"supported": true}, "bulk": {"supported": false, "maxOperations": 0},
            "filter": {"supported": true, "maxResults": 1000}, "sort": {"supported": true},
            "etag": {"supported": true}, "changePassword": {"supported": false},
            "authenticationSchemes": [{"name": "OAuth Bearer Token", "type": "oauthbearertoken"}]});
        let step = answered("u".into(), "/ServiceProviderConfig", 200, &body.to_string());
        assert!(step.ok);
        assert_eq!(
            step.lines,
            [
                "PATCH: supported",
                "filter: supported, at most 1000 results per page",
                "bulk: not supported",
                "sort: supported",
                "etag: supported",
                "changePassword: not supported",
                "authentication: OAuth Bearer Token"
            ]
        );
    }

    #[test]
    fn resource_types_and_schemas_are_listed() {
        let types = json!({"Resources": [{"name": "User", "endpoint": "/Users",
            "schemaExtensions": [{"schema": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"}]},
            {"name": "Group", "endpoint": "/Groups"}]});
        let step = answered("u".into(), "/ResourceTypes", 200, &types.to_string());
        assert_eq!(
            step.lines,
            [
                "User at /Users (extensions: urn:ietf:params:scim:schemas:extension:enterprise:2.0:User)",
                "Group at /Groups"
            ]
        );
        let schemas = json!({"Resources": [{"id": "urn:a"}, {"id": "urn:b"}]});
        assert_eq!(answered("u".into(), "/Schemas", 200, &schemas.to_string()).lines, ["urn:a", "urn:b"]);
    }

    #[tokio::test]
    async fn nothing_listening_is_said_per_endpoint() {
        // A port just released: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let steps = probe(&format!("http://127.0.0.1:{port}/scim/v2/"), None, Duration::from_secs(5)).await;
        assert_eq!(steps.len(), 3);
        assert_eq!(steps[0].url, format!("http://127.0.0.1:{port}/scim/v2/ServiceProviderConfig"));
        for step in steps {
            assert!(!step.ok && step.status.is_none(), "{step:?}");
            assert!(step.lines[0].starts_with("could not connect"), "{step:?}");
        }
    }

    #[test]
    fn refusals_and_other_answers_say_what_to_do() {
        let e = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "401",
            "detail": "the key is unknown or revoked"});
        let step = answered("u".into(), "/Schemas", 401, &e.to_string());
        assert!(!step.ok);
        assert_eq!(step.lines[0], "SCIM error: the key is unknown or revoked");
        assert!(step.lines[1].contains("give the key"));
        let html = answered("u".into(), "/Schemas", 200, "<html>\n<body>login</body></html>");
        assert!(!html.ok && html.lines[0].starts_with("the answer is not JSON: <html> <body>"), "{html:?}");
        let moved = answered("u".into(), "/Schemas", 302, "");
        assert!(moved.lines[1].contains("redirect"));
        assert!(!answered("u".into(), "/Schemas", 200, "{}").ok, "an empty answer advertises nothing");
    }
}
