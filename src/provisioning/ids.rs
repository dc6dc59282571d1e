//! Identifiers of stored records.
//!
//! Every record the server creates (users, groups, roles, role mappings, keys, invitations,
//! messages, audit events) gets a UUID version 7 (RFC 9562): 48 bits of Unix milliseconds,
//! then random bits. SCIM clients treat `id` as opaque (RFC 7643 §3.1); what the time prefix buys
//! is locality in the store. Each table is indexed by id, and an audit event by the id of its
//! target, so random version-4 ids made every insert rewrite a page at a random place in each
//! of those indexes; ids that grow with time append to the same few pages, which a group commit
//! writes once for all of its requests. The prefix tells the creation time to the millisecond,
//! which `meta.created` already tells the same clients.
//!
//! Ids are not secrets: nothing is authorised by knowing one. Tokens and key secrets are
//! generated elsewhere, from the operating system's random source.

/// A new record id: a UUID version 7, as text.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_version_7_and_sort_in_creation_order() {
        let ids: Vec<String> = (0..1000).map(|_| new_id()).collect();
        for id in &ids {
            let parsed = uuid::Uuid::parse_str(id).expect("an id is a UUID");
            assert_eq!(parsed.get_version_num(), 7, "{id}");
        }
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids, "ids made one after another sort in that order");
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "ids are unique");
    }
}
