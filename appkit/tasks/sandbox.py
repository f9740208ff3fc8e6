"""Run provided tests against generated code in a subprocess, with a time limit and no network.

The code is written to ``solution.py`` in a fresh temporary folder next to the tests; the child
Python gets a ``sitecustomize`` that makes every socket connection fail, runs with ``-s`` (no user
site) in its own session, and is killed with its whole process group when the time runs out. This
keeps honest mistakes (an infinite loop, a stray download) contained; it is not a security boundary
against hostile code.

Example:
    >>> from appkit.tasks.sandbox import run_tests
    >>> run_tests("def add(a, b):\\n    return a + b\\n",
    ...           "from solution import add\\nassert add(2, 3) == 5\\n").passed
    True
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

_NO_NETWORK = '''\
import socket as _socket


def _blocked(*args, **kwargs):
    raise OSError("network access is disabled while running the provided tests")


class _NoNetworkSocket(_socket.socket):
    def connect(self, *args, **kwargs):
        _blocked()

    def connect_ex(self, *args, **kwargs):
        _blocked()

    def sendto(self, *args, **kwargs):
        _blocked()


_socket.socket = _NoNetworkSocket
_socket.create_connection = _blocked
_socket.getaddrinfo = _blocked
'''


@dataclass(frozen=True)
class TestRun:
    """The outcome of one test run.

    Attributes:
        passed: every test passed within the time limit.
        returncode: the child's exit status (None when it was killed for time).
        timed_out: the time limit was reached.
        output: the last 4000 characters of its stdout and stderr.
        seconds: wall-clock time.
    """

    __test__ = False  # not a pytest test class

    passed: bool
    returncode: int | None
    timed_out: bool
    output: str
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def run_tests(code: str, tests: str, *, timeout_s: float = 10.0) -> TestRun:
    """Run ``tests`` (pytest functions or plain asserts) against ``code`` saved as ``solution.py``.

    Args:
        code: the module under test.
        tests: the test file's text; it imports from ``solution``.
        timeout_s: seconds before the run is killed.
    """
    with tempfile.TemporaryDirectory(prefix="appkit-code-") as tmp:
        folder = Path(tmp)
        (folder / "solution.py").write_text(code, encoding="utf-8")
        (folder / "test_solution.py").write_text(tests, encoding="utf-8")
        guard = folder / "_guard"
        guard.mkdir()
        (guard / "sitecustomize.py").write_text(_NO_NETWORK, encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PYTHONPATH"] = os.pathsep.join([str(guard), str(folder)])
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # the project's plugins are not for these tests
        if "def test_" in tests and importlib.util.find_spec("pytest"):
            cmd = [sys.executable, "-s", "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                   "test_solution.py"]
        else:
            cmd = [sys.executable, "-s", "test_solution.py"]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            timed_out = True
        seconds = time.perf_counter() - start
    code_ = None if timed_out else proc.returncode
    if timed_out:
        out = (out or "") + f"\n(killed after {timeout_s:g} s)"
    return TestRun(passed=code_ == 0, returncode=code_, timed_out=timed_out,
                   output=(out or "")[-4000:], seconds=round(seconds, 3))
