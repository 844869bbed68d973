"""Data-parallel training over several processes: the one file that knows of mpi4py and NCCL.

    mpiexec -n 4 python -m minis2s train ...                 # 4 processes ("ranks") on one machine
    mpiexec -f hostfile -n 16 python -m minis2s g2p train ... # on the machines of a hostfile

Every rank builds the same model and the same global batches (batch order is a pure function
of (seed, epoch)); rank r trains on its block of each batch's columns (``shard``), each shard's
loss divided by the *whole* batch's token count, so that the shards' gradients add up to the
gradient of the batch's mean loss. One Allreduce of one flat buffer — every gradient, then a
few scalars (the loss, "a signal arrived", "the time limit passed") — sums them over the ranks,
as Horovod's tensor fusion does, and every rank takes the same optimiser step. Only the order
of the additions differs from one process (float64: within 1e-12 after 20 steps,
tests/test_mpi.py). Rank 0 alone reads and writes the run folder and logs.

    world()                  the processes this one was launched with: ``Communicator`` (one
                             process, every collective the identity) under a plain python,
                             ``MPIComm`` under ``mpiexec -n N`` with N > 1 and mpi4py installed
    comm.rank, comm.size, comm.is_root
    comm.shard(batch)        this rank's columns of a batch
    comm.allreduce_sum(a)    a flat array summed over the ranks, in place (NCCL for CuPy arrays)
    comm.broadcast_(a)       rank 0's flat array on every rank, in place
    comm.bcast(obj), comm.allgather(obj), comm.abort(code)
    comm.from_root(fn)       fn() run on rank 0; its result, or its exception, on every rank
    comm.map_batches(fn, xs) fn(xs[i]) on rank i % size; every rank gets all results, in order
    allreduce_gradients(comm, params, scalars)   the fused gradient sum of one training step
    one_voice(comm, ...)     around a CLI command: rank 0 prints; a rank failing alone aborts all
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager

import numpy as np

from minis2s.backend import array_module, is_gpu_array
from minis2s.training.run_folder import RunFolder

# Environment variables through which launchers tell a process how many were started.
LAUNCHER_SIZE = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


class Communicator:
    """One process: the base of every communicator, and the one used without MPI. The
    collectives are the identity; ``shard``, ``map_batches`` and ``from_root`` are written
    once here, on top of them."""

    rank, size = 0, 1

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    # ---- the collectives (MPIComm overrides these) ----------------------------------------
    def allreduce_sum(self, flat):
        return flat

    def broadcast_(self, flat):
        return flat

    def bcast(self, obj):
        return obj

    def allgather(self, obj) -> list:
        return [obj]

    def abort(self, code: int):
        raise SystemExit(code)

    # ---- built on them --------------------------------------------------------------------
    def shard(self, batch):
        """Rank r's contiguous block of the batch's columns (sizes differ by at most one). The
        padded lengths stay the batch's: the model draws one teacher-forcing coin per target
        step, and every rank must draw as many as one process would."""
        if self.size == 1:
            return batch
        lo, hi = block(batch.size, self.rank, self.size)
        return batch.take(np.arange(lo, hi))

    def map_batches(self, fn, items) -> list:
        """[fn(x) for x in items], item i computed on rank i % size, the results gathered on
        every rank in order (dev decoding: one process's batches, spread round the ranks)."""
        mine = [fn(x) for x in items[self.rank::self.size]]
        if self.size == 1:
            return mine
        parts = self.allgather(mine)
        return [parts[i % self.size][i // self.size] for i in range(len(items))]

    def from_root(self, fn):
        """fn() on rank 0 alone (the run folder's reads and writes); its result is broadcast.
        If it raises, every rank raises the same error (marked ``on_every_rank``), so none is
        left waiting for a rank that has stopped."""
        if self.size == 1:
            return fn()
        result, error = None, None
        if self.is_root:
            try:
                result = fn()
            except Exception as e:  # noqa: BLE001 - any error: raised below, on every rank
                error = e
        result, shared = self.bcast((result, error))
        if shared is not None:
            error = error if error is not None else shared
            error.on_every_rank = True
            raise error
        return result


def block(n: int, rank: int, size: int) -> tuple[int, int]:
    """[lo, hi): rank's share of n items in contiguous blocks, the first n % size one longer."""
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


class MPIComm(Communicator):
    """The ranks of an MPI communicator (mpi4py): NumPy buffers go through MPI itself, CuPy
    buffers through NCCL (``NcclReducer``, made at the first one)."""

    def __init__(self, comm=None):
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self._nccl = None

    def allreduce_sum(self, flat):
        if is_gpu_array(flat):
            return self.nccl().allreduce_sum(flat)
        self.comm.Allreduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM)
        return flat

    def broadcast_(self, flat):
        if is_gpu_array(flat):
            return self.nccl().broadcast_(flat)
        self.comm.Bcast(flat, root=0)
        return flat

    def bcast(self, obj):
        return self.comm.bcast(obj, root=0)

    def allgather(self, obj) -> list:
        return self.comm.allgather(obj)

    def abort(self, code: int):
        self.comm.Abort(code)

    @property
    def local_rank(self) -> int:
        """This rank's index among the ranks of its machine: the GPU it should use."""
        return self.comm.Split_type(self.MPI.COMM_TYPE_SHARED).Get_rank()

    def nccl(self) -> NcclReducer:
        if self._nccl is None:
            self._nccl = NcclReducer(self)
        return self._nccl


def share_unique_id(comm: Communicator, make_id):
    """Rank 0's ``make_id()`` (an NCCL unique id: bytes, or a tuple in CuPy < 14) on every rank."""
    return comm.bcast(make_id() if comm.is_root else None)


class NcclReducer:
    """Sums and broadcasts CuPy buffers with NCCL, one rank per GPU (select it first, e.g.
    ``cupy.cuda.Device(comm.local_rank).use()``). The NCCL communicator is built from a unique
    id that rank 0 makes and MPI broadcasts. Written to CuPy's documented API; it has not run
    on a device in this project (README)."""

    def __init__(self, comm: Communicator, nccl=None):
        if nccl is None:
            from cupy.cuda import nccl
        self.nccl = nccl
        self.comm = nccl.NcclCommunicator(comm.size, share_unique_id(comm, nccl.get_unique_id), comm.rank)

    def _dtype(self, dtype) -> int:
        return {np.dtype(np.float32): self.nccl.NCCL_FLOAT32, np.dtype(np.float64): self.nccl.NCCL_FLOAT64}[
            np.dtype(dtype)]

    def allreduce_sum(self, flat):
        import cupy

        self.comm.allReduce(flat.data.ptr, flat.data.ptr, flat.size, self._dtype(flat.dtype), self.nccl.NCCL_SUM,
                            cupy.cuda.get_current_stream().ptr)
        return flat

    def broadcast_(self, flat):
        import cupy

        self.comm.bcast(flat.data.ptr, flat.size, self._dtype(flat.dtype), 0, cupy.cuda.get_current_stream().ptr)
        return flat


def launched_size(environ=None) -> int:
    """How many processes the launcher started (1 under a plain python)."""
    environ = os.environ if environ is None else environ
    for key in LAUNCHER_SIZE:
        if environ.get(key, "").isdigit():
            return int(environ[key])
    return 1


_WORLD: list[Communicator] = []


def world() -> Communicator:
    """This process's communicator, made once. Under a plain python mpi4py is not even
    imported; launched as one of N > 1 processes without it, a RuntimeError says so (N
    processes training alone into one folder would be wrong)."""
    if not _WORLD:
        n = launched_size()
        comm = Communicator()
        if n > 1:
            try:
                import mpi4py  # noqa: F401
            except ImportError as e:
                raise RuntimeError(f"this process is one of {n} that a launcher started, but mpi4py is not "
                                   "installed: pip install 'minis2s[mpi]'") from e
            mpi = MPIComm()
            comm = mpi if mpi.size > 1 else comm
        _WORLD.append(comm)
    return _WORLD[0]


@contextmanager
def one_voice(comm: Communicator, same_on_every_rank: tuple = ()):
    """Around a command that every rank runs: the ranks other than 0 print nothing (their
    stdout and stderr go to os.devnull). An error raised through ``from_root``, or of a kind in
    ``same_on_every_rank`` (bad input: every rank reads the same), propagates as in one process;
    any other (a failed write, a file missing on one machine) is printed with its rank and
    aborts every rank, which would otherwise wait forever for the one that stopped."""
    if comm.size == 1:
        yield
        return
    if not comm.is_root:
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    try:
        yield
    except Exception as e:
        if getattr(e, "on_every_rank", False) or isinstance(e, same_on_every_rank):
            raise
        print(f"minis2s: error on rank {comm.rank} of {comm.size}: {type(e).__name__}: {e}", file=sys.__stderr__,
              flush=True)
        comm.abort(1)


def allreduce_gradients(comm: Communicator, params, scalars) -> list[float]:
    """Sum every parameter's ``.grad`` (None counts as zeros) and ``scalars`` over the ranks in
    ONE Allreduce of one flat buffer of the parameters' dtype; the summed gradients become the
    ``.grad``s (views of the buffer) and the summed scalars are returned."""
    xp = array_module(params[0].data)
    sizes = [p.data.size for p in params]
    flat = xp.empty(sum(sizes) + len(scalars), dtype=params[0].data.dtype)  # (P + k,)
    offsets = np.cumsum([0, *sizes])
    for p, lo, hi in zip(params, offsets[:-1], offsets[1:]):
        flat[lo:hi] = 0 if p.grad is None else p.grad.ravel()
    flat[offsets[-1]:] = xp.asarray(scalars, dtype=flat.dtype)
    comm.allreduce_sum(flat)
    for p, lo, hi in zip(params, offsets[:-1], offsets[1:]):
        p.grad = flat[lo:hi].reshape(p.data.shape)
    return [float(v) for v in flat[offsets[-1]:]]


def broadcast_parameters(comm: Communicator, params) -> None:
    """Rank 0's weights on every rank (one Bcast of one flat buffer)."""
    if comm.size == 1:
        return
    xp = array_module(params[0].data)
    flat = comm.broadcast_(xp.concatenate([p.data.ravel() for p in params]))
    offsets = np.cumsum([0, *(p.data.size for p in params)])
    for p, lo, hi in zip(params, offsets[:-1], offsets[1:]):
        p.data[...] = flat[lo:hi].reshape(p.data.shape)


class SkippedRunFolder(RunFolder):
    """What ranks other than 0 hold in place of the run folder: they compute everything rank 0
    computes, and skip every read and write of the files (rank 0's alone)."""

    def save_checkpoint(self, model, optimizer, state: dict, keep: int) -> str:
        return ""

    def save_model(self, name: str, model, meta: dict, files: dict | None = None) -> str:
        return ""

    def write_metrics(self, history: list[dict]) -> None:
        pass

    def prune_epochs(self, keep: int) -> None:
        pass

    def record_change(self, change: dict) -> None:
        pass

    def index(self) -> list[dict]:
        return []

    def model_step(self, name: str) -> int | None:
        return None
