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
from playwright.sync_api import Locator, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

REPOSITORY = Path(__file__).resolve().parents[1]
"""The course repository (where `make lab` runs)."""

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


def start_lab(root: Path, state: Path, env: dict[str, str], via_make: bool = False) -> LabServer:
    """Start JupyterLab serving ``root``, with its configuration and runtime files under ``state``.

    Args:
        root: the folder the server serves (and its kernels start in).
        state: an empty folder for settings, workspaces, runtime files and the log.
        env: extra environment for the server and therefore its kernels (e.g. the profile).
        via_make: start it as a student does, with ``make lab`` in the repository (which serves
            ``notebooks/`` and adds ``--allow-root`` for root itself); ``root`` is then unused.

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
    options = [
        "--no-browser", "--expose-app-in-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=",
    ]  # fmt: skip
    if via_make:
        command = ["make", "--no-print-directory", "-C", str(REPOSITORY), "lab", "LAB_ARGS=" + " ".join(options)]
    else:
        command = [sys.executable, "-m", "jupyterlab", "--allow-root", f"--ServerApp.root_dir={root}", *options]
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


def stop_lab(server: LabServer) -> None:
    """Shut the server and its kernels down, kill whatever of them outlives that, and check that none is left.

    Kernels run in sessions of their own (jupyter_client starts each in a new one), so
    killing the server's process group would not reach them: they are collected as the
    server's descendants before the polite ``/api/shutdown`` and killed if still alive.

    Raises:
        RuntimeError: some process of the server survived even ``SIGKILL``.
    """
    try:
        root = psutil.Process(server.process.pid)
        family = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    with contextlib.suppress(OSError):
        _api(server, "/api/shutdown", method="POST")
    _, alive = psutil.wait_procs(family, timeout=SHUTDOWN_SECONDS)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(server.process.pid, signal.SIGKILL)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    _, survivors = psutil.wait_procs(alive, timeout=5)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.process.wait(timeout=5)
    if survivors:
        raise RuntimeError(f"JupyterLab processes survived SIGKILL: {[p.pid for p in survivors]}")


def shutdown_kernels(server: LabServer) -> None:
    """Shut down every session (and so its kernel) of ``server``, freeing its memory between notebooks."""
    for session in json.loads(_api(server, "/api/sessions")):
        with contextlib.suppress(urllib.error.HTTPError):
            _api(server, f"/api/sessions/{session['id']}", method="DELETE")


@contextlib.contextmanager
def screenshot_on_failure(page: Page, path: Path) -> Iterator[None]:
    """On any exception inside, save a screenshot of ``page`` to ``path`` and re-raise naming it."""
    try:
        yield
    except Exception as error:
        try:
            page.screenshot(path=path, full_page=True)
            where = f"screenshot: {path}"
        except Exception as shot_error:  # a crashed page cannot be photographed; say so, keep the cause
            where = f"no screenshot ({shot_error})"
        raise AssertionError(f"{error}\n{where}") from error


# Every script below finds the notebook panel by its path: the page holds one workspace of its own.
_PANEL = "const panel = [...window.jupyterapp.shell.widgets('main')].find(w => w.context && w.context.path === name);"

_READY = f"""name => {{ if (!window.jupyterapp) return false; {_PANEL}
  const kernel = panel && panel.sessionContext.session && panel.sessionContext.session.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle'; }}"""

_STATE = f"""name => {{ {_PANEL}
  const cells = panel.content.widgets;
  const code = cells.filter(c => c.model.type === 'code');
  const errors = [];
  cells.forEach((c, i) => {{
    if (c.model.type !== 'code') return;
    for (const o of c.model.outputs.toJSON())
      if (o.output_type === 'error') errors.push(`cell ${{i}}: ${{o.ename}}: ${{o.evalue}}`);
  }});
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return {{
    id: panel.id,
    status: kernel ? kernel.status : 'no kernel',
    cells: cells.length,
    rendered: panel.content.node.querySelectorAll('.jp-Cell').length,
    code: code.length,
    done: code.filter(c => c.model.executionCount !== null && c.model.executionState !== 'running').length,
    errors,
  }}; }}"""

_FINISHED = f"""name => {{ {_PANEL}
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  if (!kernel || kernel.status === 'dead') return true;  // nothing more will run: the caller reports it
  if (kernel.status !== 'idle') return false;
  const code = panel.content.widgets.filter(c => c.model.type === 'code');
  const failed = code.some(c => c.model.outputs.toJSON().some(o => o.output_type === 'error'));
  return failed || code.every(c => c.model.executionCount !== null && c.model.executionState !== 'running'); }}"""

_RUN_ALL = f"""async name => {{ {_PANEL}
  window.jupyterapp.shell.activateById(panel.id);
  await window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs');
  return await window.jupyterapp.commands.execute('notebook:run-all-cells'); }}"""

_PLAY = """async (root, seconds) => {
  const players = [...root.querySelectorAll('audio')];
  for (const a of players) { a.volume = 0; a.currentTime = 0; }
  const started = await Promise.allSettled(players.map(a => a.play()));
  const deadline = performance.now() + 1000 * seconds;
  while (performance.now() < deadline && players.some(a => !(a.currentTime > 0)))
    await new Promise(resolve => setTimeout(resolve, 100));
  const report = players.map((a, i) => ({
    index: i, classes: a.className, readyState: a.readyState, duration: a.duration, currentTime: a.currentTime,
    error: a.error ? a.error.code : null, play: started[i].status === 'fulfilled' ? 'ok' : String(started[i].reason),
  }));
  for (const a of players) { a.pause(); a.currentTime = 0; }
  return report; }"""

_DIGEST = """async audio => {
  const bytes = await (await fetch(audio.src)).arrayBuffer();
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return [...digest].map(b => b.toString(16).padStart(2, '0')).join(''); }"""


class LabNotebook:
    """One notebook opened in JupyterLab in ``page``, in a fresh workspace (no other tab restored)."""

    def __init__(self, page: Page, server: LabServer, name: str, workspace: str) -> None:
        self.page, self.name = page, name
        page.goto(f"{server.url}/lab/workspaces/{workspace}/tree/{name}?token={server.token}")
        page.wait_for_function(_READY, arg=name, timeout=STARTUP_SECONDS * 1000, polling=500)
        self.node = page.locator(f"[id='{self.state()['id']}'] .jp-Notebook")

    def state(self) -> dict:
        """``{id, status, cells, rendered, code, done, errors}``: the panel's id, the kernel's status,
        cells in the model and in the DOM, code cells and those executed, and error outputs."""
        return self.page.evaluate(_STATE, self.name)

    def run_all(self, timeout_s: float) -> dict:
        """Clear every output, run all cells, and wait until the kernel is idle and every code cell
        ran (or one raised: Run All stops there). Returns :meth:`state`."""
        self.page.evaluate(_RUN_ALL, self.name)
        try:
            self.page.wait_for_function(_FINISHED, arg=self.name, timeout=timeout_s * 1000, polling=1000)
        except PlaywrightTimeoutError:
            raise AssertionError(f"{self.name}: Run All did not finish in {timeout_s:.0f} s: {self.state()}") from None
        return self.state()

    def text(self, css: str = "") -> str:
        """The text content of the notebook, or of the first element matching ``css`` in it (hidden parts included)."""
        target = self.node.locator(css).first if css else self.node
        return target.evaluate("e => e.textContent")

    def play(self, seconds: float, css: str = "") -> list[dict]:
        """Start every ``<audio>`` in the notebook (or under the first ``css`` match) at volume 0, wait up
        to ``seconds`` for all to advance, pause them; returns one report per player
        (``readyState``, ``duration``, ``currentTime``, ``error``, ``play``: ``"ok"`` or the rejection)."""
        target = self.node.locator(css).first if css else self.node
        return target.evaluate(_PLAY, seconds)


def audio_digest(audio: Locator) -> tuple[str, str]:
    """``(src, SHA-256 of the bytes it serves)`` of the ``<audio>`` element ``audio``."""
    return audio.evaluate("a => a.src"), audio.evaluate(_DIGEST)


def silent_players(reports: list[dict]) -> list[dict]:
    """The reports of :meth:`LabNotebook.play` whose player did not load or did not advance."""
    return [
        r for r in reports
        if r["play"] != "ok" or r["error"] is not None or r["readyState"] < 2
        or not (r["duration"] or 0) > 0 or not r["currentTime"] > 0
    ]  # fmt: skip
