"""``appkit ui``: the Streamlit command line it runs, and the entry point that adds it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from appkit import cli
from ui import cli as ui_cli


def test_streamlit_flags_are_local_headless_and_private() -> None:
    cmd = ui_cli.streamlit_command("127.0.0.1", 8599)
    flags = dict(zip(cmd[5::2], cmd[6::2]))
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(ui_cli.MAIN_SCRIPT)]
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "8599"
    assert flags["--server.headless"] == "true"
    assert flags["--browser.gatherUsageStats"] == "false"
    env = ui_cli.streamlit_env("appkit.toml")
    assert env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] == "false"
    assert Path(env["APPKIT_PROFILE"]).is_absolute()


def test_appkit_ui_runs_streamlit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    launched = {}

    class FakePopen:
        def __init__(self, cmd, env):
            launched.update(cmd=cmd, env=env)

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    assert cli.main(["ui", "--port", "8600", "--profile", str(tmp_path / "p.toml")]) == 0
    assert "--server.port" in launched["cmd"] and "8600" in launched["cmd"]
    assert launched["env"]["APPKIT_PROFILE"] == str(tmp_path / "p.toml")


def test_commands_are_registered_through_the_entry_point() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["ui", "--port", "9000"])
    assert args.func is ui_cli.cmd_ui and args.host == "127.0.0.1"
    assert parser.parse_args(["feedback", "export", "--as", "eval-set"]).kind == "eval-set"
