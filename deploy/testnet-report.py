#!/usr/bin/env python3
"""Writes the Markdown report of a deploy/testnet.sh run from its work directory (to stdout).

    python3 deploy/testnet-report.py /tmp/timed-testnet > docs/testnet-report.md

Reads meta.env, samples.csv, events.csv, blocks-nI.tsv, status-nI.json and shaper-nI.log; the
thresholds of the checklist are the constants below.
"""

import argparse
import csv
import json
import os
import re
import statistics
import sys

SPREAD_MAX = 1  # blocks between the highest and the lowest node at a sample
FINALITY_MAX_MS = 30_000  # p99
# Memory is stable when it has stopped rising: a node's caches (redb's page cache, 4 MiB) fill
# while it stores its first few thousand blocks, so growth early in a process's life is expected;
# growth at its end is not. Judged on processes that lived at least RSS_MIN_LIFE_S.
RSS_GROWTH_MAX = 0.03  # over a process's last RSS_TAIL_S
RSS_TAIL_S = 1200
RSS_MIN_LIFE_S = 2700
RSS_BASELINE_S = 600  # the 10th minute, shown for reference
CPU_MAX_PCT = 20.0  # of one core, every node, every sampling interval


def pct(values, q):
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, -(-q * len(s) // 100) - 1))
    return s[int(k)]


def mib(kib):
    return kib / 1024.0


def load(work):
    meta = {}
    with open(os.path.join(work, "meta.env")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            meta[k] = v
    n = int(meta["nodes"])
    names = ["n%d" % i for i in range(1, n + 1)]
    with open(os.path.join(work, "samples.csv")) as f:
        samples = list(csv.DictReader(f))
    with open(os.path.join(work, "events.csv")) as f:
        events = list(csv.DictReader(f))
    blocks, status, shaper = {}, {}, {}
    for name in names:
        rows = {}
        path = os.path.join(work, "blocks-%s.tsv" % name)
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    p = line.rstrip("\n").split("\t")
                    if len(p) >= 3 and p[0].isdigit():
                        rows[int(p[0])] = {"hash": p[1], "finality_ms": int(p[2] or 0),
                                           "round": p[3] if len(p) > 3 else "",
                                           "proposer": p[4] if len(p) > 4 else ""}
        blocks[name] = rows
        try:
            with open(os.path.join(work, "status-%s.json" % name)) as f:
                status[name] = json.load(f)
        except (OSError, ValueError):
            status[name] = {}
        try:
            with open(os.path.join(work, "shaper-%s.log" % name)) as f:
                m = re.findall(r"passed (\d+) dropped (\d+)", f.read())
                if m:
                    shaper[name] = (int(m[-1][0]), int(m[-1][1]))
        except OSError:
            pass
    return meta, names, samples, events, blocks, status, shaper


def num(s):
    return int(s) if s not in ("", None) else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("--samples-name", default="testnet-report-samples.csv")
    ap.add_argument("--events-name", default="testnet-report-events.csv")
    a = ap.parse_args()
    meta, names, samples, events, blocks, status, shaper = load(a.work)
    clk = int(meta.get("clk_tck", "100"))
    partial = meta.get("partial") == "1"
    elapsed = int(meta.get("elapsed_s", meta["duration_s"]))
    out = []
    w = out.append

    # --- samples by time, CPU per interval of the same process ---
    by_t = {}
    for s in samples:
        by_t.setdefault(int(s["t_s"]), {})[s["node"]] = s
    times = sorted(by_t)
    cpu = {n: [] for n in names}  # (t, pct)
    rss = {n: [] for n in names}  # (t, pid, kib)
    prev = {}
    for t in times:
        for n, s in by_t[t].items():
            pid, ticks, r = s["pid"], num(s["cpu_ticks"]), num(s["rss_kib"])
            if r is not None:
                rss[n].append((t, pid, r))
            if ticks is not None and n in prev and prev[n][0] == pid and t > prev[n][1]:
                cpu[n].append((t, 100.0 * (ticks - prev[n][2]) / clk / (t - prev[n][1])))
            if ticks is not None:
                prev[n] = (pid, t, ticks)

    # --- heights tracked together ---
    spreads = []
    for t in times:
        hs = [num(s["height"]) for s in by_t[t].values() if num(s["height"]) is not None]
        if len(hs) >= 2:
            spreads.append((t, max(hs) - min(hs), len(hs)))
    max_spread = max((s for _, s, _ in spreads), default=None)
    incomplete = sum(1 for _, _, k in spreads if k < len(names))

    # --- forks: every height's hash on every node ---
    top = max((max(b) for b in blocks.values() if b), default=0)
    forks, missing = [], {n: 0 for n in names}
    compared = 0
    for h in range(1, top + 1):
        hashes = {n: blocks[n][h]["hash"] for n in names if h in blocks[n]}
        for n in names:
            final_h = max(blocks[n]) if blocks[n] else 0
            if h <= final_h and h not in blocks[n]:
                missing[n] += 1
        if len(hashes) >= 2:
            compared += 1
        if len(set(hashes.values())) > 1:
            forks.append((h, hashes))
    common = min((max(b) if b else 0) for b in blocks.values())

    # --- restarts ---
    kills = [e for e in events if e["event"] == "kill9"]
    outcomes = [e for e in events if e["event"] in ("rejoined", "rejoin-timeout", "rejoin-mismatch")]
    exited = [e for e in events if e["event"] == "exited"]
    shaper_restarts = [e for e in events if e["event"] == "shaper-restarted"]
    catchup = {n: [] for n in names}  # height ranges a node finalized by catching up
    pending = {}
    for e in events:
        if e["event"] == "kill9":
            pending[e["node"]] = num(e["height"]) or 0
        elif e["event"] in ("rejoined", "rejoin-timeout", "rejoin-mismatch") and e["node"] in pending:
            lo = pending.pop(e["node"])
            hi = num(e["height"]) or lo
            catchup[e["node"]].append((lo, hi))
    survived = sum(1 for e in outcomes if e["event"] == "rejoined")
    forked_nodes = {n for _, hs in forks for n in hs}
    survived_clean = sum(1 for e in outcomes if e["event"] == "rejoined" and e["node"] not in forked_nodes)

    # --- finality, over the heights decided before the last sample (the end of the run) ---
    def top_height(t):
        hs = [num(s["height"]) for s in by_t[t].values() if num(s["height"]) is not None]
        return max(hs) if hs else 0

    window_end = top_height(times[-1]) if times else top
    after = sorted({h for n in names for h in blocks[n] if h > window_end})
    after_f = [blocks[n][h]["finality_ms"] for n in names for h in after if h in blocks[n]]

    def is_catchup(n, h):
        return any(lo < h <= hi for lo, hi in catchup[n])

    live, all_f, per_node = [], [], {}
    for n in names:
        mine = [b["finality_ms"] for h, b in blocks[n].items()
                if h <= window_end and not is_catchup(n, h)]
        live += mine
        all_f += [b["finality_ms"] for h, b in blocks[n].items() if h <= window_end]
        per_node[n] = mine
    rounds = [b["round"] for h, b in blocks[names[0]].items() if h <= window_end]
    nonzero_rounds = sum(1 for r in rounds if r not in ("", "0"))
    slow = sorted({(h, b["proposer"]) for n in names for h, b in blocks[n].items()
                   if h <= window_end and not is_catchup(n, h) and b["finality_ms"] > 1000})

    # --- blocks per minute ---
    first_t, last_t = (times[0], times[-1]) if times else (0, 0)

    bpm = None
    if last_t > first_t:
        bpm = (top_height(last_t) - top_height(first_t)) * 60.0 / (last_t - first_t)

    # --- memory ---
    mem_rows = []  # (node, pid, first_t, base_kib, last_kib, max_kib, growth, slope MiB/h)
    starts = {}
    for e in events:
        if e["event"] == "start":
            starts[(e["node"], e["detail"].replace("pid ", ""))] = int(e["t_s"])
    for n in names:
        pids = []
        for t, pid, r in rss[n]:
            if not pids or pids[-1][0] != pid:
                pids.append((pid, []))
            pids[-1][1].append((t, r))
        for pid, pts in pids:
            st = starts.get((n, pid), pts[0][0])
            base = [p for p in pts if p[0] - st >= RSS_BASELINE_S]
            growth = slope = None
            end = pts[-1][0]
            tail = [p for p in pts if p[0] >= end - RSS_TAIL_S]
            if end - st >= RSS_MIN_LIFE_S and len(tail) >= 2:
                growth = (tail[-1][1] - tail[0][1]) / tail[0][1]
                ts = [p[0] for p in tail]
                rs = [mib(p[1]) for p in tail]
                mt, mr = statistics.fmean(ts), statistics.fmean(rs)
                den = sum((x - mt) ** 2 for x in ts)
                slope = sum((x - mt) * (y - mr) for x, y in zip(ts, rs)) / den * 3600 if den else 0.0
            mem_rows.append((n, pid, st, base[0][1] if base else None, pts[-1][1],
                             max(r for _, r in pts), growth, slope))
    judged = [m for m in mem_rows if m[6] is not None]
    worst_growth = max((m[6] for m in judged), default=None)

    # --- CPU ---
    cpu_mean = {n: statistics.fmean([c for _, c in cpu[n]]) for n in names if cpu[n]}
    cpu_max = {n: max(c for _, c in cpu[n]) for n in names if cpu[n]}

    # ---------------- the report ----------------
    title = "%s-node `timed` testnet on one machine: report" % meta["nodes"]
    w("# " + title)
    w("")
    if partial:
        w("> **PARTIAL RUN**: interrupted after %d s of the %s s planned; the figures cover what ran."
          % (elapsed, meta["duration_s"]))
        w("")
    w("Written by `deploy/testnet-report.py` from a run of `deploy/testnet.sh`. Raw samples: "
      "[`%s`](%s) (one row per node per sample), events: [`%s`](%s)."
      % (a.samples_name, a.samples_name, a.events_name, a.events_name))
    w("")
    w("## The run")
    w("")
    w("| | |")
    w("|---|---|")
    w("| started / ended (UTC) | %s / %s |" % (meta.get("started", "?"), meta.get("ended", "?")))
    w("| ran for | %d s (%.1f min) |" % (elapsed, elapsed / 60))
    w("| validators | %s, stake 100 each, each in its own network namespace |" % meta["nodes"])
    w("| block time (genesis) | %s |" % meta["block_time"])
    w("| links | %s ms ± %s ms (uniform), loss %s %% on each node's egress |"
      % (meta["latency_ms"], meta["jitter_ms"], meta["loss_pct"]))
    emu = meta["emulator"]
    if emu == "nfqueue":
        emu_text = ("`deploy/netem-nfqueue.py` (this kernel has no `sch_netem`; the same delay, jitter and "
                    "loss applied in user space through iptables NFQUEUE)")
    else:
        emu_text = "`tc qdisc ... netem`"
    w("| link emulation | %s |" % emu_text)
    w("| kill -9 and restart | %s |" % ("every %s s, one node in turn" % meta["restart_every_s"]
                                        if meta["restart_every_s"] != "0" else "off"))
    w("| sampling | every %s s: `/status`, VmRSS and utime+stime of each process |" % meta["sample_s"])
    loads = [float(s["load1"]) for s in samples if s.get("load1")]
    w("| machine | %s CPU(s), %s; kernel %s%s |" % (
        meta["cpus"], meta.get("cpu_model", "?"), meta["kernel"],
        "; load average (1 min) %.2f–%.2f during the run, shared with other work" % (min(loads), max(loads))
        if loads else ""))
    w("| source | `%s`%s |" % (meta.get("git_rev", "?"),
                                ", `%s`" % meta["binary"] if meta.get("binary") else ""))
    w("")

    def yes(ok):
        return "**yes**" if ok else "**NO**"

    w("## Checklist")
    w("")
    w("| check | goal | measured | met |")
    w("|---|---|---|---|")
    finals = {n: (max(blocks[n]) if blocks[n] else 0) for n in names}
    w("| all nodes track the same height | spread ≤ %d block at every sample | largest spread %s "
      "over %d samples%s; final heights %s | %s |"
      % (SPREAD_MAX, max_spread if max_spread is not None else "–", len(spreads),
         " (%d taken while a node was down)" % incomplete if incomplete else "",
         ", ".join(str(finals[n]) for n in names),
         yes(max_spread is not None and max_spread <= SPREAD_MAX)))
    w("| no forks | 0 | %d forks over %d heights compared on every node (1–%d)%s | %s |"
      % (len(forks), compared, top,
         "; heights missing: %s" % ", ".join("%s %d" % (n, k) for n, k in missing.items() if k)
         if any(missing.values()) else "", yes(not forks and compared > 0)))
    if live:
        w("| finality < 30 s | p99 < %d ms | p50 %d ms, p99 %d ms, max %d ms (%d finalizations) | %s |"
          % (FINALITY_MAX_MS, pct(live, 50), pct(live, 99), max(live), len(live),
             yes(pct(live, 99) < FINALITY_MAX_MS)))
    else:
        w("| finality < 30 s | p99 < %d ms | no blocks | **NO** |" % FINALITY_MAX_MS)
    if judged:
        w("| memory stable | RSS growth < %d %% over the last %d min of each process that ran ≥ %d min "
          "(caches fill before) | worst %+.1f %% (%d processes judged); RSS %.1f–%.1f MiB | %s |"
          % (RSS_GROWTH_MAX * 100, RSS_TAIL_S // 60, RSS_MIN_LIFE_S // 60, worst_growth * 100,
             len(judged),
             min(mib(m[5]) for m in mem_rows), max(mib(m[5]) for m in mem_rows),
             yes(worst_growth < RSS_GROWTH_MAX)))
    else:
        w("| memory stable | RSS growth < %d %% over a process's last %d min | no process ran %d min | – |"
          % (RSS_GROWTH_MAX * 100, RSS_TAIL_S // 60, RSS_MIN_LIFE_S // 60))
    if cpu_max:
        w("| CPU < 20 %% | every node, every interval < %d %% of one core | mean %.1f–%.1f %%, highest "
          "interval %.1f %% | %s |"
          % (CPU_MAX_PCT, min(cpu_mean.values()), max(cpu_mean.values()), max(cpu_max.values()),
             yes(max(cpu_max.values()) < CPU_MAX_PCT)))
    w("| restarts survived | every kill -9 → rejoined, same chain | %d of %d%s | %s |"
      % (survived_clean, len(kills),
         "; nodes that exited by themselves: %d" % len(exited) if exited else "",
         yes(survived_clean == len(kills) and not exited) if kills else "–"))
    w("")
    w("## Headline figures")
    w("")
    w("- Heights: %s (lowest common height %d)." % (", ".join("%s %d" % (n, finals[n]) for n in names), common))
    w("- Forks: %d over %d heights." % (len(forks), compared))
    if live:
        w("- Finality (block timestamp → finalized on that node, every node's every block outside catch-up): "
          "p50 %.2f s, p99 %.2f s, max %.2f s. Blocks decided in a round above 0: %d of %d."
          % (pct(live, 50) / 1000, pct(live, 99) / 1000, max(live) / 1000, nonzero_rounds, len(rounds)))
    if bpm is not None:
        w("- Blocks per minute: %.2f (heights %d → %d between t = %d s and t = %d s), one block every "
          "%.2f s: the block time of the genesis plus the time to decide a height."
          % (bpm, top_height(first_t), top_height(last_t), first_t, last_t, 60.0 / bpm if bpm else 0))
    if mem_rows:
        w("- Resident memory: %.1f–%.1f MiB per node (highest sample)."
          % (min(mib(m[5]) for m in mem_rows), max(mib(m[5]) for m in mem_rows)))
    if cpu_mean:
        w("- CPU: %.1f–%.1f %% of one core on average per node; highest one-interval figure %.1f %%."
          % (min(cpu_mean.values()), max(cpu_mean.values()), max(cpu_max.values())))
    w("- Restarts survived: %d of %d." % (survived_clean, len(kills)))
    w("")

    w("## Per node")
    w("")
    w("| node | final height | blocks stored | restarts | finality p50 / p99 (ms) | RSS last / max (MiB) "
      "| CPU mean / max (%) | peers at end | evidence |")
    w("|---|---|---|---|---|---|---|---|---|")
    for n in names:
        f = per_node[n]
        rs = [r for _, _, r in rss[n]]
        st = status[n]
        w("| %s | %d | %d | %d | %s | %s | %s | %s | %s |" % (
            n, finals[n], len(blocks[n]), sum(1 for e in kills if e["node"] == n),
            "%d / %d" % (pct(f, 50), pct(f, 99)) if f else "–",
            "%.1f / %.1f" % (mib(rs[-1]), mib(max(rs))) if rs else "–",
            "%.1f / %.1f" % (cpu_mean[n], cpu_max[n]) if n in cpu_mean else "–",
            len(st.get("peers", [])) if st else "–",
            len(st.get("evidence") or []) if st else "–"))
    w("")

    w("## Restarts")
    w("")
    if kills:
        w("| t (s) | event | node | height | detail |")
        w("|---|---|---|---|---|")
        for e in events:
            if e["event"] in ("kill9", "rejoined", "rejoin-timeout", "rejoin-mismatch", "exited"):
                w("| %s | %s | %s | %s | %s |" % (e["t_s"], e["event"], e["node"], e["height"], e["detail"]))
    else:
        w("None scheduled.")
    if shaper_restarts:
        w("")
        w("Link shaper restarts (its link dropped everything while it was down): %d." % len(shaper_restarts))
    w("")

    w("## Forks")
    w("")
    if forks:
        for h, hs in forks[:20]:
            w("- height %d: %s" % (h, ", ".join("%s %s" % (n, x[:16]) for n, x in hs.items())))
    else:
        w("None: at each of the %d heights every node that has the block has the same hash." % compared)
    w("")

    w("## Finality")
    w("")
    w("Finality of a block on a node = the time it finalized the block minus the block's timestamp "
      "(set by its proposer), as stored with the block (`finality_ms` of `/blocks`). All nodes share one "
      "clock here, so no clock offset enters the figure.")
    w("")
    if live:
        w("| set | blocks | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) |")
        w("|---|---|---|---|---|---|")
        w("| live (excluding heights a restarted node fetched while catching up) | %d | %d | %d | %d | %d |"
          % (len(live), pct(live, 50), pct(live, 90), pct(live, 99), max(live)))
        w("| all, catch-up included | %d | %d | %d | %d | %d |"
          % (len(all_f), pct(all_f, 50), pct(all_f, 90), pct(all_f, 99), max(all_f)))
        w("")
        w("Both sets cover heights 1–%d, those decided by the last sample. %s"
          % (window_end, "Heights above 1 s outside catch-up: %s." % ", ".join(
              "%d (proposer %s)" % hp for hp in slow) if slow else "No height took more than 1 s."))
    if after:
        w("")
        w("Heights %d–%d were decided while the blocks were being fetched for this report, after the "
          "run's end; they are compared for forks but left out of these figures (the fetch itself loads "
          "the nodes and their links). Their finality: p50 %d ms, max %d ms."
          % (after[0], after[-1], pct(after_f, 50), max(after_f)))
    w("")

    if times:
        w("## Samples")
        w("")
        step = max(1, len(times) // 60)
        w("%s; all of them are in [`%s`](%s). Columns are n1 … n%d; CPU is over the interval "
          "before the sample, – where a process has no earlier sample."
          % ("One row per sample" if step == 1 else "One row per %d samples" % step,
             a.samples_name, a.samples_name, len(names)))
        w("")
        w("| t (s) | heights | RSS (MiB) | CPU (%) |")
        w("|---|---|---|---|")
        cpu_at = {(n, t): c for n in names for t, c in cpu[n]}
        for t in times[::step] + ([times[-1]] if (len(times) - 1) % step else []):
            row = by_t[t]
            hs = " ".join(row[n]["height"] or "–" if n in row else "–" for n in names)
            rs = " ".join("%.0f" % mib(int(row[n]["rss_kib"])) if n in row and row[n]["rss_kib"] else "–"
                          for n in names)
            cs = " ".join("%.1f" % cpu_at[(n, t)] if (n, t) in cpu_at else "–" for n in names)
            w("| %d | %s | %s | %s |" % (t, hs, rs, cs))
        w("")

    if mem_rows:
        w("## Memory per process")
        w("")
        w("| node | pid | started (s) | RSS at 10th min (MiB) | last (MiB) | max (MiB) "
          "| growth, last %d min | slope, last %d min (MiB/h) |" % (RSS_TAIL_S // 60, RSS_TAIL_S // 60))
        w("|---|---|---|---|---|---|---|---|")
        for n, pid, st, base, last, mx, g, sl in mem_rows:
            w("| %s | %s | %d | %s | %.1f | %.1f | %s | %s |" % (
                n, pid, st, "%.1f" % mib(base) if base else "–", mib(last), mib(mx),
                "%+.1f %%" % (g * 100) if g is not None else "–", "%+.2f" % sl if sl is not None else "–"))
        w("")

    if shaper:
        w("## Link emulation, measured")
        w("")
        tp = sum(p for p, _ in shaper.values())
        td = sum(d for _, d in shaper.values())
        w("Packets the shapers passed / dropped: %d / %d (%.3f %% loss; asked %s %%)."
          % (tp, td, 100.0 * td / max(1, tp + td), meta["loss_pct"]))
        w("")

    w("## Reproduce")
    w("")
    w("```sh")
    w("cargo build --release -p timed")
    w("sudo deploy/testnet.sh --duration %ds --nodes %s --latency %sms --jitter %sms --loss %s "
      "--block-time %s --restart-every %ss"
      % (int(meta["duration_s"]), meta["nodes"], meta["latency_ms"], meta["jitter_ms"], meta["loss_pct"],
         meta["block_time"], meta["restart_every_s"]))
    w("```")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
