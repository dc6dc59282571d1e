-- Keys get permissions of their own (README: security model; `scim-operator keys --help`).
-- Before, every key carried 'user_access_invite,user_access_manage' and could make every
-- request. On upgrade, conservatively:
-- * bootstrap keys (the chart hands them to the operator) get the `operator` preset;
-- * every other key gets the `identity-provider` preset, so Okta and Entra ID keep
--   provisioning users and groups, but no longer RoleMappings, the role catalog or keys
--   (an operator key made by hand must be replaced: `keys create --preset operator`);
-- * a key without both old permissions could make no request and gets none now.
UPDATE api_keys
SET permissions = 'user_access_invite,user_access_manage,teams_manage,role_mappings_manage,kubernetes_owned_manage'
WHERE name LIKE 'bootstrap-%' AND permissions = 'user_access_invite,user_access_manage';

UPDATE api_keys
SET permissions = 'user_access_invite,user_access_manage,teams_manage'
WHERE permissions = 'user_access_invite,user_access_manage';

UPDATE api_keys
SET permissions = ''
WHERE permissions NOT IN (
    'user_access_invite,user_access_manage,teams_manage,role_mappings_manage,kubernetes_owned_manage',
    'user_access_invite,user_access_manage,teams_manage'
);
