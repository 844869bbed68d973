"""Coverage-guided fuzzing of model-folder loading with atheris (libFuzzer for Python).

    pip install atheris
    python tests/fuzz_model_folder.py -max_total_time=600 -artifact_prefix=fuzz-crashes/ fuzz-corpus/

Each input is one byte choosing the file (even: model.json, odd: model.safetensors) and the
bytes to put in it; the other file stays as written. The property is the one
tests/test_reliability.py checks with hypothesis: loading gives exactly the original model or
a CheckpointError naming the folder; anything else is a crash, which libFuzzer writes under
-artifact_prefix. Keep each crash, once fixed, as a regression case:
tests/data/fuzz_model_folder/<FILE_NAME>--<what it was> holding the file's bytes.
The seed corpus (the two valid files) is written into the corpus folder at the start.
"""
from __future__ import annotations

import os
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    from minis2s import checkpoint, safetensors, translator  # noqa: F401  (instrumented for coverage)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_reliability import check_loads_the_original_or_refuses, tiny_folder

NAMES = ("model.json", "model.safetensors")
FOLDER = os.path.join(tempfile.mkdtemp(prefix="minis2s-fuzz-"), "m")
MODEL = tiny_folder(FOLDER, arch="attention")
WEIGHTS = MODEL.state_dict()
META = translator.load_model(FOLDER).meta
FILES = {}
for _name in NAMES:
    with open(os.path.join(FOLDER, _name), "rb") as _f:
        FILES[_name] = _f.read()


def one_input(data: bytes) -> None:
    if not data:
        return
    name = NAMES[data[0] % 2]
    path = os.path.join(FOLDER, name)
    try:
        with open(path, "wb") as f:
            f.write(data[1:])
        check_loads_the_original_or_refuses(FOLDER, WEIGHTS, META, name)
    finally:
        with open(path, "wb") as f:
            f.write(FILES[name])


def write_seeds(corpus: str) -> None:
    os.makedirs(corpus, exist_ok=True)
    for i, name in enumerate(NAMES):
        with open(os.path.join(corpus, f"seed-{name}"), "wb") as f:
            f.write(bytes([i]) + FILES[name])


if __name__ == "__main__":
    corpora = [a for a in sys.argv[1:] if not a.startswith("-")]
    for c in corpora:
        write_seeds(c)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
