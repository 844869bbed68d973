#!/usr/bin/env bash
# The GPU checks in one prepared run, for the day a GPU is lent (device time is short: minutes).
#
#   bash benchmarks/gpu_check.sh          # from anywhere; it works in the repository root
#
# Without an NVIDIA GPU it prints one line ("gpu_check: no NVIDIA GPU (...)"), writes nothing and
# exits 1. With one, each step runs under its own `timeout`, all of them within BUDGET_S (8 min):
#   1. the CUDA extras (pyproject.toml's `cuda` and `numba-cuda` extras): kept if CuPy and
#      numba.cuda import; else installed from wheels in .whl/ (a lent machine reaches no
#      registry: carry them, see the device notes) into /tmp/gpu_check_site, else by pip
#   2. python -m pytest tests/test_gpu.py (every test that needs a GPU lives there), less step 3
#   3. the torch-CUDA cross-check: the GPU path (kernels/lstm_cuda_c.py) against torch.nn.LSTM on cuDNN
#   4. python benchmarks/lstm_step.py (the default grid; --gpu-estimates puts the H100 estimates
#      and register counts beside the measurements; --out benchmarks/results/lstm_step_gpu.json)
# and writes benchmarks/RESULTS.md: device (nvidia-smi), date, commit, versions (python, numpy,
# cupy, numba, numba-cuda, torch, CUDA), then each step's command, exit status, seconds and
# output. It is written step by step, so a run cut short keeps what it did. Where $OUT names a
# folder (the device tool's), RESULTS.md and the JSON are copied there too.
# Python: $PYTHON, else .venv/bin/python, else python3; the first of them that imports CuPy and
# numba.cuda, else the first that imports NumPy. Exit status: 0 when every step passed, else 1.
set -u
cd "$(dirname "$0")/.." || exit 1
BUDGET_S=${GPU_CHECK_BUDGET_S:-480}
RESULTS=benchmarks/RESULTS.md
BENCH_JSON=benchmarks/results/lstm_step_gpu.json

# ---- 0. is there a GPU? (before anything is written) --------------------------------------------
if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA GPU (nvidia-smi not found)" >&2
    exit 1
fi
if ! gpus=$(timeout 30 nvidia-smi -L 2>&1) || ! grep -q '^GPU ' <<<"$gpus"; then
    echo "gpu_check: no NVIDIA GPU (nvidia-smi -L: $(head -n 1 <<<"$gpus"))" >&2
    exit 1
fi

PY=""
for candidate in ${PYTHON:-} .venv/bin/python python3; do
    command -v "$candidate" >/dev/null 2>&1 || continue
    "$candidate" -c 'import numpy' >/dev/null 2>&1 || continue
    [ -z "$PY" ] && PY=$candidate
    if "$candidate" -c 'import cupy, numba.cuda' >/dev/null 2>&1; then PY=$candidate; break; fi
done
if [ -z "$PY" ]; then
    echo "gpu_check: no Python with NumPy found (tried ${PYTHON:-} .venv/bin/python python3; set PYTHON)" >&2
    exit 1
fi
export PYTHONUNBUFFERED=1

copy_out() {  # the device tool brings back what is under $OUT
    if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
        cp "$RESULTS" "$OUT"/ 2>/dev/null
        [ -f "$BENCH_JSON" ] && cp "$BENCH_JSON" "$OUT"/
    fi
    return 0
}

SUMMARY=()
FAILED=0
# step TITLE SECONDS CMD...: run CMD under timeout (within what is left of the budget), show its
# output as it comes, and append a section to RESULTS.md.
step() {
    local title=$1 limit=$2 left log rc started took last
    shift 2
    left=$((BUDGET_S - SECONDS - 10))
    [ "$limit" -gt "$left" ] && limit=$left
    printf '\n## %s\n\n`%s`\n\n' "$title" "$*" >>"$RESULTS"
    if [ "$limit" -lt 20 ]; then
        echo "skipped: the ${BUDGET_S} s budget is spent" | tee -a "$RESULTS"
        SUMMARY+=("| $title | skipped (budget spent) | 0 |")
        FAILED=1
        return
    fi
    echo "== gpu_check: $title (at most $limit s)"
    log=$(mktemp)
    started=$SECONDS
    timeout -k 10 "$limit" "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    took=$((SECONDS - started))
    last=$(grep -v '^\s*$' "$log" | tail -n 1 | tr '|' '/' | cut -c1-120)
    case $rc in
        0) status="exit 0" ;;
        124 | 137) status="TIMED OUT after $limit s" ;;
        *) status="FAILED, exit $rc" ;;
    esac
    [ "$rc" -ne 0 ] && FAILED=1
    { printf '%s in %s s\n\n```\n' "$status" "$took"; cat "$log"; printf '```\n'; } >>"$RESULTS"
    SUMMARY+=("| $title | $status: $last | $took |")
    rm -f "$log"
    copy_out
}

# ---- the header: device, date, versions ---------------------------------------------------------
rm -f "$BENCH_JSON"  # a result left by an earlier run is not this run's
{
    echo "# GPU check"
    echo
    echo "Written by \`bash benchmarks/gpu_check.sh\` on $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit" \
        "$(git rev-parse --short HEAD 2>/dev/null || echo unknown), host $(uname -n)."
    echo
    echo "## Device"
    echo
    echo '```'
    echo "$gpus"
    timeout 30 nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap,clocks.max.sm \
        --format=csv 2>&1
    echo '```'
} >"$RESULTS"

versions() {
    "$PY" - <<'EOF'
import importlib, importlib.metadata, platform, sys

def get(mod, attr="__version__"):
    try:
        return getattr(importlib.import_module(mod), attr)
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        return f"not importable ({type(e).__name__}: {e})"

def dist(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"

print(f"python      {platform.python_version()} ({sys.executable})")
print(f"numpy       {get('numpy')}")
print(f"numba       {get('numba')}; numba-cuda {dist('numba-cuda')}")
try:
    import cupy
    rt, drv = cupy.cuda.runtime.runtimeGetVersion(), cupy.cuda.runtime.driverGetVersion()
    print(f"cupy        {cupy.__version__}; CUDA runtime {rt // 1000}.{rt % 1000 // 10}, "
          f"driver API {drv // 1000}.{drv % 1000 // 10}")
except Exception as e:  # noqa: BLE001
    print(f"cupy        not usable ({type(e).__name__}: {e})")
try:
    import torch
    print(f"torch       {torch.__version__}; CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
          f"cuda available {torch.cuda.is_available()}")
except Exception as e:  # noqa: BLE001
    print(f"torch       not importable ({type(e).__name__}: {e})")
EOF
    if command -v nvcc >/dev/null 2>&1; then
        echo "nvcc        $(nvcc --version | tail -n 1)"
    else
        echo "nvcc        not found"
    fi
}
write_versions() {
    { printf '\n## Versions\n\n```\n'; versions 2>&1; printf '```\n'; } >>"$RESULTS"
}

# ---- 1. the CUDA extras -------------------------------------------------------------------------
EXTRAS=$("$PY" -c 'import tomllib; d = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]
print(" ".join(d["cuda"] + d["numba-cuda"]))' 2>/dev/null || echo "cupy-cuda13x numba-cuda")
if "$PY" -c 'import cupy, numba.cuda' >/dev/null 2>&1; then
    step "1. CUDA extras ($EXTRAS)" 30 "$PY" -c \
        'import cupy, numba.cuda; print("already installed: cupy", cupy.__version__, "and numba.cuda")'
elif ls .whl/*.whl >/dev/null 2>&1; then
    step "1. CUDA extras ($EXTRAS) from .whl/" 90 "$PY" -m pip install -q --no-index --no-deps \
        --no-compile --no-cache-dir --upgrade --target /tmp/gpu_check_site .whl/*.whl
    export PYTHONPATH=/tmp/gpu_check_site${PYTHONPATH:+:$PYTHONPATH}
else
    # shellcheck disable=SC2086  # one word per requirement
    step "1. CUDA extras ($EXTRAS) by pip" 90 "$PY" -m pip install --retries 0 --timeout 15 $EXTRAS
fi
write_versions
copy_out

# ---- 2-4. the GPU tests, the torch-CUDA cross-check, the benchmark ------------------------------
PYTEST=("$PY" -m pytest -o addopts= -rs -p no:cacheprovider)  # -rs: a skip says why; last line: the counts
step "2. GPU tests" 180 "${PYTEST[@]}" tests/test_gpu.py -k "not torch_cuda"
step "3. torch-CUDA cross-check" 60 "${PYTEST[@]}" -v tests/test_gpu.py -k torch_cuda
step "4. benchmark" 190 "$PY" benchmarks/lstm_step.py --gpu-estimates --out "$BENCH_JSON"

{
    printf '\n## Summary (%s s in all)\n\n| step | result (last line of its output) | seconds |\n|---|---|---|\n' \
        "$SECONDS"
    printf '%s\n' "${SUMMARY[@]}"
} >>"$RESULTS"
copy_out
echo
echo "gpu_check: wrote $RESULTS in $SECONDS s; $([ "$FAILED" -eq 0 ] && echo 'every step passed' || echo 'a step FAILED, timed out or was skipped: see the summary')"
exit "$FAILED"
