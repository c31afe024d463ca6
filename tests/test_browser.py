"""Browser test: the notebooks run in a real JupyterLab, their widgets render, and their players play.

nbval checks what a kernel prints; it cannot see that a widget fails to render in the
front end ("Error displaying widget"), that a player's audio does not load, or that a
button click never reaches the kernel. This test starts JupyterLab (``tests/lab_browser.py``)
on a temporary copy of the notebooks, drives headless Chromium through Playwright,
runs every cell and checks the page. The notebooks find ``results/`` and ``assets/``
through the installed (editable) package, not through their own folder, so a copy in
pytest's temporary directory runs like the originals, and autosave cannot change them.

Chromium is the system's (Debian's ``chromium``), never Playwright's download. Without
it the test is skipped, except in CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, sync_playwright

from lab_browser import (CHROMIUM_ARGS, LabNotebook, LabServer, audio_digest, screenshot_on_failure, shutdown_kernels,
                         silent_players, start_lab, stop_lab)

pytestmark = pytest.mark.slow

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
RUN_SECONDS = 600.0
"""Run All may take this long per notebook (the ci profile needs a minute or two on 2 cores)."""
PLAY_SECONDS = 10.0
"""Every player must have advanced within this many seconds of ``play()``."""
UPDATE_MS = 60_000
"""How long a widget may take to show the kernel's answer to a click."""
LISTENING_LAB = "07_listening_lab.ipynb"


@pytest.fixture(scope="module")
def chromium() -> str:
    """The system Chromium's path; skip without one (fail in CI, which must run this test)."""
    path = shutil.which("chromium")
    if path is None:
        reason = "no system Chromium (`chromium` on PATH; Debian/Ubuntu: apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must run the browser test")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """One JupyterLab for the module, in the ci profile, serving a copy of ``notebooks/``; shut down after."""
    base = tmp_path_factory.mktemp("lab")
    root = base / "notebooks"
    shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    server = start_lab(root, base / "state", {"METALEARN_SEP_PROFILE": "ci"})
    yield server
    stop_lab(server)


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    """One headless Chromium for the module; autoplay needs no gesture, so ``play()`` works from a script."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, lab: LabServer) -> Iterator[Page]:
    """A fresh page; afterwards it is closed and the server's kernels shut down (freeing their memory)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    context.set_default_timeout(UPDATE_MS)
    yield context.new_page()
    context.close()
    shutdown_kernels(lab)


def open_and_run(page: Page, lab: LabServer, name: str) -> LabNotebook:
    """Open ``name`` in a workspace of its own, run all cells, and check that every cell ran without error."""
    notebook = LabNotebook(page, lab, name, workspace=f"test-{uuid.uuid4().hex[:8]}")
    state = notebook.run_all(RUN_SECONDS)
    assert not state["errors"], f"{name}: cells raised:\n" + "\n".join(state["errors"])
    assert state["done"] == state["code"], f"{name}: {state['done']} of {state['code']} code cells ran: {state}"
    assert state["rendered"] == state["cells"], (
        f"{name}: {state['rendered']} of {state['cells']} cells are in the DOM (is notebook windowing still on?)"
    )
    return notebook


def check_widgets_and_players(notebook: LabNotebook) -> None:
    """No widget failed to render, and every ``<audio>`` of the notebook loads and plays."""
    assert "Error displaying widget" not in notebook.text(), f"{notebook.name}: a widget failed to render"
    reports = notebook.play(PLAY_SECONDS)
    assert reports, f"{notebook.name}: no <audio> element in the notebook"
    silent = silent_players(reports)
    assert not silent, f"{notebook.name}: {len(silent)} of {len(reports)} players did not play: {silent}"


@pytest.mark.parametrize("name", ["00_separation_basics.ipynb", "03_hypernetwork_generator.ipynb"])
def test_stem_players_render_and_play(page: Page, lab: LabServer, name: str, tmp_path: Path) -> None:
    with screenshot_on_failure(page, tmp_path / "failure.png"):
        notebook = open_and_run(page, lab, name)
        # The live widget (a VBox) carries the class; so does the static HTML copy, which must not be what shows.
        live = notebook.node.locator(".jupyter-widgets.metalearn-sep-stem-player")
        static = notebook.node.locator("div.metalearn-sep-stem-player:not(.jupyter-widgets)")
        live.first.wait_for(state="attached")
        assert static.count() == 0, f"{name}: {static.count()} StemPlayers show their static copy, not the widget"
        for index in range(live.count()):
            assert live.nth(index).locator("audio").count() >= 2, f"{name}: StemPlayer {index} has fewer than 2 players"
        check_widgets_and_players(notebook)


def wait_for_new_src(audio: Locator, old_src: str) -> None:
    """Wait until ``audio`` plays something else (the Audio widget gives each new value a new blob URL)."""
    audio.page.wait_for_function("([a, old]) => a.src !== old", arg=[audio.element_handle(), old_src])


def check_mixer(notebook: LabNotebook) -> None:
    """Muting the first stem changes what the mixer plays; unmuting brings back the same bytes."""
    mixer = notebook.node.locator(".metalearn-sep-mixer").first
    output = mixer.locator("audio.metalearn-sep-mixer-output")
    assert output.count() == 1, f"the mixer should have one output <audio>, found {output.count()}"
    mute = mixer.locator(".metalearn-sep-mute").first
    src, digest = audio_digest(output)
    mute.click()
    wait_for_new_src(output, src)
    muted_src, muted_digest = audio_digest(output)
    assert muted_digest != digest, f"muting ({mute.get_attribute('class')}) left the mix unchanged"
    mute.click()
    wait_for_new_src(output, muted_src)
    assert audio_digest(output)[1] == digest, "unmuting did not bring back the original mix"


def check_abx(notebook: LabNotebook) -> None:
    """The ABX test hides the answers, counts the trials, and reveals a score and a p-value at the end."""
    abx = notebook.node.locator(".metalearn-sep-abx").first
    players = abx.locator(".metalearn-sep-abx-player")
    assert players.count() == 3, f"expected the players A, B and X, found {players.count()}"
    assert all(players.nth(i).evaluate("e => e.tagName") == "AUDIO" for i in range(3)), "ABX players are not <audio>"
    digests = [audio_digest(players.nth(i))[1] for i in range(3)]
    assert len(set(digests)) == 3, "X's audio has the same bytes as A's or B's: the page gives the answer away"
    before = abx.evaluate("e => e.textContent")
    assert "X = A" not in before and "X = B" not in before, f"the ABX widget gives the answer away: {before!r}"
    status, reveal = abx.locator(".metalearn-sep-abx-status"), abx.locator(".metalearn-sep-abx-reveal")
    answers = [abx.locator(".metalearn-sep-abx-a"), abx.locator(".metalearn-sep-abx-b")]
    for click in range(50):
        if reveal.is_enabled():
            break
        shown = status.text_content()
        answers[click % 2].click()
        # The next click only after the kernel's answer: a click on a finished test would be refused.
        status.page.wait_for_function(
            "([status, reveal, shown]) => status.textContent !== shown || !reveal.disabled",
            arg=[status.element_handle(), reveal.element_handle(), shown],
        )
    assert reveal.is_enabled(), "the reveal button stayed disabled after 50 answers"
    reveal.click()
    result = abx.locator(".metalearn-sep-abx-result")
    result.filter(has_text="p =").wait_for()
    text = result.text_content()
    assert "score" in text.lower() and "p =" in text, f"the revealed result lacks a score or p-value: {text!r}"


def check_compare(notebook: LabNotebook) -> None:
    """Every cell of the Compare grid holds exactly one player."""
    cells = notebook.node.locator(".metalearn-sep-compare .metalearn-sep-compare-cell")
    assert cells.count() > 0, "the Compare grid has no cells"
    counts = [cells.nth(i).locator("audio").count() for i in range(cells.count())]
    assert all(n == 1 for n in counts), f"Compare cells should hold one <audio> each, found {counts}"


def test_listening_lab(page: Page, lab: LabServer, tmp_path: Path) -> None:
    with screenshot_on_failure(page, tmp_path / "failure.png"):
        notebook = open_and_run(page, lab, LISTENING_LAB)
        check_widgets_and_players(notebook)
        check_mixer(notebook)
        check_abx(notebook)
        check_compare(notebook)
