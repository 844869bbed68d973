"""The documentation runs as written.

- Every ```python block of README.md and of docs/*.md (the walkthrough) runs, in order, one namespace per file,
  in a fresh folder (so a block that writes a run folder writes a new one).
- The README's "Your own data" commands (the first ```bash block of that section) run exactly as
  written, with ``bash -e``, and the figures the README quotes for them hold: held-out exact
  match >= the quoted floor, and one output line per input line.
"""
import glob
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(REPO, "README.md"), *sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def blocks(path, lang):
    with open(path, encoding="utf-8") as f:
        return [body for kind, body in FENCE.findall(f.read()) if kind == lang]


def env():
    """The test's own Python first on PATH (the README's commands say ``python``), one BLAS thread."""
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return dict(os.environ, PATH=path, OPENBLAS_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [REPO] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))


@pytest.mark.parametrize("path", DOCS, ids=[os.path.relpath(p, REPO) for p in DOCS])
def test_every_python_block_runs(path, tmp_path):
    code = blocks(path, "python")
    if not code:
        pytest.skip("no python blocks")
    script = tmp_path / "blocks.py"
    script.write_text("\n\n".join(code), encoding="utf-8")
    p = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env(), capture_output=True, text=True,
                       timeout=900, check=False)
    assert p.returncode == 0, f"{os.path.basename(path)}'s python blocks failed:\n{p.stdout}\n{p.stderr}"


def own_data_commands() -> str:
    with open(DOCS[0], encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Your own data", 1)[1].split("\n## ", 1)[0]
    return FENCE.search(section).group(2)


def test_the_readmes_own_data_commands_run_as_written(tmp_path):
    cmds = own_data_commands()
    assert "minis2s train" in cmds and "minis2s eval" in cmds and "minis2s predict" in cmds
    p = subprocess.run(["bash", "-e", "-c", cmds], cwd=tmp_path, env=env(), capture_output=True, text=True,
                       timeout=1200, check=False)
    assert p.returncode == 0, f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    m = re.search(r"dates-test\.tsv: exact (\d+\.\d+)%", p.stdout)
    assert m, p.stdout
    assert float(m.group(1)) >= 99.0  # the README's claim: >= 99% exact match on the held-out set
    lines = p.stdout.strip().splitlines()
    assert lines[-2:] == ["1924-02-10", "2001-03-10"]  # predict: one line per input line


def test_the_docs_folder_is_run_too():
    """docs/*.md are collected above (so a walkthrough cannot drop out of the tests unnoticed)."""
    names = [os.path.relpath(p, REPO) for p in DOCS]
    assert os.path.join("docs", "walkthrough.md") in names
    assert blocks(os.path.join(REPO, "docs", "walkthrough.md"), "python")
