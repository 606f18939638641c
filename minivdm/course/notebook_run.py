"""Run one notebook top to bottom in a fresh, limited kernel (nbclient) and say what each cell did.

Every code cell runs even after an earlier one raised (``allow_errors``), so a wrong answer to one part
of an exercise does not hide the grade of the others; the run stops only when the notebook's wall time
is spent or its kernel dies, and the cells after that point are "not run". A cell's error is read from
the kernel's execute reply, never from its outputs, so the output cap (outputs past it are dropped)
cannot hide an error.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic

import nbformat
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

GIB, MIB = 1 << 30, 1 << 20


@dataclass(frozen=True)
class Limits:
    """What one notebook may use. ``memory_bytes`` caps the kernel's address space; 0 leaves it uncapped."""

    wall_time_s: float = 600.0
    memory_bytes: int = 4 * GIB
    output_bytes: int = 10 * MIB
    file_bytes: int = 1 * GIB
    threads: int = 1

    def __post_init__(self):
        if self.wall_time_s <= 0:
            raise ValueError(f"the time limit must be positive, got {self.wall_time_s}")
        for name in ("memory_bytes", "output_bytes", "file_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")

    def key(self) -> str:
        """What can change a grade (not the thread count): a notebook graded under other limits is regraded."""
        return f"{self.wall_time_s:g}|{self.memory_bytes}|{self.output_bytes}|{self.file_bytes}"

    def describe(self) -> str:
        return (f"{self.wall_time_s:g} s, memory {self.memory_bytes / GIB:g} GiB, output {self.output_bytes / MIB:g} MiB, "
                f"files {self.file_bytes / GIB:g} GiB, {self.threads} thread(s)")


@dataclass(frozen=True)
class CellOutcome:
    """What happened to one code cell: ``ok``, ``error`` (with the exception's name and message),
    ``timeout`` (it was running when the notebook's time ran out), ``kernel died`` (while it ran) or
    ``not run`` (the notebook stopped before it)."""

    status: str
    ename: str = ""
    evalue: str = ""


@dataclass
class NotebookRun:
    outcomes: dict[int, CellOutcome]  # by cell index, code cells only
    stopped: str = ""  # "", "timeout", "kernel died" or "kernel did not start: ..."
    stopped_in_cell: int | None = None
    dropped_output_bytes: int = 0
    errors: list[tuple[int, str, str]] = field(default_factory=list)  # (cell index, ename, evalue) of every error


class _GraderKernelSpecs(KernelSpecManager):
    """Hands out one kernel spec: this Python running minivdm.course.grading_kernel with the limits."""

    def __init__(self, limits: Limits, **kwargs):
        super().__init__(**kwargs)
        self.limits = limits

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        argv = [sys.executable, "-m", "minivdm.course.grading_kernel", "--memory-bytes", str(self.limits.memory_bytes),
                "--file-bytes", str(self.limits.file_bytes), "-f", "{connection_file}"]
        return KernelSpec(argv=argv, display_name="minivdm grader", language="python")


class _CappedOutputClient(NotebookClient):
    """nbclient's client, keeping at most ``output_bytes`` of the notebook's stream and display outputs."""

    def __init__(self, nb, output_bytes: int, **kwargs):
        super().__init__(nb, **kwargs)
        self.output_bytes, self.seen_bytes, self.dropped_bytes = output_bytes, 0, 0

    def output(self, outs, msg, display_id, cell_index):
        if msg["msg_type"] in ("stream", "display_data", "execute_result"):
            content = msg["content"]
            size = len(content.get("text", "")) + sum(len(str(value)) for value in content.get("data", {}).values())
            self.seen_bytes += size
            if self.output_bytes and self.seen_bytes > self.output_bytes:
                self.dropped_bytes += size
                return None
        return super().output(outs, msg, display_id, cell_index)


def kernel_environment(workdir: Path, limits: Limits) -> dict[str, str]:
    """The kernel's environment: home and temporary files inside its working copy, CPU only (grades must
    not depend on which machine has a GPU), threads as given, everything offline."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("JPY_", "JUPYTER_"))}
    threads = str(limits.threads)
    env.update(HOME=str(workdir), TMPDIR=str(workdir / "tmp"), IPYTHONDIR=str(workdir / ".ipython"),
               MPLCONFIGDIR=str(workdir / ".matplotlib"), MPLBACKEND="Agg", MINIVDM_DEVICE="cpu", CUDA_VISIBLE_DEVICES="",
               OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONHASHSEED="0", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    return env


async def run_notebook(notebook: nbformat.NotebookNode, workdir: Path, limits: Limits) -> NotebookRun:
    """Execute ``notebook`` (modified in place: outputs are filled in) with ``workdir`` as its folder."""
    workdir = Path(workdir)
    run = NotebookRun(outcomes={index: CellOutcome("not run") for index, cell in enumerate(notebook.cells)
                                if cell.cell_type == "code" and cell.source.strip()})
    started: list[int] = []
    deadline = monotonic() + limits.wall_time_s

    def on_start(cell, cell_index, **_):
        if cell.cell_type == "code" and cell.source.strip():
            started.append(cell_index)

    def on_executed(cell, cell_index, execute_reply, **_):
        content = (execute_reply or {}).get("content", {})
        if content.get("status") == "error":
            ename, evalue = str(content.get("ename", "")), str(content.get("evalue", ""))
            run.outcomes[cell_index] = CellOutcome("error", ename, evalue)
            run.errors.append((cell_index, ename, evalue))
        else:
            run.outcomes[cell_index] = CellOutcome("ok")

    # Unix sockets in the working copy rather than TCP ports: no port is opened, and nothing leaves the machine
    kernel_manager = AsyncKernelManager(kernel_name="minivdm-grader", kernel_spec_manager=_GraderKernelSpecs(limits),
                                        transport="ipc", ip=str(workdir / "kernel"))
    client = _CappedOutputClient(
        notebook, limits.output_bytes, km=kernel_manager, allow_errors=True, shutdown_kernel="immediate",
        startup_timeout=120, timeout_func=lambda cell: max(1, math.ceil(deadline - monotonic())),
        on_cell_start=on_start, on_cell_executed=on_executed)
    stop = None
    try:
        await client.async_execute(cleanup_kc=True, cwd=str(workdir), env=kernel_environment(workdir, limits))
    except CellTimeoutError:
        stop = "timeout"
    except DeadKernelError:
        stop = "kernel died"
    except (RuntimeError, OSError, asyncio.TimeoutError) as error:  # the kernel did not start or answer
        stop = f"kernel did not start: {type(error).__name__}: {error}"
    finally:
        if kernel_manager.has_kernel:  # a kernel left running after an error: kill it (and its process group)
            await kernel_manager.shutdown_kernel(now=True)
    if stop is not None:
        run.stopped = stop
        unfinished = [index for index in started if run.outcomes[index].status == "not run"]
        if unfinished and not stop.startswith("kernel did not start"):
            run.stopped_in_cell = unfinished[-1]
            run.outcomes[run.stopped_in_cell] = CellOutcome(stop)
    run.dropped_output_bytes = client.dropped_bytes
    return run
