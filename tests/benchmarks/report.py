"""Print the figures `make bench` cares about (msgs/s, p50, p99, and a ratio to the baseline
where a benchmark measures one beside it, with the range over its rounds) from a benchmark JSON
file. A round trip measured side by side is followed by each side's figures alone; a
benchmark that measures the CPU of its consuming process, by that CPU per message."""

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
        if "cpu_us_per_msg" in info:  # the consuming process's CPU, beside the baseline's
            print(
                f"{'  CPU µs/msg of the consuming process':<52}{info['cpu_us_per_msg']:>12}"
                f"{'':>10}{'':>10}{info.get('baseline_cpu_us_per_msg', ''):>12}"
            )
        others = {  # the App's throughput benchmarks: more sides than the baseline
            "raw": "App / raw client, same handler body",
            "prefetch": "App with prefetch=256 / the baseline",
        }
        for side, label in others.items():
            if f"{side}_msgs_per_s" in info:
                print(
                    f"{'  ' + label:<52}{info[side + '_msgs_per_s']:>12}{'':>10}{'':>10}"
                    f"{'':>12}{info.get(side + '_ratio', ''):>8}  "
                    f"{_range(info.get(side + '_ratio_range'))}"
                    f"  (CPU {info.get(side + '_cpu_us_per_msg', '')} µs/msg)"
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
