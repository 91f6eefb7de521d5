"""Write docs/results.md and the README's results block from the committed reports.

Every figure comes from files under reports/ that the pipeline (``make run``) and the
fresh-problem check (``scripts/heldout_probe.py``) write and git tracks, so the page and the
README cannot drift from the run they describe:

- ``reports/bench/table.md``: the bench (avg@k per model and benchmark);
- ``reports/probe/gains.json``: every model on fresh generated problems, paired 95% CIs;
- ``reports/rl_reasoning/metrics.json``, ``reports/rl_general/metrics.json``: the RL stages'
  own held-out verdicts, prompt repeats, steps;
- ``reports/select/metrics.json``: the chosen SFT checkpoint and its entropy;
- ``reports/pipeline/timing.json``: seconds per stage of the last run in which every stage ran;
- ``reports/experiments/placebo/arms.json`` (optional): the placebo control of the default
  rl_reasoning settings (``scripts/rl_arms.py``), scored on fresh problems.

    .venv/bin/python scripts/results_page.py           # rewrite docs/results.md + README block
    .venv/bin/python scripts/results_page.py --check   # exit 1 if either is stale
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.atomic import write_text  # noqa: E402

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _load(path: Path) -> Any:
    if not path.exists():
        raise SystemExit(f"{path}: missing (run `make run`, then scripts/heldout_probe.py)")
    return json.loads(path.read_text()) if path.suffix == ".json" else path.read_text()


def _ci(row: dict[str, Any]) -> str:
    return f"{row['diff']:+.1f} (95% CI {row['ci_low']:+.1f} to {row['ci_high']:+.1f})"


def placebo_arm(root: Path) -> dict[str, Any] | None:
    """The placebo arm's fresh-problem comparison from the control's record, if committed."""
    path = root / "reports/experiments/placebo/arms.json"
    if not path.exists():
        return None
    arms = json.loads(path.read_text())["arms"]
    found = [a for a in arms.values() if a.get("overrides", {}).get("placebo") is True]
    return found[0]["fresh"]["all_reasoning"] if found else None


def targets(probe: dict[str, Any], timing: dict[str, Any], placebo: dict[str, Any] | None = None
            ) -> list[tuple[str, str, str]]:
    """(target, measured, met / not met) computed from the fresh-problem check, the placebo
    control and timing."""
    m = probe["models"]
    out = []
    if "rl_reasoning" in m and "sft" in m:
        r = m["rl_reasoning"]["all_reasoning"]
        out.append(("rl_reasoning beats the selected SFT model by >= 5 points on fresh "
                    "reasoning problems, CI above 0", _ci(r),
                    "met" if r["diff"] >= 5 and r["ci_low"] > 0 else "**not met**"))
    if placebo is not None:
        out.append(("the placebo of rl_reasoning's defaults moves fresh reasoning by <= 1 point",
                    _ci(placebo), "met" if abs(placebo["diff"]) <= 1 else "**not met**"))
    if "rl_general" in m and "ifeval" in m["rl_general"]:
        paired = probe.get("versus", {}).get("rl_reasoning", {}).get("rl_general")
        if paired:  # the paired differences with their CIs
            g_if, g_re = paired["ifeval"]["diff"], paired["all_reasoning"]["diff"]
            shown_if, shown_re = _ci(paired["ifeval"]), _ci(paired["all_reasoning"])
        else:
            g_if = m["rl_general"]["ifeval"]["avg"] - m["rl_reasoning"]["ifeval"]["avg"]
            g_re = (m["rl_general"]["all_reasoning"]["avg"]
                    - m["rl_reasoning"]["all_reasoning"]["avg"])
            shown_if, shown_re = f"{g_if:+.1f}", f"{g_re:+.1f}"
        out.append(("rl_general beats rl_reasoning by >= 10 points on fresh ifeval prompts",
                    shown_if, "met" if g_if >= 10 else "**not met**"))
        out.append(("... and loses <= 2 points of fresh reasoning", shown_re,
                    "met" if g_re >= -2 else "**not met**"))
    total = timing.get("total_seconds")
    if total is not None:
        out.append(("the whole default in <= 15 min of stage time on 2 cores (20 acceptable)",
                    f"{total:.0f} s on {timing.get('cpu_count')} cores",
                    "met" if total <= 900 else "within 20 min" if total <= 1200
                    else "**not met**"))
    return out


def probe_command(probe: dict[str, Any]) -> str:
    """The command that made the probe's figures (recorded by the probe; older records: the
    command as it was then)."""
    if "command" in probe:
        return probe["command"]
    return (".venv/bin/python scripts/heldout_probe.py --model sft=models/selected "
            "--model rl_reasoning=models/rl_reasoning --model rl_general=models/rl_general "
            "--domains math countdown sudoku knights_knaves code ifeval --per-domain 150 "
            f"--seed {probe['seed']} --baseline sft")


def fresh_table(probe: dict[str, Any]) -> list[str]:
    models = probe["models"]
    groups = [g for g in ("all_reasoning", "math", "countdown", "sudoku", "knights_knaves",
                          "code", "ifeval") if g in next(iter(models.values()))]
    lines = ["| model | " + " | ".join(groups) + " |", "|---|" + "---:|" * len(groups)]
    for name, rows in models.items():
        cells = []
        for g in groups:
            r = rows[g]
            cells.append(f"{r['avg']:.1f}" + (f" ({r['diff']:+.1f}; {r['ci_low']:+.1f} to "
                                              f"{r['ci_high']:+.1f})" if "diff" in r else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    n = {g: next(iter(models.values()))[g]["problems"] for g in groups}
    lines += ["", f"avg@4 in points at the bench's decoding on problems generated with seed "
              f"{probe['seed']} that no split contains ({', '.join(f'{k} {v}' for k, v in n.items())}"
              f" problems); in brackets the paired difference to `{probe['baseline']}` and its "
              "95% bootstrap CI over problems."]
    return lines


def block(root: Path) -> str:
    """The README's results block: the fresh-problem check and the targets."""
    probe = _load(root / "reports/probe/gains.json")
    timing = _load(root / "reports/pipeline/timing.json")
    lines = [BEGIN, "", *fresh_table(probe), "", "| target | measured | status |",
             "|---|---|---|"]
    lines += [f"| {t} | {v} | {s} |" for t, v, s in targets(probe, timing, placebo_arm(root))]
    lines += ["", "Generated by `scripts/results_page.py` from the committed reports; details "
              "and the bench in [docs/results.md](docs/results.md).", "", END]
    return "\n".join(lines)


def run_params_digest(root: Path, commit: str) -> str:
    """sha256 (12 hex digits) of the params.yaml the run used: the file at the run's commit
    when git has it, else the checkout's (marked as such)."""
    try:
        text = subprocess.run(["git", "show", f"{commit}:params.yaml"], cwd=root,
                              capture_output=True, check=True).stdout if commit else None
    except (OSError, subprocess.CalledProcessError):
        text = None
    if text is None:
        return hashlib.sha256((root / "params.yaml").read_bytes()).hexdigest()[:12] + \
            " (this checkout's)"
    return hashlib.sha256(text).hexdigest()[:12]


def page(root: Path) -> str:
    probe = _load(root / "reports/probe/gains.json")
    timing = _load(root / "reports/pipeline/timing.json")
    bench = _load(root / "reports/bench/table.md")
    select = _load(root / "reports/select/metrics.json")
    params_sha = run_params_digest(root, timing.get("commit", ""))
    lines = ["# Results of the default recipe", "",
             "Generated by `scripts/results_page.py` from the committed reports; do not edit by "
             "hand. Rerun `make run`, then `.venv/bin/python scripts/heldout_probe.py` (command "
             "below), then this script.", "",
             f"- pipeline run: commit `{timing.get('commit', '?')[:10]}`, {timing.get('date', '?')}, "
             f"{timing.get('cpu_count', '?')} cores; params.yaml sha256 `{params_sha}`",
             f"- selected SFT checkpoint: epoch {select.get('chosen_epoch')} (entropy "
             f"{select.get('chosen_entropy', float('nan')):.3f} nats)", "",
             "## Fresh problems", "", *fresh_table(probe), "",
             f"Command: `{probe_command(probe)}`", "",
             "## Targets", "", "| target | measured | status |", "|---|---|---|"]
    placebo = placebo_arm(root)
    lines += [f"| {t} | {v} | {s} |" for t, v, s in targets(probe, timing, placebo)]
    if placebo is not None:
        lines += ["", "The placebo control (rewards shuffled within each group, the default "
                  "rl_reasoning settings otherwise, from the same selected model): "
                  "[reports/experiments/placebo](../reports/experiments/placebo/gains.md)."]
    lines += ["", "## The RL stages' own verdicts", ""]
    for stage in ("rl_reasoning", "rl_general"):
        m = _load(root / f"reports/{stage}/metrics.json")
        lines.append(f"- `{stage}` ({m['steps']} steps, {m.get('prompts_drawn', '?')} prompt "
                     f"draws, {100 * m.get('repeat_share', 0):.0f}% repeats): {m['verdict']}")
    lines += ["", "## Bench (40 problems per benchmark)", "", bench.strip(), "",
              "## Stage times", ""]
    if "load_avg" in timing:
        lines += [f"Load average as the run ended (1, 5, 15 min): "
                  f"{', '.join(f'{x:.1f}' for x in timing['load_avg'])} on "
                  f"{timing.get('cpu_count', '?')} cores (about the core count when the pipeline "
                  "ran alone; more means other work shared the machine).", ""]
    else:
        lines += ["This run's record has no load average: its seconds may include other work "
                  "that shared the machine.", ""]
    cpu = timing.get("cpu_seconds")
    if cpu is None:  # a record from before the flow measured CPU time
        lines += ["| stage | seconds |", "|---|---:|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in timing.get("seconds", {}).items()]
        lines += [f"| **total** | {timing.get('total_seconds', float('nan')):.1f} |", ""]
        return "\n".join(lines)
    lines += ["CPU seconds: user + system time of the stage's whole process tree (DVC, the "
              "stage, its workers and sandboxes); on a shared machine it grows less than wall "
              "seconds when other work competes for the cores.", "",
              "| stage | seconds | CPU seconds |", "|---|---:|---:|"]
    lines += [f"| {k} | {v:.1f} | {cpu.get(k, float('nan')):.1f} |"
              for k, v in timing.get("seconds", {}).items()]
    lines += [f"| **total** | {timing.get('total_seconds', float('nan')):.1f} | "
              f"{timing.get('total_cpu_seconds', float('nan')):.1f} |", ""]
    return "\n".join(lines)


def with_block(text: str, new: str, name: str = "README.md", begin: str = BEGIN,
               end: str = END) -> str:
    """``text`` with its ``begin`` ... ``end`` block replaced by ``new`` (markers included in
    ``new``); ``name`` is the file the text came from, for the error."""
    if begin not in text or end not in text:
        raise SystemExit(f"{name} has no {begin} ... {end} block")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return head + new + tail


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(REPO))
    ap.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    args = ap.parse_args(argv)
    root = Path(args.root)
    outputs = {root / "docs/results.md": page(root),
               root / "README.md": with_block((root / "README.md").read_text(), block(root))}
    return write_or_check(outputs, args.check, "scripts/results_page.py")


def write_or_check(outputs: dict[Path, str], check: bool, script: str) -> int:
    """Write each generated file (atomically); with ``check``, write nothing and exit 1 if any differs
    from what ``script`` would write (the pages' ``--check``)."""
    stale = [p for p, text in outputs.items() if not p.exists() or p.read_text() != text]
    if check:
        for p in stale:
            print(f"{p} is stale: run {script}", file=sys.stderr)
        return 1 if stale else 0
    for p, text in outputs.items():
        write_text(p, text)
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
