"""Print the figures `make bench` cares about (msgs/s, p50, p99) from a benchmark JSON file."""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    with open(path) as handle:
        results = json.load(handle)
    print(f"\n{'benchmark':<52}{'msgs/s':>12}{'p50 µs':>10}{'p99 µs':>10}  baseline, same run")
    for bench in sorted(results["benchmarks"], key=lambda b: b["name"]):
        info = bench.get("extra_info", {})
        rate = info.get("msgs_per_s", "")
        line = (
            f"{bench['name']:<52}{rate:>12}{info.get('p50_us', ''):>10}{info.get('p99_us', ''):>10}"
        )
        if "ratio" in info:  # measured beside its baseline, round by round
            line += (
                f"  {info['baseline_msgs_per_s']}/s, ratio {info['ratio']}"
                f" (rounds {info['ratio_range']})"
            )
        print(line)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".benchmarks/latest.json")
