"""Run under ``mpiexec -n N`` by tests/test_mpi.py: the collectives of MPIComm, and the NCCL path
as far as it can run without a GPU (a fake ``cupy`` and a fake ``nccl`` module). Prints "ok"
on rank 0 when every check passed on every rank; any failure raises (and mpiexec fails)."""
import os
import sys
import types

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from minis2s.training.distributed import MPIComm, NcclReducer, share_unique_id, world

comm = world()
assert isinstance(comm, MPIComm) and comm.size == int(os.environ["PMI_SIZE"]), (type(comm), comm.size)
r, n = comm.rank, comm.size

# The fused sum and the broadcast, in place.
flat = np.arange(5, dtype=np.float64) + r
assert comm.allreduce_sum(flat) is flat and np.array_equal(flat, n * np.arange(5) + n * (n - 1) / 2), flat
root = np.full(3, float(r))
assert np.array_equal(comm.broadcast_(root), np.zeros(3)), root

# map_batches: item i on rank i % size, every result on every rank, in order.
calls = []
out = comm.map_batches(lambda x: (calls.append(x), x * x)[1], list(range(7)))
assert out == [x * x for x in range(7)] and calls == list(range(r, 7, n)), (out, calls)

# from_root: rank 0's result everywhere; its error raised on every rank.
assert comm.from_root(lambda: f"made by rank {comm.rank}") == "made by rank 0"
try:
    comm.from_root(lambda: int("not a number"))
    raise AssertionError("from_root did not raise")
except ValueError as e:
    assert e.on_every_rank and "not a number" in str(e)

# The NCCL unique id: rank 0's bytes on every rank (a fake id; CuPy >= 14 gives bytes).
made = []
uid = share_unique_id(comm, lambda: made.append(1) or b"fake-nccl-id-%d" % comm.rank)
assert uid == b"fake-nccl-id-0" and len(made) == (1 if r == 0 else 0), (uid, made)


# NCCL is chosen for CuPy arrays only: a fake cupy array goes to a fake NCCL communicator built
# from rank 0's id; NumPy arrays above went through MPI.
class FakeNcclCommunicator:
    def __init__(self, size, uid, rank):
        self.made_with, self.calls = (size, uid, rank), []

    def allReduce(self, send, recv, count, dtype, op, stream):
        self.calls.append(("allReduce", send, recv, count, dtype, op, stream))

    def bcast(self, buff, count, dtype, root, stream):
        self.calls.append(("bcast", buff, count, dtype, root, stream))


fake_nccl = types.SimpleNamespace(NcclCommunicator=FakeNcclCommunicator, get_unique_id=lambda: b"id-of-rank-0",
                                  NCCL_FLOAT32=7, NCCL_FLOAT64=8, NCCL_SUM=0)
fake_cupy = types.ModuleType("cupy")
fake_cupy.cuda = types.SimpleNamespace(get_current_stream=lambda: types.SimpleNamespace(ptr=1234))
sys.modules["cupy"] = fake_cupy
FakeGpuArray = type("ndarray", (), {"__module__": "cupy._core.core", "size": 6, "dtype": np.dtype(np.float32),
                                    "data": types.SimpleNamespace(ptr=99)})
comm._nccl = NcclReducer(comm, nccl=fake_nccl)  # what comm.nccl() makes at the first CuPy buffer
gpu = FakeGpuArray()
assert comm.allreduce_sum(gpu) is gpu and comm.broadcast_(gpu) is gpu
nc = comm._nccl.comm
assert nc.made_with == (n, b"id-of-rank-0", r), nc.made_with
assert nc.calls == [("allReduce", 99, 99, 6, 7, 0, 1234), ("bcast", 99, 6, 7, 0, 1234)], nc.calls

ok = comm.allgather(True)
if r == 0:
    print("ok" if all(ok) else "failed")
