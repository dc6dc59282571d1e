#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets from the identity-provider replays
(tests/replays/*.json: their filters, POST/PUT bodies and PATCH bodies) plus hand-written shapes
from RFC 7644 and the conformance suite. Run from the repository root; idempotent."""
import hashlib, json, pathlib, urllib.parse

root = pathlib.Path(__file__).resolve().parent
repo = root.parent
corpus = {t: set() for t in ("filter_parser", "filter_sql", "patch_engine", "resource_parse")}

FILTERS = [
    'userName eq "bjensen"', 'userName Eq "Ärzte"', 'displayName eq "ärzte"', 'title sw "İ" or title ew "ß"',
    'emails[type eq "work" and value co "@example.com"]', 'emails co "x" and not (active eq false)',
    'meta.lastModified gt "2011-05-13T04:42:34Z"', 'name.familyName co "O\'Neil"', 'externalId pr',
    'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "7"',
    'members[value eq "2819c223"]', 'members eq "x" or displayName ne "y"', 'id eq "1" and userName le "z"',
    '((userName eq "a") or (userName eq "b")) and active eq true', 'emails.value ew ".com"', 'groups.display eq "Ärzte"',
    'x eq 1.5e3', 'active eq null', 'userName eq "\\u00e4rzte"',
]
PATCHES = [
    {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
     "Operations": [{"op": "replace", "value": {"active": False}}]},
    {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
     "Operations": [{"op": "add", "path": "emails", "value": [{"value": "x@y.z", "type": "other"}]},
                    {"op": "remove", "path": "emails[type eq \"home\"]"},
                    {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "n@example.com"},
                    {"op": "replace", "path": "name.givenName", "value": "Ärzte"}]},
    {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
     "Operations": [{"op": "Add", "path": "members", "value": [{"value": "2819c223"}]},
                    {"op": "Remove", "path": "members[value eq \"2819c223\"]"},
                    {"op": "Replace", "path": "displayName", "value": "Ärzte"}]},
    {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
     "Operations": [{"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
                     "value": {"value": "m"}}]},
]
RESOURCES = [
    {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "Ärzte", "emails": [{"value": "a@b.c", "primary": True}]},
    {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Ärzte", "members": [{"value": "1"}]},
    {"schemas": ["urn:scim-operator:params:scim:schemas:core:1.0:RoleMapping"], "displayName": "ops", "teams": ["a"], "roles": ["Admin"]},
]

def walk(step):
    path = step.get("path", "")
    query = urllib.parse.urlsplit(path).query
    for k, v in urllib.parse.parse_qsl(query):
        if k.lower() == "filter":
            corpus["filter_parser"].add(v.encode())
            corpus["filter_sql"].add(v.encode())
    body = step.get("body")
    if isinstance(body, dict):
        blob = json.dumps(body).encode()
        if step.get("method") == "PATCH":
            corpus["patch_engine"].add(blob)
        elif step.get("method") in ("POST", "PUT"):
            corpus["resource_parse"].add(blob)
        for op in body.get("Operations", []) if isinstance(body.get("Operations"), list) else []:
            if isinstance(op, dict) and isinstance(op.get("path"), str):
                corpus["filter_parser"].add(op["path"].encode())

for f in sorted((repo / "tests" / "replays").glob("*.json")):
    for step in json.loads(f.read_text()).get("steps", []):
        walk(step)
for f in FILTERS:
    corpus["filter_parser"].add(f.encode())
    corpus["filter_sql"].add(f.encode())
for p in PATCHES:
    corpus["patch_engine"].add(json.dumps(p, ensure_ascii=False).encode())
for r in RESOURCES:
    corpus["resource_parse"].add(json.dumps(r, ensure_ascii=False).encode())

for target, items in corpus.items():
    d = root / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    for item in items:
        (d / hashlib.sha1(item).hexdigest()).write_bytes(item)
    print(target, len(items))
