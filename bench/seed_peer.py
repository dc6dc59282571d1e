"""Seeds the peer SCIM server (scim2-server) over HTTP, with a thread pool.

usage: seed_peer.py BASE_URL TOKEN USERS GROUPS BIG_MEMBERS OUT_DIR
"""
import concurrent.futures
import http.client
import json
import sys
import time
import urllib.parse

base, token, users, groups, big, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
u = urllib.parse.urlparse(base)


def call(method, path, body=None, attempts=8):
    # The peer is a small single-process server: retry dropped connections.
    for attempt in range(attempts):
        try:
            return once(method, path, body)
        except (ConnectionError, http.client.HTTPException):
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def once(method, path, body=None):
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request(method, u.path + path, body=json.dumps(body) if body is not None else None,
                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    if resp.status >= 300:
        raise RuntimeError(f"{method} {path}: {resp.status} {data[:200]!r}")
    return json.loads(data) if data else None


def user(i):
    name = f"user{i}@bench.test"
    return call("POST", "/Users", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name,
                                   "displayName": f"User {i}", "emails": [{"value": name, "type": "work", "primary": True}]})["id"]


with concurrent.futures.ThreadPoolExecutor(4) as pool:
    ids = list(pool.map(user, range(users)))
    list(pool.map(lambda g: call("POST", "/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": f"Group {g}"}), range(groups)))

def group(name, members):
    gid = call("POST", "/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name})["id"]
    for i in range(0, len(members), 500):
        call("PATCH", f"/Groups/{gid}", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
             "Operations": [{"op": "add", "path": "members", "value": [{"value": m} for m in members[i:i + 500]]}]})
    return gid

spares = ids[max(big, 10):]
if len(spares) < 128:
    sys.exit(f"need at least 128 users outside the big group, have {len(spares)}")
big_id = group("Big Group", ids[:big])
small_id = group("Small Group", ids[:10])
for name, value in [("user_ids", "\n".join(ids)), ("big_group", big_id), ("small_group", small_id), ("token", token), ("spare_users", "\n".join(spares))]:
    with open(f"{out}/{name}", "w") as f:
        f.write(value)
print(f"seeded the peer: {users} users, {groups} groups, a {big}-member group")
