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
targets = ["sqlite", "postgres", "peer", "ceiling"]
workloads = [
    ("lookup", "Lookup before create: GET /Users?filter=userName eq"),
    ("create", "Create: POST /Users"),
    ("put", "Okta-style update: PUT /Users/{id}"),
    ("patch_big+excluded", "PATCH add/remove one member, big group (?excludedAttributes=members)"),
    ("patch_small+excluded", "PATCH add/remove one member, 10-member group (?excludedAttributes=members)"),
    ("patch_big", "PATCH add/remove one member, big group (full group in the answer)"),
    ("groups_page", "GET /Groups?excludedAttributes=members, pages of 100"),
]


def cell(t, w):
    r = data.get((t, w))
    if not r:
        return "–"
    err = f", {r['errors']} errors" if r.get("errors") else ""
    return f"{r['rps']:.0f} req/s (p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms{err})"


def ratio(a, b):
    if a and b and b["rps"] > 0:
        return f"{a['rps'] / b['rps']:.2f}x"
    return "–"


out = ["# Benchmarks", "",
       "Measured side by side in one run on one 2-core machine, over HTTP on loopback, with `wrk`",
       "(2 threads). Absolute numbers drift from run to run on shared machines; the ratios are the",
       "result. Reproduce with `bash bench/run.sh` (knobs in its header).", "",
       f"Parameters: {params}.", "",
       "| Workload | this project, SQLite | this project, PostgreSQL | peer (scim2-server) | ceiling (nginx, fixed body) |",
       "| --- | --- | --- | --- | --- |"]
for w, title in workloads:
    out.append(f"| {title} | " + " | ".join(cell(t, w) for t in targets) + " |")
mem = " | ".join(f"{data[(t, 'peak_rss_kb')]['value'] / 1024:.0f} MiB" if (t, "peak_rss_kb") in data else "–" for t in targets)
out.append(f"| Peak memory of the server (VmHWM) | {mem} |")
out += ["", "## Ratios", "",
        "| Ratio | value | target |", "| --- | --- | --- |"]
s = lambda w: data.get(("sqlite", w))
out.append(f"| Lookup: this project / peer | {ratio(s('lookup'), data.get(('peer', 'lookup')))} | ≥ 20x |")
out.append(f"| Create: this project / peer | {ratio(s('create'), data.get(('peer', 'create')))} | ≥ 20x |")
out.append(f"| Lookup: this project / ceiling | {ratio(s('lookup'), data.get(('ceiling', 'lookup')))} | ≥ 0.33x |")
out.append(f"| Create: this project / ceiling | {ratio(s('create'), data.get(('ceiling', 'create')))} | ≥ 0.33x |")
big, small = s("patch_big+excluded"), s("patch_small+excluded")
if big and small:
    out.append(f"| PATCH latency p50, big group / 10-member group | {big['p50_ms'] / max(small['p50_ms'], 1e-9):.2f}x | ≤ 1.5x |")
    out.append(f"| PATCH p99 on the big group | {big['p99_ms']:.1f} ms | < 10 ms |")
out += ["", "![throughput](bench/results/throughput.png)", ""]
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
