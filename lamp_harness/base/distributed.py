"""Data-parallel runs on ``torch.distributed``: which rank this process is, the few collectives the
runner needs, how a cell's batches are dealt to ranks, and ``--nproc-per-node`` (which starts the
workers through torch's own elastic launcher, ``torch.distributed.run``).

A process is one rank of a job when its environment says so, whoever launched it:

- ``torchrun`` / ``python -m torch.distributed.run`` and ``accelerate launch`` set ``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
- Slurm's ``srun`` sets ``SLURM_PROCID``, ``SLURM_NTASKS`` and ``SLURM_LOCALID`` (the batch
  script exports ``MASTER_ADDR`` / ``MASTER_PORT``; see docs/scale-out.md).

Without any of them the world is one process and nothing here imports torch. Every collective has
a timeout (``LAMP_DIST_TIMEOUT`` seconds, default 1800), so a rank that dies or hangs ends the job
instead of blocking it forever.

Failures: a rank that raises ends the job with one line naming the rank and the error. Under
``lamp ... --nproc-per-node N`` the worker records its error in the file the elastic agent gives it
(``TORCHELASTIC_ERROR_FILE``) and the launching process prints that one line; ranks that only lost
their peer (a closed connection, a timed-out collective) are marked secondary, so the line names
the rank that failed first, not a victim.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from lamp_harness.base.errors import LampError, lamp_error

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 1800.0
LAUNCHED_BY_LAMP = "LAMP_LAUNCHED_WORKER"
"""Set in the workers that ``--nproc-per-node`` starts: their launcher prints the failure line."""


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` of ``size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """Whether this is one rank of several."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that reads shared data, writes shared caches, merges and reports."""
        return self.rank == 0


def detect_world(env: dict[str, str] | None = None) -> World:
    """The world the environment describes (torchrun / accelerate variables first, then Slurm).

    The variables are checked here, before any rendezvous: a rank outside the world (``RANK=5
    WORLD_SIZE=2``) or a value that is not a whole number is one line, not a silent wait."""
    env = dict(os.environ if env is None else env)

    def number(name: str, minimum: int) -> int | None:
        value = env.get(name, "").strip()
        if not value:
            return None
        try:
            found = int(value)
        except ValueError:
            found = None
        if found is None or found < minimum:
            raise lamp_error(
                f"{name}={value!r} is not a whole number >= {minimum}",
                where="environment",
                fix=f"Unset {name} or set it to a whole number >= {minimum} (the launcher "
                "sets it: torchrun, accelerate launch, srun).",
            )
        return found

    def world(rank_name: str, size_name: str, local_name: str, local_size_name: str | None) -> World:
        size = number(size_name, 1)
        assert size is not None
        rank, local = number(rank_name, 0), number(local_name, 0)
        if rank is None and size > 1:
            raise lamp_error(
                f"{size_name}={size} but {rank_name} is not set",
                where="environment",
                fix=f"Set {rank_name} (0 to {size - 1}) for each process, or unset {size_name}.",
            )
        if rank is not None and rank >= size:
            raise lamp_error(
                f"{rank_name}={rank} is outside a world of {size_name}={size} processes",
                where="environment",
                fix=f"Give each process a {rank_name} from 0 to {size - 1}.",
            )
        local_size = (number(local_size_name, 1) if local_size_name else None) or size
        if local is not None and local >= local_size:
            raise lamp_error(
                f"{local_name}={local} is outside the {local_size} process(es) of this node",
                where="environment",
                fix=f"Give each process on a node a {local_name} from 0 to {local_size - 1}.",
            )
        return World(rank or 0, size, local or 0)

    if env.get("WORLD_SIZE", "").strip():
        return world("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
    if env.get("SLURM_NTASKS", "").strip() and "SLURM_PROCID" in env:
        found = world("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", None)
        return found if found.distributed else World()
    return World()


_current = World()


def current() -> World:
    """The world :func:`init` joined (one process until then)."""
    return _current


MAX_TIMEOUT_S = 7 * 24 * 3600.0
"""The longest ``LAMP_DIST_TIMEOUT`` accepted (a week; torch's timers overflow on larger values)."""


def timeout_s() -> float:
    """Seconds a collective may wait (``LAMP_DIST_TIMEOUT``, default 1800): a number of seconds
    above 0 and at most a week, else one line."""
    raw = os.environ.get("LAMP_DIST_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_TIMEOUT_S:  # also false for nan
        raise lamp_error(
            f"LAMP_DIST_TIMEOUT={raw!r} is not a number of seconds above 0 and at most {MAX_TIMEOUT_S:.0f} (a week)",
            where="environment",
            fix="Set e.g. LAMP_DIST_TIMEOUT=600, or unset it for the default of 1800.",
        )
    return value


def is_rank_process(env: Mapping[str, str] | None = None) -> bool:
    """Whether a launcher (torchrun, accelerate, ``--nproc-per-node``, srun) started this process
    as one rank of a job (checked without validating anything)."""
    env = os.environ if env is None else env
    return bool(env.get("WORLD_SIZE", "").strip() or env.get("SLURM_PROCID", "").strip())


def check_environment() -> World:
    """Validate every variable a data-parallel job reads (the world, ``LAMP_DIST_TIMEOUT``) before
    any process is started or any rendezvous is joined; returns the world."""
    world = detect_world()
    timeout_s()
    return world


PR_SET_PDEATHSIG = 1
LAUNCHER_PID = "LAMP_LAUNCHER_PID"
"""Set by ``--nproc-per-node`` in its workers: the launcher's process id."""


def die_with_launcher() -> None:
    """Make this rank die with the process that started it (Linux: a parent-death signal).

    torch's launcher starts each worker in a session of its own, so killing the launcher's
    process group (``kill -9 -PGID``, a terminal closing) would leave the ranks running as
    orphans, writing shards for a job nobody waits for. The kernel instead sends this process
    SIGKILL when its parent (torchrun's or ``lamp --nproc-per-node``'s agent, Slurm's
    ``slurmstepd``) dies. If the launcher died before this call, the rank exits at once.
    A no-op where ``prctl`` does not exist (macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):  # pragma: no cover  (no libc prctl)
        return
    launcher = os.environ.pop(LAUNCHER_PID, "")  # this rank's own: not inherited by its children
    if launcher.isdigit() and os.getppid() != int(launcher):
        os._exit(1)  # the launcher is already gone: nobody waits for this rank


def init() -> World:
    """Join the process group the environment describes (gloo on CPU, NCCL on GPUs); returns the
    world. A no-op for one process."""
    global _current
    world = detect_world()
    if world.distributed:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            timeout = timedelta(seconds=timeout_s())
            if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
                raise lamp_error(
                    f"rank {world.rank} of {world.size} has no rendezvous address",
                    where="environment",
                    fix="Export MASTER_ADDR and MASTER_PORT (torchrun sets them; under "
                    "srun set them in the batch script, see docs/scale-out.md).",
                )
            os.environ.setdefault("RANK", str(world.rank))
            os.environ.setdefault("WORLD_SIZE", str(world.size))
            os.environ.setdefault("LOCAL_RANK", str(world.local_rank))
            cuda = torch.cuda.is_available()
            if cuda:
                torch.cuda.set_device(world.local_rank)
            dist.init_process_group("nccl" if cuda else "gloo", rank=world.rank, world_size=world.size, timeout=timeout)
    _current = world
    return world


def shutdown(wait: bool = False) -> None:
    """Leave the process group (if one was joined). ``wait`` (a rank whose work ended well): first
    wait for every rank to get here, so that no rank tears the group down (rank 0 also hosts its
    store) while another still uses it; a rank whose peers vanished under it could abort
    ("terminate called without an active exception", SIGABRT) after finishing its work."""
    global _current
    if _current.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            if wait:
                try:
                    dist.barrier()
                except Exception:  # noqa: BLE001  a peer that failed: its own line says why
                    pass
            dist.destroy_process_group()
    _current = World()


def device_for(requested: str, world: World | None = None) -> str:
    """The device of this rank: ``cuda:LOCAL_RANK`` when ``requested`` is auto or cuda and GPUs
    exist, else ``requested`` unchanged (one process keeps today's choice)."""
    world = world or _current
    if not world.distributed or requested not in ("auto", "cuda"):
        return requested
    import torch

    return f"cuda:{world.local_rank}" if torch.cuda.is_available() else ("cpu" if requested == "auto" else requested)


# ---------------------------------------------------------------------------------------------
# Collectives (all of them no-ops for one process)
# ---------------------------------------------------------------------------------------------


class PeerFailed(LampError):
    """Raised on the ranks that wait for work rank 0 failed to do (rank 0 reports the cause)."""


def barrier() -> None:
    """Wait until every rank gets here."""
    if _current.distributed:
        import torch.distributed as dist

        dist.barrier()


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (any picklable object)."""
    if not _current.distributed:
        return value
    import torch.distributed as dist

    box = [value if _current.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any) -> list[Any] | None:
    """Every rank's ``value`` in rank order on rank 0 (``None`` on the others)."""
    if not _current.distributed:
        return [value]
    import torch.distributed as dist

    out: list[Any] | None = [None] * _current.size if _current.is_main else None
    dist.gather_object(value, out, dst=0)
    return out


def on_main(work: Callable[[], T], what: str) -> T:
    """Rank 0 does ``work`` (reads data, ranks profiles, fills caches) while the others wait; every
    rank gets its result. If rank 0 fails, the others stop with :class:`PeerFailed`."""
    if not _current.distributed:
        return work()
    result: tuple[bool, Any] = (False, None)
    if _current.is_main:
        try:
            result = (True, work())
        except BaseException:
            broadcast((False, None))
            raise
    ok, value = broadcast(result)
    if not ok:
        raise PeerFailed(f"rank 0 failed while {what}")
    return value


def main_first(work: Callable[[], T], what: str) -> T:
    """Rank 0 runs ``work`` first (filling the caches it writes), then the other ranks run it
    (reading those caches, writing nothing). Every rank gets its own result."""
    if not _current.distributed:
        return work()
    if _current.is_main:
        try:
            value = work()
        except BaseException:
            broadcast(False)
            raise
        broadcast(True)
        return value
    if not broadcast(None):
        raise PeerFailed(f"rank 0 failed while {what}")
    return work()


# ---------------------------------------------------------------------------------------------
# Sharding
# ---------------------------------------------------------------------------------------------


def deal(costs: Sequence[float], ranks: int) -> list[list[int]]:
    """Indices of ``costs`` dealt to ``ranks`` so that their totals are balanced: the costliest
    first, each to the least loaded rank (ties: the lower rank). Deterministic; each rank's
    indices come back in ascending order."""
    loads = [0.0] * ranks
    shares: list[list[int]] = [[] for _ in range(ranks)]
    for index in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        rank = min(range(ranks), key=lambda r: (loads[r], r))
        loads[rank] += costs[index]
        shares[rank].append(index)
    return [sorted(share) for share in shares]


# ---------------------------------------------------------------------------------------------
# Launching and failures
# ---------------------------------------------------------------------------------------------


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``lamp ARGV`` in ``nproc`` worker processes on this node through torch's elastic
    launcher (a standalone rendezvous on this host); returns the exit code. A failed worker is
    one line on stderr naming its rank and error."""
    import logging

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    # The agent's own messages are for torchrun users; ``lamp`` prints one line. Its modules set
    # their loggers' levels themselves, so each one is quietened.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launcher")):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    from torch.distributed.elastic.multiprocessing.api import SignalException

    check_environment()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ[LAUNCHED_BY_LAMP] = "1"
    os.environ[LAUNCHER_PID] = str(os.getpid())
    args = get_args_parser().parse_args(
        ["--nproc-per-node", str(nproc), "--standalone", "--monitor-interval", "0.1", "--module", "lamp_harness", *argv]
    )
    try:
        run(args)
    except ChildFailedError as exc:
        print(f"Error: {failure_line(exc.failures)}", file=sys.stderr)
        return 2
    except (SignalException, KeyboardInterrupt):
        # Ctrl-C or SIGTERM (SIGHUP, SIGQUIT): the agent has already stopped every worker with the
        # same signal (SIGKILL after a grace period); the workers print nothing, and the exit code
        # 130 makes the command print the one line (``INTERRUPTED``).
        return 130
    return 0


def failure_line(failures: dict[int, Any]) -> str:
    """The one line for a failed job: the rank that failed first by itself, not a victim (a rank
    that lost its peer, or one the launcher stopped with SIGTERM after another failed)."""
    records = []
    for rank, failure in failures.items():
        data = getattr(failure, "error_file_data", None) or {}
        message = data.get("message") if isinstance(data, dict) else None
        info = message.get("extraInfo", {}) if isinstance(message, dict) else {}
        text = message.get("message") if isinstance(message, dict) else None
        code = getattr(failure, "exitcode", None)
        if text:
            level = 2 if info.get("lamp_secondary") else 0
        elif isinstance(code, int) and code < 0:
            level = 3 if -code == signal.SIGTERM else 1
            text = f"killed by signal {-code} ({signal.Signals(-code).name})"
        else:
            level, text = 1, f"exited with code {code}"
        when = float(info.get("lamp_time", getattr(failure, "timestamp", 0)))
        records.append((level, when, rank, text))
    _, _, rank, text = min(records)
    return text if text.startswith(f"rank {rank}") else f"rank {rank}: {text}"


def is_peer_failure(exc: BaseException) -> bool:
    """Whether ``exc`` only says that another rank went away (a collective broke or timed out)."""
    if isinstance(exc, PeerFailed):
        return True
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return False
    kinds = tuple(
        k
        for k in (
            getattr(dist, "DistError", None),
            getattr(dist, "DistBackendError", None),
            getattr(dist, "DistNetworkError", None),
        )
        if k is not None
    )
    text = str(exc)
    return isinstance(exc, kinds) or (
        isinstance(exc, RuntimeError)
        and any(
            s in text
            for s in ("Connection closed by peer", "Connection reset by peer", "Timed out", "timed out", "Broken pipe")
        )
    )


def report_failure(exc: BaseException) -> str:
    """The one line for ``exc`` on this rank; under ``--nproc-per-node`` it is also recorded for
    the launcher (which prints it) and ``""`` is returned so that the worker prints nothing."""
    detail = str(exc) if isinstance(exc, LampError) else f"{type(exc).__name__}: {exc}"
    line = f"rank {_current.rank}: {' '.join(detail.split())}"
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path and os.environ.get(LAUNCHED_BY_LAMP):
        import traceback

        record = {
            "message": {
                "message": line,
                "extraInfo": {
                    "py_callstack": "".join(traceback.format_exception(exc)),
                    "timestamp": str(int(time.time())),
                    "lamp_time": time.time(),
                    "lamp_secondary": is_peer_failure(exc),
                },
            }
        }
        try:
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(record, handle)
            return ""
        except OSError:
            pass
    return line
