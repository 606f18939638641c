"""A real-browser test: JupyterLab from this environment, a tutorial in headless Chromium, a slider moved.

nbmake (scripts/test.sh) runs every notebook in a kernel, but never in a front end: it cannot see a
widget that fails to render, a slider that does not redraw its output, or an error shown by a
widget callback. This test does what a reader does:

1. copy tutorial 1 into a temporary folder (the repository's notebook is never touched; the whole
   chapter runs in about a minute on 2 CPU cores);
2. start JupyterLab (this virtualenv's, with throwaway config, data, settings and runtime folders)
   on a free port with a random token;
3. open the notebook in headless Chromium (Debian's ``chromium`` driven by Python ``playwright``),
   wait for the kernel, run all cells, and wait until every code cell has run and the kernel is idle;
4. check that no cell shows an error and that the sliders rendered;
5. press ArrowRight on the first slider and wait until the image its output area shows changes;
6. check again that nothing, widget outputs included, shows an error;
7. always shut JupyterLab and its kernels down.

It is skipped only when Chromium or playwright is missing; ``bash scripts/setup.sh`` installs both when
it can (root and apt-get for Chromium; the ``[dev]`` extra for playwright). ``playwright install`` is
never needed: the wheel carries its own driver and the system Chromium is used.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "tutorials" / "01_diffusion_basics.ipynb"
SLIDER_CALL = "slider_view("
SERVER_START_TIMEOUT_S = 60
PAGE_TIMEOUT_MS = 60_000
RUN_ALL_TIMEOUT_MS = 300_000  # the whole chapter: ~1 minute on 2 idle cores, more on a loaded machine
REDRAW_TIMEOUT_MS = 30_000


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _prerequisites() -> str:
    """The Chromium executable, or skip the test with the reason it cannot run."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]', or bash scripts/setup.sh)")
    executable = _chromium()
    if executable is None:
        pytest.skip("Chromium is not installed (bash scripts/setup.sh installs Debian's `chromium` "
                    "when run as root with apt-get; or `apt-get install chromium`)")
    return executable


def _notebook_copy(folder: Path) -> str:
    """Tutorial 1, every cell, written to ``folder``; returns the file name."""
    notebook = nbformat.read(TUTORIAL, as_version=4)
    if not any(cell.cell_type == "code" and SLIDER_CALL in cell.source for cell in notebook.cells):
        raise AssertionError(f"{TUTORIAL} has no {SLIDER_CALL}...) cell: this test needs a slider to move")
    name = TUTORIAL.name
    nbformat.write(notebook, folder / name)
    return name


def _write_settings(settings_dir: Path) -> None:
    """JupyterLab user settings: render every cell (no windowing) and ask nothing on first start."""
    settings = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
            {"fetchNews": "false", "checkForUpdates": False},
    }
    for relative, values in settings.items():
        path = settings_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _descendants(pid: int) -> list[int]:
    try:
        import psutil
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except Exception:  # psutil missing or the process already gone
        return []


def _kill(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


class JupyterLab:
    """A JupyterLab server in its own process group, on a free port, with throwaway state folders."""

    def __init__(self, base: Path, notebooks: Path):
        self.token = secrets.token_hex(16)
        self.runtime_dir = base / "runtime"
        env = dict(os.environ)
        env.update({
            "JUPYTER_CONFIG_DIR": str(base / "config"),
            "JUPYTER_DATA_DIR": str(base / "data"),  # the kernel comes from this venv's share/jupyter
            "JUPYTER_RUNTIME_DIR": str(self.runtime_dir),
            "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
            "IPYTHONDIR": str(base / "ipython"),
            "MINIVDM_DEVICE": "cpu",
            "MPLBACKEND": "Agg",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONHASHSEED": "0",
        })
        _write_settings(base / "settings")
        self.log_path = base / "jupyterlab.log"
        self._log = open(self.log_path, "wb")
        command = [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={_free_port()}",
            f"--ServerApp.token={self.token}", f"--ServerApp.root_dir={notebooks}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        self.process = subprocess.Popen(command, env=env, cwd=notebooks, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self.url = self._wait_until_up()
        except BaseException:
            self.stop()
            raise

    def _wait_until_up(self) -> str:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.process.returncode}:\n{self.log()}")
            # the server writes its actual URL here once it listens (the port may have been retried)
            for info_file in self.runtime_dir.glob(f"jpserver-{self.process.pid}.json"):
                try:
                    url = json.loads(info_file.read_text())["url"].rstrip("/")
                    with urllib.request.urlopen(f"{url}/api/status?token={self.token}", timeout=5):
                        return url
                except (OSError, ValueError, KeyError):
                    pass
            time.sleep(0.25)
        raise TimeoutError(f"JupyterLab did not answer within {SERVER_START_TIMEOUT_S} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """Shut the server and its kernels down: kernels run in their own sessions, so kill them by pid."""
        children = _descendants(self.process.pid)
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)  # the server shuts its kernels down on SIGTERM
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        _kill(children, signal.SIGKILL)  # whatever survived the server (a hung kernel)
        self._log.close()


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# JavaScript run in the page, through the app that --LabApp.expose_app_in_browser puts on window.
NOTEBOOK_READY = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const kernel = panel && panel.sessionContext && panel.sessionContext.session
        && panel.sessionContext.session.kernel;
    return !!(panel && panel.content && panel.sessionContext.isReady && kernel && kernel.status === 'idle');
}"""
# Finished: the kernel is idle, no prompt shows [*], and every code cell ran, or one failed (Run All
# stops there: the error check below then says which, instead of a timeout).
RUN_FINISHED = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    const code = panel.content.widgets.filter(cell => cell.model.type === 'code');
    const prompts = [...panel.content.node.querySelectorAll('.jp-InputPrompt')].map(p => p.textContent);
    const failed = code.some(cell => cell.model.outputs.toJSON().some(o => o.output_type === 'error'));
    return !!kernel && kernel.status === 'idle' && !prompts.some(text => text.includes('*'))
        && (failed || code.every(cell => cell.model.executionCount !== null));
}"""
UNRUN_CELLS = """() => window.jupyterapp.shell.currentWidget.content.widgets
    .map((cell, index) => [cell, index])
    .filter(([cell]) => cell.model.type === 'code' && cell.model.executionCount === null)
    .map(([, index]) => index)"""
CELL_ERRORS = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const errors = [];
    panel.content.widgets.forEach((cell, index) => {
        if (cell.model.type !== 'code') return;
        for (const output of cell.model.outputs.toJSON()) {
            const text = [].concat(output.text || []).join('');
            if (output.output_type === 'error') errors.push(`cell ${index}: ${output.ename}: ${output.evalue}`);
            else if (output.name === 'stderr' && text.includes('Traceback')) errors.push(`cell ${index}: ${text}`);
        }
    });
    // what the page shows, widget output areas included
    for (const node of document.querySelectorAll(
            '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"], '
            + '.jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]')) {
        if (/Traceback|Error/.test(node.textContent)) errors.push(`shown: ${node.textContent.slice(0, 2000)}`);
    }
    for (const node of document.querySelectorAll('.jp-OutputArea-output')) {
        if (/Error displaying widget|Failed to load model class/.test(node.textContent))
            errors.push(`widget: ${node.textContent.slice(0, 500)}`);
    }
    return errors;
}"""


@pytest.fixture
def jupyterlab(tmp_path):
    chromium = _prerequisites()
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    name = _notebook_copy(notebooks)
    server = JupyterLab(tmp_path / "jupyter", notebooks)
    try:
        yield server, name, chromium
    finally:
        server.stop()


def test_tutorial_runs_in_jupyterlab_and_its_slider_redraws(jupyterlab, tmp_path):
    from playwright.sync_api import sync_playwright

    server, name, chromium = jupyterlab
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        console_errors = []
        page.on("pageerror", lambda error: console_errors.append(str(error)))
        try:
            page.goto(f"{server.url}/lab/tree/{name}?token={server.token}")
            page.wait_for_function(NOTEBOOK_READY, timeout=PAGE_TIMEOUT_MS, polling=250)

            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_function(RUN_FINISHED, timeout=RUN_ALL_TIMEOUT_MS, polling=250)
            assert page.evaluate(CELL_ERRORS) == []
            assert page.evaluate(UNRUN_CELLS) == [], "Run All Cells left these code cells unrun"

            sliders = page.locator(".widget-slider")
            sliders.first.wait_for(state="visible")
            # slider_view(...) in tutorial 1 -> controls, then an Output widget that shows the render
            view = page.locator(".widget-vbox", has=page.locator(".widget-slider")).filter(
                has=page.locator(".widget-output img")).first
            image = view.locator(".widget-output img").first
            image.wait_for(state="visible")
            before = image.get_attribute("src")
            readout = view.locator(".widget-readout").first
            value_before = readout.inner_text()

            handle = view.locator(".noUi-handle").first
            handle.focus()
            for _ in range(3):
                handle.press("ArrowRight")
            # continuous_update=False: the kernel redraws once the value is set; the output area is
            # cleared and refilled, so the image is looked up again at each poll
            page.wait_for_function(
                "([view, before]) => { const img = view.querySelector('.widget-output img');"
                " return !!img && !!img.getAttribute('src') && img.getAttribute('src') !== before; }",
                arg=[view.element_handle(), before], timeout=REDRAW_TIMEOUT_MS, polling=250)
            assert readout.inner_text() != value_before, "the slider's value did not move"
            after = view.locator(".widget-output img").first.get_attribute("src")
            assert after and after != before, "moving the slider did not change the output it controls"

            page.wait_for_function(RUN_FINISHED, timeout=REDRAW_TIMEOUT_MS, polling=250)
            assert page.evaluate(CELL_ERRORS) == []
            assert console_errors == [], f"JavaScript errors in the page: {console_errors}"
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            print(f"screenshot: {tmp_path / 'failure.png'}\nJupyterLab log (end):\n{server.log()}")
            raise
        finally:
            browser.close()
