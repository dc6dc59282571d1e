-- The Kubernetes object (`namespace/name` of the ManagedTeam) that declares a team, as the
-- operator sends it in the `Scim-Declared-By` header: the ownership marker in `external_id`
-- names the namespace and the object's uid, never its name. Set only by a key that may manage
-- Kubernetes-owned objects, on a team carrying an operator marker; NULL otherwise, and for
-- teams written before this migration until the operator next writes them.
ALTER TABLE teams ADD COLUMN declared_by TEXT;
