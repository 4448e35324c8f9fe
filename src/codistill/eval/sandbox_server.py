"""A fork server inside the namespace sandbox: one per harness worker, started by `codistill.eval.namespaces`.

Usage (by the harness only): `bwrap ... -- python -s -B sandbox_server.py`, as PID 1 of fresh user, PID,
network, IPC, UTS and mount namespaces, in a private tmpfs (its current directory) that is the only writable
place. Stdlib only, like `sandbox_runner.py`, which is bound next to it.

Why a server: starting bwrap and a fresh interpreter per program costs about 25 ms; forking this warm
interpreter costs about 1 ms. It writes `ready`, then for each request on stdin (a JSON line, then the
program's bytes) it forks a child that sets the resource limits, takes the run's files as stdin (/dev/null),
stdout and stderr and runs the program through `sandbox_runner.execute`. It waits at most the timeout, kills
every other process in the namespace (`kill(-1)` reaches them whatever session or group they made), reaps
them, empties its directory and answers one JSON line: exit status, the marker the child wrote, whether it
timed out, seconds, the end of stderr, and whether the directory is clean. The harness judges the verdict.
When the directory cannot be emptied it exits after answering, and the harness starts a fresh namespace.
It exits at the end of stdin.

As PID 1 it cannot be signalled from inside its namespace, and it makes itself non-dumpable, so a program
cannot trace it or reach its memory or file descriptors through /proc.
"""

import atexit
import ctypes
import json
import os
import resource
import select
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sandbox_runner  # noqa: E402 - the sibling file, bound next to this one

sandbox_runner.drop_own_folder()

PRELOAD = ("typing", "math")  # imported once here rather than by every program: most HumanEval programs use them
_PR_SET_DUMPABLE = 4
_MARKER_FD = 3


def _reply(answer: dict) -> None:
    data = (json.dumps(answer) + "\n").encode()
    while data:
        data = data[os.write(1, data) :]


def _enter(limits: list, stdout: int, stderr: int, marker: int) -> None:
    """In the forked child: the run's limits and file descriptors, nothing of the server's."""
    for which, values in limits:
        resource.setrlimit(which, tuple(values))
    devnull = os.open(os.devnull, os.O_RDONLY)
    for fd, target in ((devnull, 0), (stdout, 1), (stderr, 2), (marker, _MARKER_FD)):
        os.dup2(fd, target)
    os.closerange(_MARKER_FD + 1, os.sysconf("SC_OPEN_MAX"))


def _run_and_exit(token: str) -> None:
    """In the forked child: run the program, then end as the interpreter would (traceback and status 1 on an
    exception, SystemExit's status, atexit functions, flushed output) but without its teardown, which after a
    fork touches, and so copies, every page of the server's heap (about 10 ms a program)."""
    try:
        sandbox_runner.execute("program.py", token.encode(), _MARKER_FD)
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - the program's own exception: reported as the interpreter would
        sys.excepthook(*sys.exc_info())
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or unwritable: nothing more to report
            pass
    os._exit(status & 0xFF)


def _wait(pid: int, timeout: float) -> int | None:
    """The child's exit status (negative: killed by that signal), or None when it ran past `timeout` seconds."""
    pidfd = os.pidfd_open(pid)
    try:
        if not select.select([pidfd], [], [], timeout)[0]:
            return None
    finally:
        os.close(pidfd)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _kill_all() -> None:
    """Kill and reap every other process in the namespace: orphans, new sessions and groups all end up ours."""
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _empty(workdir: str) -> bool:
    """Delete everything the run left in `workdir`; False when something could not be deleted."""
    try:
        for entry in os.scandir(workdir):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
        return not os.listdir(workdir)
    except (OSError, RecursionError):  # a directory it made unreadable, a tree deeper than rmtree recurses
        return False


def serve() -> None:
    """Answer requests until stdin ends, or until a run left what it could not delete."""
    workdir = os.getcwd()
    requests = sys.stdin.buffer
    _reply({"ready": True})
    while True:
        line = requests.readline()
        if not line:
            return
        request = json.loads(line)
        with open("program.py", "wb") as f:
            f.write(requests.read(request["size"]))
        stdout = os.open("stdout.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        stderr = os.open("stderr.txt", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        marker_read, marker_write = os.pipe()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _enter(request["limits"], stdout, stderr, marker_write)
            _run_and_exit(request["token"])
        os.close(marker_write)
        os.close(stdout)
        returncode = _wait(pid, request["timeout"])
        seconds = time.monotonic() - start
        _kill_all()
        end = os.lseek(stderr, 0, os.SEEK_END)
        tail = os.pread(stderr, request["tail"], max(0, end - request["tail"]))
        answer = {
            "returncode": returncode,
            "marker": os.read(marker_read, 256).decode("latin-1"),
            "seconds": seconds,
            "stderr": tail.decode("latin-1"),
        }
        os.close(marker_read)
        os.close(stderr)
        answer["clean"] = _empty(workdir)
        _reply(answer)
        if not answer["clean"]:
            return


def main() -> None:
    ctypes.CDLL(None).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    for name in PRELOAD:
        __import__(name)
    serve()


if __name__ == "__main__":
    main()
