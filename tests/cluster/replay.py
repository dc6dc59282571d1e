"""Replays identity-provider traffic (tests/replays/*.json) against a running SCIM server.

Usage: replay.py BASE_URL TOKEN_FILE REPLAY.json...   (BASE_URL ends in /scim/v2)

Each replay is a list of requests with the status and JSON values expected back; `${name}`
placeholders take values captured from earlier responses (the same format tests/idp_replays.rs
runs in-process). Exits non-zero with the failing step on the first mismatch.
"""

import json
import sys
import urllib.error
import urllib.request


def substitute(value, env):
    if isinstance(value, str):
        for k, v in env.items():
            value = value.replace("${" + k + "}", v)
        return value
    if isinstance(value, list):
        return [substitute(x, env) for x in value]
    if isinstance(value, dict):
        return {substitute(k, env): substitute(x, env) for k, x in value.items()}
    return value


def pointer(doc, ptr):
    """JSON pointer lookup; returns (found, value)."""
    cur = doc
    for raw in ptr.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        elif isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return False, None
    return True, cur


def call(base, token, method, path, body):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + token)
    req.add_header("Accept", "application/scim+json")
    if data is not None:
        req.add_header("Content-Type", "application/scim+json")
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            status, text = resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text


def replay(base, token, path):
    with open(path) as f:
        scenario = json.load(f)
    env = {}
    steps = scenario["steps"]
    if not steps:
        sys.exit(f"{path}: no steps")
    for i, step in enumerate(steps):
        method = step["method"]
        target = substitute(step["path"], env)
        body = step.get("body")
        status, resp = call(base, token, method, target, None if body is None else substitute(body, env))
        ctx = f"{path} step {i} ({method} {target})"
        want = step.get("expect_status")
        if want is not None and status != want:
            sys.exit(f"{ctx}: status {status}, wanted {want}: {resp}")
        for name, ptr in (step.get("capture") or {}).items():
            found, value = pointer(resp, ptr)
            if not found:
                sys.exit(f"{ctx}: nothing at {ptr} in {resp}")
            env[name] = value if isinstance(value, str) else json.dumps(value)
        for ptr, expected in (step.get("expect") or {}).items():
            expected = substitute(expected, env)
            found, value = pointer(resp, ptr)
            if not found or value != expected:
                sys.exit(f"{ctx}: {ptr} is {value!r}, wanted {expected!r}: {resp}")
        for ptr in step.get("expect_absent") or []:
            if pointer(resp, ptr)[0]:
                sys.exit(f"{ctx}: {ptr} should be absent: {resp}")
    print(f"{scenario.get('name', path)}: {len(steps)} steps passed")


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    base, token_file = sys.argv[1].rstrip("/"), sys.argv[2]
    with open(token_file) as f:
        token = f.read().strip()
    for path in sys.argv[3:]:
        replay(base, token, path)


if __name__ == "__main__":
    main()
