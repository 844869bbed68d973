"""minis2s.allocator: glibc keeps freed memory for the next step once told to; the user's
settings win; bad values are refused. The effect is measured in a child process (the setting is
process-wide and cannot be undone, so the test process is never changed)."""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

from minis2s.allocator import USER_SETTINGS, keep_freed_memory, user_choice

GLIBC = hasattr(ctypes.CDLL(None), "gnu_get_libc_version")

# Ten 6 MB arrays at once (a step's gate caches are of this size), then all freed: 60 MB free at
# the heap's top, more than glibc's default trim threshold (twice its dynamic mmap threshold, which
# has grown to 6 MB), so by default part of it goes back to the OS and the next round faults it in
# again (measured: ~5,400 pages a round); kept, no page is faulted in again (measured: 0).
CHILD = r"""
import json, resource, sys
import numpy as np
from minis2s.allocator import keep_freed_memory

def faults_per_round(rounds=6):
    for _ in range(2):  # warm-up: the dynamic threshold settles
        arrays = [np.ones(1_500_000, np.float32) for _ in range(10)]; del arrays
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        arrays = [np.ones(1_500_000, np.float32) for _ in range(10)]; del arrays
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / rounds

before = faults_per_round()
done = keep_freed_memory()
print(json.dumps({"before": before, "done": done, "after": faults_per_round()}))
"""


def clean_env():
    env = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS and k not in ("GLIBC_TUNABLES", "LD_PRELOAD")}
    env.pop("MINIS2S_KEEP_FREED_MEMORY", None)
    return env


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_freed_memory_is_kept_for_the_next_round():
    p = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=clean_env(), timeout=120,
                       check=False)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["done"] == "set"
    assert r["before"] > 2_000  # given back and faulted in again each round (60 MB is 14,650 pages)
    assert r["after"] < 0.02 * r["before"]  # kept: (nearly) no page faulted in again


@pytest.mark.parametrize("name, value, why", [
    ("MALLOC_TRIM_THRESHOLD_", "1000000", "MALLOC_TRIM_THRESHOLD_ is set"),
    ("MALLOC_ARENA_MAX", "2", "MALLOC_ARENA_MAX is set"),
    ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1", "GLIBC_TUNABLES sets glibc.malloc"),
    ("LD_PRELOAD", "/usr/lib/libjemalloc.so.2", "LD_PRELOAD"),
    ("MINIS2S_KEEP_FREED_MEMORY", "0", "MINIS2S_KEEP_FREED_MEMORY=0"),
])
def test_the_users_own_setting_wins(monkeypatch, name, value, why):
    for k in (*USER_SETTINGS, "GLIBC_TUNABLES", "LD_PRELOAD", "MINIS2S_KEEP_FREED_MEMORY"):
        monkeypatch.delenv(k, raising=False)
    assert user_choice() is None
    monkeypatch.setenv(name, value)
    assert why in user_choice()
    assert keep_freed_memory() == f"not set: {user_choice()}"  # returns before touching malloc


@pytest.mark.parametrize("kw, msg", [
    ({"mmap_threshold": 0}, "mmap_threshold must be a positive int"),
    ({"trim_threshold": 1.5}, "trim_threshold must be a positive int"),
    ({"trim_threshold": True}, "trim_threshold must be a positive int"),
    ({"mmap_threshold": 64 * 1024 * 1024}, "at most 33554432"),
    ({"trim_threshold": 2**31}, "below 2\\*\\*31"),
])
def test_bad_thresholds_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg):
        keep_freed_memory(**kw)


def test_the_minis2s_command_keeps_freed_memory_and_a_callers_main_does_not():
    # The command owns its process, so it sets the allocator (minis2s/cli.py); main(argv) called
    # by another program must not change that program's malloc.
    child = r"""
import sys
from minis2s import cli
calls = []
cli.keep_freed_memory = lambda: calls.append(1) or "set"
sys.argv = ["minis2s", "g2p", "predict", "--model", "seq2seq", "cat"]
assert cli.main() == 0 and calls == [1], calls
assert cli.main(["g2p", "predict", "--model", "seq2seq", "dog"]) == 0 and calls == [1], calls
print("ok")
"""
    p = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0 and p.stdout.strip().endswith("ok"), p.stderr
