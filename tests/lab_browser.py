"""Helpers for ``tests/test_browser.py``: a throwaway JupyterLab server and Playwright steps on one notebook.

The browser test checks what nbval cannot: that the notebooks' widgets render and their
players play in a real JupyterLab front end. This module starts JupyterLab from the
running interpreter on a free port of 127.0.0.1 with a random token, serving a copy of
the notebooks, with its settings, workspaces and runtime files in a temporary folder
(so nothing of the user's ``~/.jupyter`` is read or written, and autosave cannot touch
the committed notebooks). Notebook windowing is off in those settings, so every cell
stays in the DOM, and the app is exposed as ``window.jupyterapp``, so a page can run
JupyterLab's own commands and read the notebook model instead of guessing from pixels.

Nothing here is collected by pytest (no ``test_*`` names).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
from playwright.sync_api import Page

STARTUP_SECONDS = 120.0
"""How long JupyterLab may take to answer its status endpoint on a loaded 2-core machine."""

SHUTDOWN_SECONDS = 20.0
"""How long the server and its kernels get to exit after ``/api/shutdown`` before they are killed."""

CHROMIUM_ARGS = ["--no-sandbox", "--autoplay-policy=no-user-gesture-required"]
"""``--no-sandbox``: the tests run as root; the autoplay policy lets ``el.play()`` start without a click."""

_SETTINGS = {
    # Without windowing every cell stays in the DOM, so selectors see all outputs.
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    # No "would you like news?" toast over the notebook, and no request for it.
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago (the server is told not to try others)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LabServer:
    """A running JupyterLab: its base URL, token, process and log file."""

    url: str
    token: str
    process: subprocess.Popen
    log: Path

    def notebook_url(self, name: str) -> str:
        """The URL that opens ``name`` (relative to the served folder) in JupyterLab."""
        return f"{self.url}/lab/tree/{name}?token={self.token}"

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's log, for failure messages."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def _api(server: LabServer, path: str, method: str = "GET") -> bytes:
    request = urllib.request.Request(
        f"{server.url}{path}", method=method, headers={"Authorization": f"token {server.token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def _write_settings(settings_dir: Path) -> None:
    for relative, values in _SETTINGS.items():
        path = settings_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def start_lab(root: Path, state: Path, env: dict[str, str]) -> LabServer:
    """Start JupyterLab serving ``root``, with its configuration and runtime files under ``state``.

    Args:
        root: the folder the server serves (and its kernels start in).
        state: an empty folder for settings, workspaces, runtime files and the log.
        env: extra environment for the server and therefore its kernels (e.g. the profile).

    Raises:
        RuntimeError: the server exited or did not answer within :data:`STARTUP_SECONDS`;
            the message holds its log.
    """
    settings = state / "settings"
    _write_settings(settings)
    for sub in ("config", "runtime", "workspaces"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    venv_bin = str(Path(sys.executable).parent)
    full_env = os.environ | env | {
        "JUPYTER_CONFIG_DIR": str(state / "config"),
        "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
    }
    token, port = secrets.token_hex(24), free_port()
    command = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser", "--allow-root", "--expose-app-in-browser",
        "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.news_url=",
    ]  # fmt: skip
    log = state / "jupyterlab.log"
    with log.open("wb") as sink:
        # Its own process group, so that stopping it cannot signal pytest, and it can be killed whole.
        process = subprocess.Popen(
            command, cwd=root, env=full_env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = LabServer(f"http://127.0.0.1:{port}", token, process, log)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {process.returncode}:\n{server.log_tail()}")
        with contextlib.suppress(OSError):
            _api(server, "/api/status")
            return server
        time.sleep(0.5)
    stop_lab(server)
    raise RuntimeError(f"JupyterLab did not answer within {STARTUP_SECONDS:.0f} s:\n{server.log_tail()}")


def stop_lab(server: LabServer) -> list[str]:
    """Shut the server and its kernels down; kill whatever of them is left. Returns what had to be killed.

    Kernels run in their own sessions (jupyter_client starts each in a new one), so killing
    the server's process group would not reach them: they are collected as its
    descendants before the polite ``/api/shutdown`` and killed if still alive after it.
    """
    try:
        family = [psutil.Process(server.process.pid), *psutil.Process(server.process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    with contextlib.suppress(OSError):
        _api(server, "/api/shutdown", method="POST")
    _, alive = psutil.wait_procs(family, timeout=SHUTDOWN_SECONDS)
    killed = [" ".join(p.cmdline()) for p in alive if p.is_running()]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(server.process.pid, signal.SIGKILL)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    server.process.wait(timeout=5)
    return killed
