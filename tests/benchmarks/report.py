"""Print the figures `make bench` cares about (msgs/s, p50, p99, and a ratio to the baseline
where a benchmark measures one beside it, with the range over its rounds) from a benchmark JSON
file. A round trip measured side by side is followed by each side's figures alone."""

from __future__ import annotations

import json
import sys


def _range(value: object) -> str:
    if isinstance(value, list | tuple) and len(value) == 2:
        return f"{value[0]}-{value[1]}"
    return str(value) if value else ""


def main(path: str) -> None:
    with open(path) as handle:
        results = json.load(handle)
    print(
        f"\n{'benchmark':<52}{'msgs/s':>12}{'p50 µs':>10}{'p99 µs':>10}{'baseline':>12}"
        f"{'ratio':>8}  rounds"
    )
    for bench in sorted(results["benchmarks"], key=lambda b: b["name"]):
        info = bench.get("extra_info", {})
        rate = info.get("msgs_per_s", "")
        baseline = info.get("baseline_msgs_per_s", info.get("baseline_p50_us", ""))
        print(
            f"{bench['name']:<52}{rate:>12}{info.get('p50_us', ''):>10}{info.get('p99_us', ''):>10}"
            f"{baseline:>12}{info.get('ratio', ''):>8}  {_range(info.get('ratio_range'))}"
        )
        labels = {  # a round trip split by side (tcp://), and other responders
            "requester": "requester side alone",
            "responder": "responder side alone",
            "subscriber": "answered by a subscriber loop",
        }
        for side, label in labels.items():
            if f"{side}_ratio" in info:
                print(
                    f"{'  ' + label:<52}{'':>12}{info[side + '_p50_us']:>10}"
                    f"{'':>10}{'':>12}{info[side + '_ratio']:>8}"
                )


if __name__ == "__main__":
    main(sys.argv[1])
