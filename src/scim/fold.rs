//! The one folding of text that compares without regard to case, shared by the in-memory
//! evaluator, the SQL store (which stores folded copies, computed here, beside the originals)
//! and uniqueness of `userName`.
//!
//! SQL `lower()` cannot be used: SQLite's lowers ASCII only and PostgreSQL's follows the
//! database's locale, so the same filter would find different resources on the two stores.
//! The folding is Unicode's canonical caseless match (Unicode §3.13, D145), locale-independent:
//!
//! - full case folding (CaseFolding.txt, statuses C and F): `ß`, `ẞ` and `SS` all fold to `ss`,
//!   `ﬁ` to `fi`, final `ς` to `σ`;
//! - no Turkish special casing: `I` folds to `i`, dotted `İ` to `i` + U+0307, and dotless `ı`
//!   stays `ı` (so `ı` and `I` differ, as they do for any client not set to a Turkish locale);
//! - canonical equivalence: text is decomposed before folding and composed after it (NFC), so a
//!   precomposed `é` and `e` + U+0301 compare equal;
//! - compatibility characters (fullwidth letters, ligatures other than those case folding
//!   expands) are not unified: that is NFKC, which would also change digits and symbols.
//!
//! Folded text compares by code point, on both stores (PostgreSQL with `COLLATE "C"`).

use caseless::Caseless;
use serde_json::{Map, Value};
use std::sync::LazyLock;
use unicode_normalization::UnicodeNormalization;

use super::schema::{AttrType, AttributeDef, ResourceType, group_resource_type, user_resource_type};

/// The folded form of `text`: NFC of the full case folding of its canonical decomposition.
pub fn fold(text: &str) -> String {
    if text.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        // Already folded (the common case: e-mail addresses, ids).
        return text.to_string();
    }
    text.nfd().default_case_fold().nfc().collect()
}

/// Whether values of `def` compare folded: strings (and references, binaries) that are not
/// `caseExact`.
pub fn folds(def: &AttributeDef) -> bool {
    !def.case_exact && matches!(def.attr_type, AttrType::String | AttrType::Reference | AttrType::Binary)
}

static USERS: LazyLock<ResourceType> = LazyLock::new(user_resource_type);
static GROUPS: LazyLock<ResourceType> = LazyLock::new(group_resource_type);

/// A stored user document with every value that [`folds`] folded and everything else (keys,
/// case-exact values, numbers, unknown attributes) unchanged: what filters and sorting read.
pub fn fold_user_document(doc: &Map<String, Value>) -> Map<String, Value> {
    fold_document(&USERS, doc)
}

/// Same for a group (team) document.
pub fn fold_group_document(doc: &Map<String, Value>) -> Map<String, Value> {
    fold_document(&GROUPS, doc)
}

/// Folds the values of a document of type `rt` as [`fold_user_document`] describes.
pub fn fold_document(rt: &ResourceType, doc: &Map<String, Value>) -> Map<String, Value> {
    doc.iter()
        .map(|(key, value)| {
            let folded = if let Some((ext, _)) = rt.extensions.iter().find(|(s, _)| s.id.eq_ignore_ascii_case(key)) {
                match value {
                    Value::Object(block) => Value::Object(
                        block
                            .iter()
                            .map(|(k, v)| (k.clone(), ext.attr(k).map_or_else(|| v.clone(), |d| fold_value(d, v))))
                            .collect(),
                    ),
                    other => other.clone(),
                }
            } else if let Some(def) =
                rt.common.iter().find(|a| a.name.eq_ignore_ascii_case(key)).or_else(|| rt.schema.attr(key))
            {
                fold_value(def, value)
            } else {
                value.clone()
            };
            (key.clone(), folded)
        })
        .collect()
}

fn fold_value(def: &AttributeDef, value: &Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|v| fold_single(def, v)).collect()),
        single => fold_single(def, single),
    }
}

fn fold_single(def: &AttributeDef, value: &Value) -> Value {
    match value {
        Value::String(s) if folds(def) => Value::String(fold(s)),
        Value::Object(o) if def.attr_type == AttrType::Complex => Value::Object(
            o.iter().map(|(k, v)| (k.clone(), def.sub(k).map_or_else(|| v.clone(), |d| fold_value(d, v)))).collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unicode_case_pairs_fold_alike() {
        assert_eq!(fold("Ärzte"), fold("ärzte"));
        assert_eq!(fold("STRASSE"), fold("Straße"));
        assert_eq!(fold("straẞe"), "strasse");
        assert_eq!(fold("ΣΊΣΥΦΟΣ"), fold("σίσυφος"));
        assert_eq!(fold("e\u{301}mile"), fold("Émile"));
        assert_eq!(fold("Émile"), "\u{e9}mile", "composed after folding");
        assert_eq!(fold("İstanbul"), "i\u{307}stanbul");
        assert_ne!(fold("ı"), fold("I"), "no Turkish special casing");
        assert_eq!(fold("😀 Emoji"), "😀 emoji");
        assert_eq!(fold("plain@example.com"), "plain@example.com");
    }

    #[test]
    fn documents_fold_what_compares_without_case_only() {
        let doc = json!({
            "userName": "Ärzte", "externalId": "AbC", "active": true,
            "emails": [{"value": "A@X.TEST", "type": "Work", "primary": true}],
            "name": {"givenName": "ÉMILE"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D Ü"},
            "unknownThing": "KEEP"
        });
        let folded = fold_user_document(doc.as_object().unwrap());
        assert_eq!(folded["userName"], "ärzte");
        assert_eq!(folded["externalId"], "AbC", "caseExact");
        assert_eq!(folded["active"], true);
        assert_eq!(folded["emails"][0]["value"], "a@x.test");
        assert_eq!(folded["emails"][0]["primary"], true);
        assert_eq!(folded["name"]["givenName"], "émile");
        assert_eq!(folded["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"], "r&d ü");
        assert_eq!(folded["unknownThing"], "KEEP");
    }
}
