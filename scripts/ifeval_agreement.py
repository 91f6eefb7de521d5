"""Agreement of our IFEval checkers with the official implementation's verdicts.

Inputs (public files of the benchmark, not in this repository; see docs/bench.md):

- ``--input-data``: IFEval's ``input_data.jsonl`` (541 prompts, 834 instructions);
- ``--responses``: responses to score, e.g. the published sample
  ``input_response_data_gpt4_20231107_145030.jsonl`` (``prompt``, ``response``);
- the official verdicts on those responses, either as the official evaluation's output files
  (``--official-strict eval_results_strict.jsonl --official-loose eval_results_loose.jsonl``) or
  computed here by running the official code from its own checkout in its own Python
  (``--official-dir DIR --official-python PY``: ``DIR`` holds the ``instruction_following_eval``
  package, ``PY`` has absl-py, langdetect, nltk, immutabledict and NLTK's ``punkt`` data). The
  official code is run unchanged, with langdetect's seed fixed to 0 (it samples at random; our
  checker fixes the same seed), so the comparison is repeatable.

Prints prompts scored, instruction-level agreement in strict and loose mode (and per id where
they differ), prompt-level accuracy of both implementations, and the agreement of the whole
pipeline path (benchmark loader -> ``pipeline.verify.score``, strict) at prompt level. Exit code 1
if instruction-level agreement is below ``--min-agreement`` in either mode.

Run::

    .venv/bin/python scripts/ifeval_agreement.py --input-data IFEVAL/data/input_data.jsonl \\
        --responses IFEVAL/data/input_response_data_gpt4_20231107_145030.jsonl \\
        --official-dir IFEVAL_PARENT --official-python /path/to/venv/bin/python
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.bench.ifeval_map import ifeval_reference  # noqa: E402
from pipeline.bench.loaders import load_benchmark, read_rows  # noqa: E402
from pipeline.verify import score  # noqa: E402
from pipeline.verify.ifeval import follows, follows_loose  # noqa: E402

RUN_OFFICIAL = """
import sys
from langdetect import DetectorFactory
DetectorFactory.seed = 0
from absl import app
from instruction_following_eval import evaluation_main
sys.argv = ["evaluation_main", "--input_data=" + sys.argv[1],
            "--input_response_data=" + sys.argv[2], "--output_dir=" + sys.argv[3]]
app.run(evaluation_main.main)
"""


def official_verdicts(args: argparse.Namespace) -> tuple[Path, Path, tempfile.TemporaryDirectory | None]:
    if args.official_strict and args.official_loose:
        return args.official_strict, args.official_loose, None
    if not (args.official_dir and args.official_python):
        sys.exit("give --official-strict and --official-loose, or --official-dir and "
                 "--official-python")  # fmt: skip
    tmp = tempfile.TemporaryDirectory(prefix="ifeval-official-")
    env = {**os.environ, "PYTHONPATH": str(args.official_dir)}
    proc = subprocess.run([str(args.official_python), "-c", RUN_OFFICIAL, str(args.input_data),
                           str(args.responses), tmp.name], env=env, capture_output=True,
                          text=True)  # fmt: skip
    if proc.returncode != 0:
        sys.exit(f"official evaluation failed:\n{proc.stderr[-3000:]}")
    out = Path(tmp.name)
    return out / "eval_results_strict.jsonl", out / "eval_results_loose.jsonl", tmp


def by_prompt(path: Path) -> dict[str, list[bool]]:
    return {r["prompt"]: r["follow_instruction_list"] for r in read_rows(path)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input-data", type=Path, required=True)
    ap.add_argument("--responses", type=Path, required=True)
    ap.add_argument("--official-strict", type=Path)
    ap.add_argument("--official-loose", type=Path)
    ap.add_argument("--official-dir", type=Path)
    ap.add_argument("--official-python", type=Path)
    ap.add_argument("--min-agreement", type=float, default=0.995)
    ap.add_argument("--show", type=int, default=10, help="disagreements to list per mode")
    args = ap.parse_args(argv)

    strict_path, loose_path, tmp = official_verdicts(args)
    official = {"strict": by_prompt(strict_path), "loose": by_prompt(loose_path)}
    rows = list(read_rows(args.input_data))
    responses = {r["prompt"]: r["response"] for r in read_rows(args.responses)}
    agree = {m: 0 for m in official}
    total = 0
    per_id = {m: collections.Counter() for m in official}
    per_id_total: collections.Counter = collections.Counter()
    prompt_acc = {(who, m): 0 for who in ("ours", "official") for m in official}
    shown = {m: [] for m in official}
    scored = 0
    for i, row in enumerate(rows):
        response = responses.get(row["prompt"])
        if response is None or row["prompt"] not in official["strict"]:
            continue
        ref = ifeval_reference(row, f"{args.input_data}: row {i}")
        ours = {"strict": [follows(c["kind"], c["kwargs"], response) for c in ref["constraints"]],
                "loose": [follows_loose(c["kind"], c["kwargs"], response)
                          for c in ref["constraints"]]}  # fmt: skip
        scored += 1
        total += len(ref["constraints"])
        per_id_total.update(c["kind"] for c in ref["constraints"])
        for m in official:
            theirs = official[m][row["prompt"]]
            prompt_acc[("ours", m)] += all(ours[m])
            prompt_acc[("official", m)] += all(theirs)
            for c, a, b in zip(ref["constraints"], ours[m], theirs, strict=True):
                if a == b:
                    agree[m] += 1
                else:
                    per_id[m][c["kind"]] += 1
                    shown[m].append(f"row {i} key {row.get('key')}: {c['kind']} ours={a} "
                                    f"official={b}")  # fmt: skip
    # The pipeline path: loader -> task -> score() (strict, the bench default).
    tasks = load_benchmark(args.input_data, "ifeval", "ifeval", on_unknown="error").tasks
    pipeline_agree = pipeline_n = 0
    for task in tasks:
        prompt = rows[[r["prompt"].strip() for r in rows].index(task["prompt"])]["prompt"]
        if prompt in responses and prompt in official["strict"]:
            pipeline_n += 1
            pipeline_agree += score(task, responses[prompt]).correct == all(
                official["strict"][prompt])
    print(f"prompts scored: {scored} of {len(rows)} (instructions: {total})")
    ok = True
    for m in official:
        rate = agree[m] / max(1, total)
        ok &= rate >= args.min_agreement
        print(f"{m:>6}: instruction-level agreement {agree[m]}/{total} = {rate:.4%}; "
              f"prompt-level accuracy ours {prompt_acc[('ours', m)] / max(1, scored):.4f}, "
              f"official {prompt_acc[('official', m)] / max(1, scored):.4f}")
        for iid, n in per_id[m].most_common():
            print(f"        {iid}: {n} of {per_id_total[iid]} differ")
        for line in shown[m][: args.show]:
            print(f"        {line}")
    print(f"pipeline path (loader -> score, strict): prompt-level verdicts agree on "
          f"{pipeline_agree}/{pipeline_n}")
    if tmp is not None:
        tmp.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
