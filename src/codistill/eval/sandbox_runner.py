"""Runs one untrusted program inside a sandbox subprocess started by `codistill.eval.sandbox`.

Usage (by the harness only): `python -s -B sandbox_runner.py PROGRAM_FILE MARKER_FD`, with the current directory
set to the run's temporary directory and a per-run random token on stdin. Under namespaces the fork server
(`sandbox_server.py`) calls `execute` in each forked child instead.

The runner reads the token, disables destructive and escaping calls (`guard`), executes the program as
`__main__`, and only when the program's last statement has run writes the token to MARKER_FD, a pipe back to
the harness. A program that stops early, whether by an exception, `sys.exit(0)`, `os._exit(0)`, `quit()` or a
signal, never writes the token, so the harness scores it as failed even when its exit status is 0.

This is a guard against model mistakes and the usual hostile patterns, not a security boundary: Python code
can undo any of it (see the notes in `codistill.eval.sandbox`). This file imports only the standard library
and never imports `codistill`, so it runs the same under any interpreter.
"""

import builtins
import faulthandler
import io
import os
import posix
import sys

# Modules the program may not import: process creation, foreign-function calls, resource limits.
BLOCKED_MODULES = (
    "ctypes",
    "_ctypes",
    "cffi",
    "_cffi_backend",
    "multiprocessing",
    "_multiprocessing",
    "_posixshmem",
    "resource",
    "psutil",
    "pty",
    "ipdb",
    "joblib",
    "tkinter",
)

# Patched modules that may not be imported afresh.
NO_REIMPORT = ("posix", "_posixsubprocess", "_io", "_signal")

# Calls that start, replace or signal processes, change identity or permissions, or change the environment.
DENIED_OS_CALLS = (
    "system",
    "popen",
    "fork",
    "forkpty",
    "kill",
    "killpg",
    "pidfd_open",
    "putenv",
    "unsetenv",
    "removedirs",
    "renames",
    "chmod",
    "fchmod",
    "lchmod",
    "chown",
    "fchown",
    "lchown",
    "chroot",
    "chflags",
    "lchflags",
    "setuid",
    "seteuid",
    "setreuid",
    "setresuid",
    "setgid",
    "setegid",
    "setregid",
    "setresgid",
    "setgroups",
    "setsid",
    "setpgid",
    "setpgrp",
    "posix_spawn",
    "posix_spawnp",
    "spawnl",
    "spawnle",
    "spawnlp",
    "spawnlpe",
    "spawnv",
    "spawnve",
    "spawnvp",
    "spawnvpe",
    "execl",
    "execle",
    "execlp",
    "execlpe",
    "execv",
    "execve",
    "execvp",
    "execvpe",
)

_WRITE_MODE_CHARS = frozenset("wax+")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _denied(name: str):
    def denied(*args, **kwargs):
        raise PermissionError(f"{name} is disabled in the sandbox")

    denied.__name__ = denied.__qualname__ = name.rsplit(".", 1)[-1]
    return denied


class _PatchingLoader:
    """Wraps a module's loader to patch the module right after it is executed."""

    def __init__(self, loader, patch):
        self._loader, self._patch = loader, patch

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._patch(module)

    def __getattr__(self, name):  # get_source, get_filename, ... for tracebacks and inspect
        return getattr(self._loader, name)


class _ImportGuard:
    """A meta path finder, first in line: refuses the blocked names and patches some modules when imported.

    Patching `shutil` and `subprocess` on import rather than importing them up front saves every program about
    15 ms of interpreter start-up.
    """

    def __init__(self, blocked: frozenset, patches: dict):
        self.blocked, self.patches = blocked, patches

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.blocked:
            raise ImportError(f"import of {name} is disabled in the sandbox", name=name)
        patch = self.patches.get(name)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _PatchingLoader(spec.loader, patch)
                return spec
        return None


def guard(workdir: str) -> None:
    """Disable destructive and escaping calls; writes stay inside `workdir` (an absolute, resolved path)."""
    realpath, dirname, basename, fspath = os.path.realpath, os.path.dirname, os.path.basename, os.fspath
    allowed_files = {workdir, "/dev/null"}

    def inside(path, *, follow_last: bool = True) -> bool:
        """Whether `path` lies in the work directory (a file descriptor is always fine: opening it was checked)."""
        if isinstance(path, int):
            return True
        path = os.fsdecode(fspath(path))
        if follow_last:
            real = realpath(path)
        else:  # the entry itself (unlink, rename): resolve its directory, not a symlink it may be
            real = os.path.join(realpath(dirname(path) or "."), basename(path))
        return real in allowed_files or real.startswith(workdir + os.sep)

    def check(name: str, path, *, follow_last: bool = True, dir_fd=None) -> None:
        if dir_fd is not None or not inside(path, follow_last=follow_last):
            raise PermissionError(f"{name}: {path!r} is outside the sandbox's directory")

    original_open, original_os_open = builtins.open, os.open

    def open(file, mode="r", *args, **kwargs):  # noqa: A001 - replaces the builtin on purpose
        if isinstance(mode, str) and _WRITE_MODE_CHARS.intersection(mode):
            check("open", file)
        return original_open(file, mode, *args, **kwargs)

    def os_open(path, flags, mode=0o777, *, dir_fd=None):
        if flags & _WRITE_FLAGS:
            check("os.open", path, dir_fd=dir_fd)
        return original_os_open(path, flags, mode, dir_fd=dir_fd)

    def path_checked(name: str, original, nargs: int = 1, follow_last: bool = False):
        """`original` whose first `nargs` path arguments must lie in the work directory."""

        def call(*args, **kwargs):
            for path in args[:nargs]:
                check(f"os.{name}", path, follow_last=follow_last)
            for key in ("dir_fd", "src_dir_fd", "dst_dir_fd"):
                if kwargs.get(key) is not None:
                    raise PermissionError(f"os.{name} with {key} is disabled in the sandbox")
            return original(*args, **kwargs)

        call.__name__ = call.__qualname__ = name
        return call

    open.__name__ = open.__qualname__ = "open"
    os_open.__name__ = os_open.__qualname__ = "open"
    builtins.open = io.open = open
    try:
        import _io

        _io.open = open
    except ImportError:  # pragma: no cover - CPython always has _io
        pass

    replacements = {name: _denied(f"os.{name}") for name in DENIED_OS_CALLS}
    replacements["open"] = os_open
    for name, nargs, follow_last in (
        ("remove", 1, False),
        ("unlink", 1, False),
        ("rmdir", 1, False),
        ("rename", 2, False),
        ("replace", 2, False),
        ("truncate", 1, True),
        ("mkdir", 1, False),
        ("mkfifo", 1, False),
        ("mknod", 1, False),
        ("utime", 1, True),
        ("link", 2, False),
    ):
        if hasattr(os, name):
            replacements[name] = path_checked(name, getattr(os, name), nargs, follow_last)
    if hasattr(os, "symlink"):  # the link's target may point anywhere; where it is created must be inside
        original_symlink = os.symlink

        def symlink(src, dst, *args, **kwargs):
            check("os.symlink", dst, follow_last=False)
            if kwargs.get("dir_fd") is not None:
                raise PermissionError("os.symlink with dir_fd is disabled in the sandbox")
            return original_symlink(src, dst, *args, **kwargs)

        replacements["symlink"] = symlink
    # `os` re-exports `posix`; patch both so `import posix; posix.fork()` is refused too.
    for module in (os, posix):
        for name, replacement in replacements.items():
            if hasattr(module, name):
                setattr(module, name, replacement)

    def rmtree(path, ignore_errors=False, *args, **kwargs):
        """shutil.rmtree inside the work directory only, through the checked os.unlink and os.rmdir."""
        check("shutil.rmtree", path, follow_last=False)
        try:
            if os.path.islink(path):
                raise OSError("Cannot call rmtree on a symbolic link")
            for root, dirs, files in os.walk(path, topdown=False):
                for name in files:
                    os.unlink(os.path.join(root, name))
                for name in dirs:
                    entry = os.path.join(root, name)
                    (os.unlink if os.path.islink(entry) else os.rmdir)(entry)
            os.rmdir(path)
        except OSError:
            if not ignore_errors:
                raise

    def patch_shutil(shutil) -> None:
        original_move = shutil.move

        def move(src, dst, *args, **kwargs):
            check("shutil.move", src, follow_last=False)
            check("shutil.move", dst, follow_last=False)
            return original_move(src, dst, *args, **kwargs)

        shutil.rmtree, shutil.move, shutil.chown = rmtree, move, _denied("shutil.chown")

    def patch_subprocess(subprocess) -> None:  # run, call, check_call, check_output, getoutput all use Popen
        subprocess.Popen = _denied("subprocess.Popen")

    def patch_signal(signal) -> None:
        if hasattr(signal, "pidfd_send_signal"):
            signal.pidfd_send_signal = _denied("signal.pidfd_send_signal")

    # Process creation below `subprocess` and `os` (built-in modules, cheap to import).
    import _posixsubprocess
    import _signal

    _posixsubprocess.fork_exec = _denied("_posixsubprocess.fork_exec")
    patch_signal(_signal)  # `signal` copies it on import
    patches = {"shutil": patch_shutil, "subprocess": patch_subprocess, "signal": patch_signal}
    for name, patch in patches.items():
        if name in sys.modules:  # already imported (by site, say): patch now
            patch(sys.modules[name])
    for name in BLOCKED_MODULES:
        sys.modules[name] = None  # `import name` now raises ImportError
    # A fresh copy of a patched built-in module (`del sys.modules["posix"]; import posix`) would bring the
    # originals back, and deleting a blocked name from sys.modules would unblock it: refuse both imports.
    sys.meta_path.insert(0, _ImportGuard(frozenset(BLOCKED_MODULES + NO_REIMPORT), patches))

    faulthandler.disable()


def _read_token() -> bytes:
    """The per-run token: one line on stdin. stdin is then /dev/null, so `input()` sees end of file."""
    data = b""
    while not data.endswith(b"\n") and len(data) < 256:
        chunk = os.read(0, 256 - len(data))
        if not chunk:
            break
        data += chunk
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    return data.strip()


def drop_own_folder() -> None:
    """Take this file's folder off `sys.path` (what `-P` does on 3.11+): the program imports nothing of ours."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]


def execute(program_file: str, token: bytes, marker_fd: int) -> None:
    """Guard this process, run the program as `__main__` in the current directory, then write `token`."""
    with builtins.open(program_file, "rb") as f:
        source = f.read()
    code = compile(source, "program.py", "exec", dont_inherit=True)
    write, flush_out, flush_err = os.write, sys.stdout.flush, sys.stderr.flush
    guard(os.path.realpath(os.getcwd()))
    del source
    exec(code, {"__name__": "__main__", "__builtins__": builtins})
    # Reached only when the program ran to its end. Flush first: output that cannot be written is a failure.
    flush_out()
    flush_err()
    write(marker_fd, token)


def main() -> None:
    program_file, marker_fd = sys.argv[1], int(sys.argv[2])
    drop_own_folder()
    del sys.argv[1:]
    execute(program_file, _read_token(), marker_fd)


if __name__ == "__main__":
    main()
