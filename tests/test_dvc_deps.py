"""dvc.yaml declares the code each stage runs: every ``pipeline`` module a stage imports
(transitively, function-level imports included) lies under one of the stage's deps, so a code
change can never leave a stage "up to date"; and each stage's params sections are the ones
its code loads."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from tests.conftest import REPO

# Foundation modules that cannot change what a stage computes: the empty top package, atomic
# writes, MLflow logging and the strict params loader (the values it loads are DVC params).
NOT_DEPS = {"pipeline/__init__.py", "pipeline/atomic.py", "pipeline/tracking.py",
            "pipeline/params.py"}


def module_file(name: str) -> Path | None:
    """The file of ``pipeline.x.y`` in the repo (package __init__ or module), or None."""
    parts = name.split(".")
    base = REPO.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imports_of(path: Path) -> set[str]:
    """``pipeline.*`` modules imported anywhere in ``path`` (absolute imports)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("pipeline")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("pipeline"):
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}  # submodules by name
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" \
                and node.args and isinstance(node.args[0], ast.Constant) \
                and str(node.args[0].value).startswith("pipeline"):
            out.add(str(node.args[0].value))
    return out


def closure(module: str) -> set[Path]:
    """Files of ``module`` and of every pipeline module it reaches, packages' __init__ too."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
            f = module_file(".".join(parts[:i]))
            if f is not None and f not in seen:
                seen.add(f)
                todo.extend(imports_of(f))
    return seen


def test_stage_deps_cover_the_code_it_imports():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    missing = {}
    for stage, spec in stages.items():
        deps = [REPO / d for d in spec.get("deps", [])]
        files = closure(f"pipeline.stages.{stage}")
        uncovered = sorted(
            str(f.relative_to(REPO)) for f in files
            if str(f.relative_to(REPO)) not in NOT_DEPS
            if not any(f == d or d in f.parents for d in deps)
        )
        if uncovered:
            missing[stage] = uncovered
    assert missing == {}


def test_closure_follows_function_level_imports(tmp_path):
    # the RL stage imports the model loader inside a function: the closure must see it
    files = {str(f.relative_to(REPO)) for f in closure("pipeline.rl.stage")}
    assert "pipeline/model/checkpoint.py" in files
    assert "pipeline/verify/__init__.py" in files  # default_score_fn's import


# findings/dvc.yaml (the paper's findings): the stage modules each finding's stages run
FINDINGS_RUNS = {"normalisers": ["rl_reasoning"], "entropy_band": ["rl_reasoning"],
                 "two_stage": ["rl_reasoning", "rl_general"]}


def test_findings_stage_deps_cover_the_code_they_run():
    stages = yaml.safe_load((REPO / "findings/dvc.yaml").read_text())["stages"]
    def script_closure(scripts: list[str]) -> set[Path]:
        out: set[Path] = set()
        for script in scripts:
            for mod in imports_of(REPO / "scripts" / script):
                out |= closure(mod)
        return out

    arm_code = script_closure(["findings.py"])  # heldout_probe: imported by the report only
    report_code = script_closure(["findings.py", "findings_report.py", "heldout_probe.py"])
    missing = {}
    for name, spec in stages.items():
        finding = name.removesuffix("-report")
        report = name.endswith("-report")
        runs = ["bench"] if report else FINDINGS_RUNS[finding]
        files = set(report_code if report else arm_code)
        for run in runs:
            files |= closure(f"pipeline.stages.{run}")
        deps = [REPO / d for d in spec.get("deps", [])]
        uncovered = sorted(
            str(f.relative_to(REPO)) for f in files
            if str(f.relative_to(REPO)) not in NOT_DEPS
            if not any(f == d or d in f.parents for d in deps))
        if uncovered:
            missing[name] = uncovered
    assert missing == {}
