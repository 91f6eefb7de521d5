"""One stage, one name: dvc.yaml, params.yaml, pipeline/stages/<name>.py and the flow agree."""

import ast
import importlib
from pathlib import Path

import yaml

from pipeline.dag import stage_order
from tests.conftest import REPO

SHARED_SECTIONS = {"seed", "model", "reward_model"}
# The base stage builds the model every later stage shares, so its section is `model`.
SECTION_OF = {"base": "model"}


def sections_loaded_by(module_path: Path) -> set[str]:
    """Section names passed as a string literal to load_section(...) in a module."""
    tree = ast.parse(module_path.read_text())
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", getattr(node.func, "attr", None)) == "load_section"
        and node.args and isinstance(node.args[0], ast.Constant)
    }


def test_names_agree():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    modules = {p.stem for p in (REPO / "pipeline/stages").glob("*.py") if p.stem != "__init__"}
    assert set(dvc) == modules
    # `findings` configures findings/dvc.yaml (the paper's findings), not a recipe stage
    assert set(params) - SHARED_SECTIONS - {"findings"} == set(dvc) - set(SECTION_OF)
    assert stage_order(REPO / "dvc.yaml") == list(dvc)  # the flow's tasks, in file order here
    for stage, spec in dvc.items():
        section = SECTION_OF.get(stage, stage)
        assert section in spec.get("params", []), f"{stage}: dvc.yaml params lacks {section}"
        assert f"pipeline.stages.{stage}" in spec["cmd"], f"{stage}: cmd runs another module"
        assert section in sections_loaded_by(REPO / f"pipeline/stages/{stage}.py") or (
            # rl stages share one loader; the stage module passes its own name through
            stage.startswith("rl_")
        ), stage
        assert callable(importlib.import_module(f"pipeline.stages.{stage}").main)


def test_every_section_loads_strictly():
    """Each stage's section of the real params.yaml builds the typed params its module loads."""
    from pipeline.params import load_section
    from pipeline.rl.params import RLParams

    for stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]:
        module = importlib.import_module(f"pipeline.stages.{stage}")
        tree = ast.parse((REPO / f"pipeline/stages/{stage}.py").read_text())
        calls = [
            (node.args[0].value, node.args[1].id)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == "load_section"
            and len(node.args) >= 2 and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[1], ast.Name)
        ]
        if stage.startswith("rl_"):  # both RL stages load their own section into RLParams
            calls = [(stage, "RLParams")]
            module = type("M", (), {"RLParams": RLParams})
        assert calls, f"{stage}: no load_section(<section>, <Class>) call found"
        for section, cls_name in calls:
            params = load_section(section, getattr(module, cls_name), REPO / "params.yaml")
            assert type(params).__name__ == cls_name
