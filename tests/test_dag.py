import pytest

from pipeline.dag import stage_order

DAG = """\
stages:
  c:
    cmd: x
    deps: [data/b, src]
    outs: [data/c.parquet]
  a:
    cmd: x
    outs: [data/a]
  b:
    cmd: x
    deps: [data/a/part.parquet]
    outs: [data/b]
  d:
    cmd: x
    deps: [data/a]
    metrics: [{reports/d.json: {cache: false}}]
"""


def test_topological_order_follows_outs_to_deps(tmp_path):
    p = tmp_path / "dvc.yaml"
    p.write_text(DAG)
    # a before b (b reads a file under a's out dir); b before c; d only needs a; ties keep
    # file order, so c (listed first) comes as soon as its deps are done.
    assert stage_order(p) == ["a", "b", "c", "d"]


def test_cycle_is_an_error(tmp_path):
    p = tmp_path / "dvc.yaml"
    p.write_text("stages:\n  x: {cmd: x, deps: [o/y], outs: [o/x]}\n  y: {cmd: y, deps: [o/x], outs: [o/y]}\n")
    with pytest.raises(ValueError, match="cycle"):
        stage_order(p)
