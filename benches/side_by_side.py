#!/usr/bin/env python3
"""Markdown summary of a benches/side_by_side.sh run (python3 standard library only).

usage: benches/side_by_side.py OUT_DIR          (or OUT_DIR/raw.csv)

Reads raw.csv (one row per measured wrk run) and, beside it, meta.txt, gate.csv and count.csv.
Ratios graygate / peer are paired: each round's graygate figure is divided by the same round's
figure of the peer, and the median (min-max) of those per-round ratios is reported, so a drift
of the host between rounds cancels out.
"""
import csv
import math
import os
import statistics
import sys
from collections import defaultdict

ORDER = ["floor", "haproxy", "nginx", "nginx-log", "graygate", "graygate-log"]
# Each logging contestant and the same proxy without its access log.
LOGGED = {"graygate-log": "graygate", "nginx-log": "nginx"}
OTHER_WARN = 10.0  # % of all CPUs busy with something else than wrk, the upstream and the proxy


def num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def med(values):
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def fmt(value, digits=1):
    return "n/a" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def spread(values, digits=1):
    values = [v for v in values if not math.isnan(v)]
    return f" ({fmt(min(values), digits)}–{fmt(max(values), digits)})" if len(values) > 1 else ""


def read_csv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def names_in(rows):
    seen = []
    for row in rows:
        if row["name"] not in seen:
            seen.append(row["name"])
    return sorted(seen, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))


def meta_section(directory):
    path = os.path.join(directory, "meta.txt")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [f"- {line.strip()}" for line in f if line.strip()]


def gate_section(gate):
    if not gate:
        return [], {}
    out = ["", "### Functional gate (sequential, one connection each)", "",
           "| contestant | v2 of plain requests (10 % expected) | v2 with `X-Canary: v2` | other (non-2xx, bad body) | socket errors | verdict |",
           "|---|---:|---:|---:|---:|---|"]
    split = {}
    for g in gate:
        n, v2, hn, hv2 = int(g["n"]), int(g["v2"]), int(g["hdr_n"]), int(g["hdr_v2"])
        other = int(g["other"]) + int(g["hdr_other"])
        note = " (L4: no split by design)" if g["name"] == "floor" else ""
        out.append(f"| {g['name']} | {v2:,} of {n:,}{note} | {hv2:,} of {hn:,} | {other} | {g['socket_errors']} | {g['verdict']} |")
        split[g["name"]] = "—" if g["name"] == "floor" else f"{v2:,} of {n:,}"
    return out, split


def logs_by_name(directory):
    """name -> (requests, lines written) summed over rounds, for the logging contestants."""
    totals = defaultdict(lambda: [0, 0])
    for row in read_csv(os.path.join(directory, "logs.csv")):
        totals[row["name"]][0] += int(num(row["requests"]))
        totals[row["name"]][1] += int(num(row["log_lines"]))
    return totals


def tput_section(rows, split, logs=None):
    by = defaultdict(dict)  # name -> round -> row
    for r in rows:
        for key in ("rps", "p50_us", "p99_us", "proxy_cpu_us_per_req", "other_cpu_pct", "requests"):
            r[key] = num(r[key])
        r["errors"] = int(r["non2xx"]) + int(r["socket_errors"])
        by[r["name"]][int(r["round"])] = r
    names = names_in(rows)
    first = rows[0]
    rounds = max(len(v) for v in by.values())
    out = ["", f"### Throughput (wrk -c{first['conns']} -t{first['threads']}, {first['duration']} s × {rounds} rounds, interleaved)", "",
           "| contestant | proxy CPU µs/req (min–max) | ⇒ req/s per proxy core | req/s (min–max) | p50 / p99 ms | errors (non-2xx + socket) | other CPU % (max) | v2 split (gate) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for n in names:
        rr = list(by[n].values())
        cpu = [r["proxy_cpu_us_per_req"] for r in rr]
        rps = [r["rps"] for r in rr]
        other = [r["other_cpu_pct"] for r in rr]
        mcpu = med(cpu)
        worst = max((o for o in other if not math.isnan(o)), default=math.nan)
        warn = " ⚠" if worst > OTHER_WARN else ""
        out.append(f"| {n} | {fmt(mcpu, 2)}{spread(cpu, 2)} | {fmt(1e6 / mcpu if mcpu > 0 else math.nan, 0)} | "
                   f"{fmt(med(rps), 0)}{spread(rps, 0)} | {fmt(med([r['p50_us'] for r in rr]) / 1e3, 2)} / "
                   f"{fmt(med([r['p99_us'] for r in rr]) / 1e3, 2)} | {sum(r['errors'] for r in rr)} | "
                   f"{fmt(med(other), 1)} ({fmt(worst, 1)}){warn} | {split.get(n, 'n/a')} |")
    if "graygate" in by and len(names) > 1:
        out += ["", "### graygate / peer, paired per round (median of the per-round ratios, min–max)", "",
                "| peer | proxy CPU/req ratio | req/s ratio | rounds |", "|---|---:|---:|---:|"]
        gg = by["graygate"]
        for n in names:
            if n == "graygate" or n in LOGGED:
                continue
            common = sorted(set(gg) & set(by[n]))
            cpu = [gg[k]["proxy_cpu_us_per_req"] / by[n][k]["proxy_cpu_us_per_req"] for k in common
                   if by[n][k]["proxy_cpu_us_per_req"] > 0]
            rps = [gg[k]["rps"] / by[n][k]["rps"] for k in common if by[n][k]["rps"] > 0]
            label = f"{n} (L4 floor, not a peer)" if n == "floor" else n
            out.append(f"| {label} | {fmt(med(cpu), 3)}{spread(cpu, 3)} | {fmt(med(rps), 3)}{spread(rps, 3)} | {len(common)} |")
    logged = [(n, base) for n, base in LOGGED.items() if n in by and base in by]
    if logged:
        out += ["", "### What the access log costs, paired per round (logging contestant − the same proxy without its log)", "",
                "| proxy | CPU µs/req without | with the log | cost µs/req (min–max) | cost % | req/s ratio with / without | lines written / requests | rounds |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for n, base in logged:
            common = sorted(set(by[n]) & set(by[base]))
            cost = [by[n][k]["proxy_cpu_us_per_req"] - by[base][k]["proxy_cpu_us_per_req"] for k in common]
            share = [100 * c / by[base][k]["proxy_cpu_us_per_req"] for c, k in zip(cost, common)
                     if by[base][k]["proxy_cpu_us_per_req"] > 0]
            rps = [by[n][k]["rps"] / by[base][k]["rps"] for k in common if by[base][k]["rps"] > 0]
            without = med([by[base][k]["proxy_cpu_us_per_req"] for k in common])
            with_log = med([by[n][k]["proxy_cpu_us_per_req"] for k in common])
            requests, lines = (logs or {}).get(n, (0, 0))
            written = f"{lines:,} / {requests:,}" if requests else "n/a"
            out.append(f"| {base} | {fmt(without, 2)} | {fmt(with_log, 2)} | {fmt(med(cost), 2)}{spread(cost, 2)} | "
                       f"{fmt(med(share), 1)} | {fmt(med(rps), 3)}{spread(rps, 3)} | {written} | {len(common)} |")
    return out


def count_section(count, meta):
    if not count:
        return []
    perf_event = next((l.split(":", 1)[1].strip() for l in meta if l.startswith("- perf event:")), "")
    sys_by, perf_by = defaultdict(dict), {}
    for c in count:
        req = num(c["requests"])
        if c["tool"] == "strace":
            sys_by[c["name"]][c["key"]] = (num(c["value"]), req)
        else:
            perf_by[c["name"]] = (c["key"], num(c["value"]), req)
    names = names_in(count)
    out = ["", "### Counting (fixed request count; strace -c -f and perf stat attached to the running proxy)", "",
           "| contestant | requests (strace) | syscalls/req | top 5 syscalls per request | requests (perf) | "
           + ("instructions/req" if perf_event == "instructions" else "task-clock µs/req") + " |",
           "|---|---:|---:|---|---:|---:|"]
    for n in names:
        calls = sys_by.get(n, {})
        total, sreq = calls.get("total", (math.nan, math.nan))
        top = sorted(((v, k) for k, (v, _) in calls.items() if k != "total"), reverse=True)[:5]
        tops = ", ".join(f"{k} {v / sreq:.2f}" for v, k in top) if sreq and sreq > 0 else ""
        per = total / sreq if sreq and sreq > 0 else math.nan
        event, value, preq = perf_by.get(n, ("", math.nan, math.nan))
        if event == "task-clock":  # perf -x, gives task-clock in msec
            pv = fmt(value * 1e3 / preq if preq > 0 else math.nan, 2)
        else:
            pv = fmt(value / preq if preq > 0 else math.nan, 0)
        out.append(f"| {n} | {fmt(sreq, 0)} | {fmt(per, 2)} | {tops} | {fmt(preq, 0)} | {pv} |")
    if perf_event and perf_event != "instructions":
        out.append("")
        out.append(f"perf: hardware counters are not available on this machine (`perf stat -e instructions` says "
                   f"<not supported>), so the last column is {perf_event} (CPU time per request under perf), not instructions.")
    return out


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    directory = argv[0] if os.path.isdir(argv[0]) else os.path.dirname(os.path.abspath(argv[0]))
    rows = [r for r in read_csv(os.path.join(directory, "raw.csv")) if r["phase"] == "tput"]
    meta = meta_section(directory)
    gate, split = gate_section(read_csv(os.path.join(directory, "gate.csv")))
    out = ["## graygate side by side: nginx, HAProxy, L4 floor", ""] + meta + gate
    if rows:
        out += tput_section(rows, split, logs_by_name(directory))
    out += count_section(read_csv(os.path.join(directory, "count.csv")), meta)
    out += ["", "Notes: proxy CPU µs/req = utime+stime of all the proxy's processes (/proc/PID/stat) over the run / "
            "requests, including the loopback TCP work the kernel does in their context; req/s per proxy core = 1e6 / it. "
            "wrk is closed-loop, so p50/p99 at c>1 are mostly queueing. Every 10th request carries `X-Canary: v2` "
            "(≈19 % v2 overall). 'other CPU %' = share of all CPUs busy with something else than wrk, the upstream and "
            f"the proxy under test (neighbours; ⚠ above {OTHER_WARN:.0f} %). Compare ratios within one run, not absolute "
            "figures across runs; syscall counts include strace's own attach/detach window."]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
