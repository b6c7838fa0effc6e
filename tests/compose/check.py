#!/usr/bin/env python3
"""Helpers of tests/compose/run (standard library only).

  check.py leaders DESCRIBE_JSON            -> "P:LEADER ..." for every partition; exit 1 if any
                                               partition has no leader (0 or null)
  check.py most-leader DESCRIBE_JSON        -> the node id leading the most partitions
  check.py caught-up TOPIC TOTAL NODE_METRICS LEADER_METRICS..
                                            -> exit 0 when, for every partition, NODE's log end
                                               offset and high watermark equal the highest high
                                               watermark of any node and those add up to TOTAL
  check.py records FILE EXPECTED_TOTAL      -> checks `skein consume --output json` lines: every
                                               value e2e-00001..e2e-TOTAL exactly once with key
                                               k00001..; offsets of each partition 0,1,2.. in order
"""
import json
import re
import sys
from collections import Counter, defaultdict


def leaders(path):
    with open(path) as f:
        t = json.load(f)
    out, ok = [], True
    for p in t["partitions"]:
        leader = p.get("leader") or 0
        ok &= leader != 0
        out.append(f"{p['partition']}:{leader}")
    print(" ".join(out))
    return 0 if ok and t["partitions"] else 1


def most_leader(path):
    with open(path) as f:
        t = json.load(f)
    counts = Counter(p["leader"] for p in t["partitions"] if p.get("leader"))
    if not counts:
        print("no partition has a leader", file=sys.stderr)
        return 1
    # Most partitions; ties go to the lowest node id (deterministic).
    node, _ = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
    print(node)
    return 0


METRIC = re.compile(r'^(skein_partition_high_watermark|skein_partition_log_end_offset)'
                    r'\{topic="([^"]*)",partition="(\d+)"\} (\d+)$')


def gauges(path, topic):
    hwm, leo = {}, {}
    with open(path) as f:
        for line in f:
            m = METRIC.match(line.strip())
            if m and m.group(2) == topic:
                (hwm if m.group(1).endswith("watermark") else leo)[int(m.group(3))] = int(m.group(4))
    return hwm, leo


def caught_up(topic, total, node_path, *others):
    node_hwm, node_leo = gauges(node_path, topic)
    best = defaultdict(int)
    for path in (node_path, *others):
        hwm, _ = gauges(path, topic)
        for p, v in hwm.items():
            best[p] = max(best[p], v)
    report = " ".join(
        f"p{p}: hwm {node_hwm.get(p)} leo {node_leo.get(p)} / {best[p]}" for p in sorted(best))
    print(report)
    done = (sum(best.values()) == int(total) and bool(best)
            and all(node_hwm.get(p) == v and node_leo.get(p) == v for p, v in best.items()))
    return 0 if done else 1


def records(path, total):
    total = int(total)
    values = Counter()
    offsets = defaultdict(list)
    bad = wrong_key = 0
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except ValueError:
                bad += 1
                continue
            values[r["value"]] += 1
            offsets[r["partition"]].append(r["offset"])
            if not (isinstance(r["value"], str) and r.get("key") == "k" + r["value"][4:]):
                wrong_key += 1
    expected = {f"e2e-{i:05d}" for i in range(1, total + 1)}
    missing = sorted(expected - set(values))
    extra = sorted(set(values) - expected)
    dups = sorted(v for v, n in values.items() if n > 1)
    problems = []
    if bad:
        problems.append(f"{bad} lines are not JSON")
    if wrong_key:
        problems.append(f"{wrong_key} records whose key is not k + the value's number")
    if missing:
        problems.append(f"{len(missing)} missing (first: {missing[:5]})")
    if dups:
        problems.append(f"{len(dups)} duplicated (first: {dups[:5]})")
    if extra:
        problems.append(f"{len(extra)} unexpected (first: {extra[:5]})")
    for p, offs in sorted(offsets.items()):
        if offs != list(range(len(offs))):
            gaps = [(a, b) for a, b in zip(offs, offs[1:]) if b != a + 1][:5]
            problems.append(f"partition {p}: offsets not 0..{len(offs) - 1} in order "
                            f"(first {offs[:1]}, jumps {gaps})")
    per_partition = ", ".join(f"p{p}: {len(o)}" for p, o in sorted(offsets.items()))
    print(f"{sum(values.values())} records ({per_partition})")
    for pr in problems:
        print(f"  {pr}", file=sys.stderr)
    return 1 if problems else 0


def main(argv):
    cmds = {"leaders": leaders, "most-leader": most_leader, "caught-up": caught_up,
            "records": records}
    if len(argv) < 2 or argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[argv[1]](*argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
