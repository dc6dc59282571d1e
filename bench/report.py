"""Renders benchmark results (JSON lines) into BENCHMARKS.md and a PNG plot.

usage: report.py RESULTS.jsonl BENCHMARKS.md PLOT.png "parameters"
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

results_path, md_path, png_path, params = sys.argv[1:5]
rows = [json.loads(line) for line in open(results_path) if line.strip()]
data = {(r["target"], r["workload"]): r for r in rows}
try:
    previous_md = open(md_path).read()
except FileNotFoundError:
    previous_md = ""
if ("meta", "server_params") in data:
    params = data[("meta", "server_params")]["value"]
elif any(r.get("carried_from") and r["target"] not in ("operator", "kube_ceiling") for r in rows):
    # Server rows carried over from a run that did not record its parameters: keep the line
    # the report of that run printed.
    for line in previous_md.splitlines():
        if line.startswith("Parameters: "):
            params = line[len("Parameters: "):].split(". Rows of the half")[0].rstrip(".")
            break
carried = sorted({r["carried_from"] for r in rows if r.get("carried_from")})
targets = ["sqlite", "postgres", "peer", "ceiling"]
workloads = [
    ("lookup", "Lookup before create: GET /Users?filter=userName eq"),
    ("create", "Create: POST /Users"),
    ("put", "Okta-style update: PUT /Users/{id}"),
    ("patch_big+excluded", "PATCH add/remove one member, big group (?excludedAttributes=members)"),
    ("patch_small+excluded", "PATCH add/remove one member, 10-member group (?excludedAttributes=members)"),
    ("patch_big_idp", "PATCH add/remove one member, big group, as Okta sends it (no query)"),
    ("patch_small_idp", "PATCH add/remove one member, 10-member group, as Okta sends it (no query)"),
    ("patch_big", "PATCH add/remove one member, big group (no query, members without display)"),
    ("groups_page", "GET /Groups?excludedAttributes=members, pages of 100"),
    ("sqlite_commit", "Write ceiling: SQLite alone, BEGIN IMMEDIATE; INSERT one row; COMMIT (server's pragmas)"),
]


def cell(t, w):
    r = data.get((t, w))
    if not r:
        return "–"
    err = f", {r['errors']} errors" if r.get("errors") else ""
    return f"{r['rps']:.0f} req/s (p50 {ms(r['p50_ms'])} ms, p99 {ms(r['p99_ms'])} ms{err})"


def ms(v):
    # Sub-millisecond latencies (the ceilings) keep a second digit, so they do not read as 0.
    return f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def ratio(a, b):
    if a and b and b["rps"] > 0:
        return f"{a['rps'] / b['rps']:.2f}x"
    return "–"


def rate(r):
    return f"{r['rps']:,.0f}/s" if r else "–"


def answered(r):
    # A run with no answered request (a server that collapsed) has no latency to compare.
    return bool(r) and r.get("requests", 1) > 0


def p99s(*rs):
    if all(answered(r) for r in rs):
        return " / ".join(f"{r['p99_ms']:.1f} ms" for r in rs)
    return "–"


def p99_ratio(a, b):
    if answered(a) and answered(b):
        return f"{a['p99_ms'] / max(b['p99_ms'], 1e-9):.2f}x"
    return "–"


commit_writers = data.get(("ceiling", "sqlite_commit"), {}).get("writers", 16)
out = ["# Benchmarks", "",
       "Measured side by side in one run on one 2-core machine, over HTTP on loopback, with `wrk`",
       "(2 threads). Absolute numbers drift from run to run on shared machines; the ratios are the",
       "result. Reproduce with `bash bench/run.sh` (knobs in its header).", "",
       f"Parameters: {params}." + (f" Rows of the half that did not run are from run(s) {', '.join(carried)}."
                                   if carried else ""), "",
       "*Ceiling*: nginx answering a fixed small JSON body for the HTTP rows; for the write ceiling",
       f"row, a program committing single-row transactions to SQLite from {commit_writers} concurrent",
       "writers (`bench/sqlite_commit.rs`), on the file system of the server's database.", "",
       "| Workload | this project, SQLite | this project, PostgreSQL | peer (scim2-server) | ceiling (nginx fixed body; SQLite commits) |",
       "| --- | --- | --- | --- | --- |"]
for w, title in workloads:
    out.append(f"| {title} | " + " | ".join(cell(t, w) for t in targets) + " |")
mem = " | ".join(f"{data[(t, 'peak_rss_kb')]['value'] / 1024:.0f} MiB" if (t, "peak_rss_kb") in data else "–" for t in targets)
out.append(f"| Peak memory of the server (VmHWM) | {mem} |")
pss = " | ".join(f"{data[(t, 'peak_pss_kb')]['value'] / 1024:.0f} MiB" if (t, "peak_pss_kb") in data else "–" for t in targets)
out.append(f"| Peak memory of the server (PSS, sampled every 0.5 s; each page once) | {pss} |")
out += ["", "## Ratios", "",
        "| Ratio | value | target |", "| --- | --- | --- |"]
s = lambda w: data.get(("sqlite", w))
ceiling = lambda w: data.get(("ceiling", w))
out.append(f"| Lookup: this project / peer | {ratio(s('lookup'), data.get(('peer', 'lookup')))} | ≥ 30x |")
out.append(f"| Lookup: this project / ceiling (nginx) | {ratio(s('lookup'), ceiling('lookup'))} | ≥ 0.33x |")
out.append(f"| Create: this project | {rate(s('create'))} | ≥ 3,000/s |")
out.append(f"| Create: this project / SQLite commit ceiling | {ratio(s('create'), ceiling('sqlite_commit'))} | ≥ 0.7x |")
out.append(f"| Create: this project / peer | {ratio(s('create'), data.get(('peer', 'create')))} | – |")
out.append(f"| Okta-style PUT: this project | {rate(s('put'))} | ≥ 3,000/s |")
out.append(f"| PATCH p99, big / 10-member group (?excludedAttributes=members) | "
           f"{p99s(s('patch_big+excluded'), s('patch_small+excluded'))} | < 10 ms on both |")
out.append(f"| PATCH p99, big / 10-member group, as Okta sends it | "
           f"{p99s(s('patch_big_idp'), s('patch_small_idp'))} | < 10 ms on both |")
out.append(f"| PATCH p99 big_idp / small_idp | {p99_ratio(s('patch_big_idp'), s('patch_small_idp'))} | ≤ 1.5x |")
big, small = s("patch_big+excluded"), s("patch_small+excluded")
if big and small:
    out.append(f"| PATCH latency p50, big group / 10-member group (?excludedAttributes=members) | "
               f"{big['p50_ms'] / max(small['p50_ms'], 1e-9):.2f}x | ≤ 1.5x |")
pss_row = data.get(("sqlite", "peak_pss_kb"))
users_param = next((kv.split("=", 1)[1] for kv in params.split() if kv.startswith("users=")), "?")
pss_mib = f"{pss_row['value'] / 1024:.0f} MiB" if pss_row else "–"
out.append(f"| Server peak PSS at {users_param} users | {pss_mib} | ≤ 300 MiB |")
out += ["", "![throughput](bench/results/throughput.png)", ""]

op, ceil = data.get(("operator", "apply")), data.get(("kube_ceiling", "apply"))
if op or ceil:
    first = op or ceil
    out += ["## Operator", "",
            f"{first['users']:,} ScimUsers and {first['teams']} ManagedTeams of {first['members']} members (each member a",
            "ScimUser of the same run) created in one namespace of the test control plane (etcd and",
            "kube-apiserver on the same machine), "
            f"{first['concurrency']} creates in flight. *Ceiling*: a small client",
            "(`bench/kube_load.rs`) does the same creates plus one status write per object setting",
            "Ready=True, with no operator running. *Operator*: the client only creates; the operator",
            "(release build) provisions every object into the SCIM server (release build, SQLite) and",
            "writes its status. Both are timed from the first create until a watch has seen every object",
            "Ready. Reproduce with `BENCH_ONLY=operator bash bench/run.sh` (knobs in `bench/operator.sh`).", ""]
    if op:
        out.append(f"Operator flags: `{op['flags']}` (commit {op.get('commit', '?')}); load average before the "
                   f"operator run: {op['loadavg_before']}, after it: {op.get('loadavg_after', '?')}.")
        if "finalizer_policy" in op:
            out.append("The chart's finalizer policy (a MutatingAdmissionPolicy; `BENCH_OP_FINALIZER_POLICY`) was "
                       + ("installed: the API server set each object's finalizer at its creation."
                          if op["finalizer_policy"] else
                          "not installed: the operator added each object's finalizer with a PATCH."))
    if ceil:
        out.append(f"Load average before the ceiling run: {ceil['loadavg_before']}.")
    out += ["", "| Measure | operator | ceiling (direct client) |", "| --- | --- | --- |"]

    def res(r, k, fmt="{:.1f} s"):
        return fmt.format(r["result"][k]) if r else "–"

    out.append(f"| All creates answered | {res(op, 'created_s')} | {res(ceil, 'created_s')} |")
    out.append(f"| All ScimUsers Ready | {res(op, 'users_ready_s')} | {res(ceil, 'users_ready_s')} |")
    out.append(f"| All objects Ready | {res(op, 'all_ready_s')} | {res(ceil, 'all_ready_s')} |")
    def cpu(r):
        if not r or "cpu_s" not in r:
            return "–"
        parts = {**r["cpu_s"], "load client": r["result"].get("cpu_s")}
        return ", ".join(f"{k.replace('_', ' ')} {v:.0f} s" for k, v in parts.items() if v is not None)

    out.append(f"| CPU time spent during the run | {cpu(op)} | {cpu(ceil)} |")
    if op:
        out.append(f"| Reconciles (per second until all Ready) | {op['reconciles']:,} ({op['reconciles_per_s']:.0f}/s), "
                   f"{op['reconcile_errors']} failed | – |")
        out.append(f"| Peak memory of the operator (VmHWM) | {op['peak_rss_kb'] / 1024:.0f} MiB | – |")
        out.append(f"| CPU of the operator while idle ({op['idle_s']} s after all Ready) | "
                   f"{op['idle_cpu_pct']:.2f}% of a core ({op['idle_reconciles']} reconciles) | – |")
    out += ["", "| Ratio | value | target |", "| --- | --- | --- |"]
    if op and ceil:
        out.append(f"| ScimUsers Ready: operator / ceiling | "
                   f"{op['result']['users_ready_s'] / ceil['result']['users_ready_s']:.2f}x | ≤ 2x |")
        out.append(f"| All objects Ready: operator / ceiling | "
                   f"{op['result']['all_ready_s'] / ceil['result']['all_ready_s']:.2f}x | – |")
    if op:
        out.append(f"| Operator peak memory at {op['users'] + op['teams']:,} objects | "
                   f"{op['peak_rss_kb'] * 1024 / 1e6:.0f} MB | < 150 MB |")
        out.append(f"| Operator CPU while idle | {op['idle_cpu_pct']:.2f}% of a core | < 2% |")
    out.append("")

# Text written by hand after a run (from its "## Findings" heading on) is kept.
at = previous_md.find("\n## Findings")
if at >= 0:
    out.append(previous_md[at + 1:].rstrip("\n"))
open(md_path, "w").write("\n".join(out) + "\n")

fig, ax = plt.subplots(figsize=(11, 5))
width = 0.2
names = [w for w, _ in workloads]
for i, t in enumerate(targets):
    vals = [data[(t, w)]["rps"] if (t, w) in data else 0 for w in names]
    ax.bar([x + i * width for x in range(len(names))], vals, width, label=t)
ax.set_xticks([x + 1.5 * width for x in range(len(names))])
ax.set_xticklabels(names, rotation=20, ha="right")
ax.set_yscale("log")
ax.set_ylabel("requests per second (log)")
ax.set_title("SCIM workloads, side by side")
ax.legend()
fig.tight_layout()
fig.savefig(png_path, dpi=110)
