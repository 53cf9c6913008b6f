"""Print the runs of scripts/quality/levers.py (a JSON-lines file) as a markdown table, one row per ranked epoch.

Example:
    python scripts/quality/levers_table.py docs/quality/levers-fb15k-237.jsonl
"""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    print("| run | model | changed settings | epoch | CPU min | wall min | MRR | Hits@10 |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for line in open(path):
        rec = json.loads(line)
        changed = ", ".join(f"{k}={v}" for k, v in rec["set"].items() if k != "epochs") or "(preset)"
        for point in rec["curve"]:
            print(f"| {rec['name']} | {rec['settings']['model']} | {changed} | {point['epoch']} | {point['cpu_min']} "
                  f"| {point['wall_min']} | {point['mrr']:.4f} | {point['hits@10']:.4f} |")


if __name__ == "__main__":
    main(sys.argv[1])
