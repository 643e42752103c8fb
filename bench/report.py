"""Print a Markdown table of the latest benchmark figures from ``bench/results/*.json``.

    python bench/report.py [--results bench/results]

Every figure comes from a results file written by a ``bench/bench_*.py`` run; nothing is typed in.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _num(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.3g}" if abs(x) < 10 else f"{x:,.1f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _figures(result: dict[str, Any]) -> list[dict[str, Any]]:
    if "figures" in result:
        return result["figures"]
    if "fps_1_worker" in result:  # bench_extract.py's own format
        return [{"name": "landmark extraction (MediaPipe Holistic)", "value": result["fps_2_workers"],
                 "unit": "frames/s", "baseline": result["fps_1_worker"], "baseline_name": "1 worker",
                 "ratio": result.get("speedup"), "goal": "", "met": None,
                 "note": f"2 workers; {result.get('copies')} x {result.get('video')}"}]
    return []


def _where(result: dict[str, Any]) -> str:
    m = result.get("machine", {})
    load = m.get("load_average_start")
    load = load[0] if isinstance(load, list) else (result.get("runs") or [{}])[0].get("load_before", "")
    date = (m.get("date") or "")[:16].replace("T", " ")
    cpus = m.get("cores") or m.get("cpus")
    return f"{date} {cpus} cores, load {load}".strip()


def table(results_dir: Path) -> str:
    rows = ["| benchmark | figure | ours | baseline | ratio | goal | met | notes | run |",
            "|---|---|---|---|---|---|---|---|---|"]
    machines = {}
    for path in sorted(results_dir.glob("*.json")):
        result = json.loads(path.read_text())
        name = result.get("benchmark", path.stem)
        for f in _figures(result):
            base = f"{_num(f.get('baseline'))} ({f['baseline_name']})" if f.get("baseline") is not None else ""
            met = {True: "yes", False: "**no**", None: ""}[f.get("met")]
            ratio = f"x{f['ratio']:.2f}" if f.get("ratio") is not None else ""
            rows.append(f"| {name} | {f['name']} | {_num(f['value'])} {f['unit']} | {base} | {ratio} | "
                        f"{f.get('goal', '')} | {met} | {f.get('note', '')} | {_where(result)} |")
        m = result.get("machine", {})
        if m.get("cpu"):
            machines[f"{m['cpu']}, {m.get('cores')} cores, {m.get('ram_gb')} GB RAM, torch {m.get('torch')}"] = True
        corpus = result.get("corpus")
        if corpus and "corpus" not in machines:
            machines["corpus"] = False
            machines[f"benchmark corpus: PHOENIX-2014 sentences and {'real frame counts' if corpus['real_lengths'] else 'estimated lengths'}, "
                     f"fraction {corpus['fraction']:g} ({corpus['sentences']['train']} train sentences, "
                     f"{corpus['frames']['train']} frames), synthetic landmarks"] = True
    notes = [k for k, v in machines.items() if v]
    return "\n".join(rows) + ("\n\n" + "\n".join(f"- {n}" for n in notes) if notes else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    print(table(args.results))


if __name__ == "__main__":
    main()
