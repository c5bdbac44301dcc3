"""Approving a suspended mission in the Prefect UI, with a real headless Chromium (Playwright).

The UI served by ``prefect server start`` renders the mission's
:class:`~mendflow.tasks.approve.request.ApprovalInput` as the form of its "Resume" dialog;
:func:`approve_in_ui` fills it in like a person would. A screenshot of the filled-in form
goes to :data:`SCREENSHOT`. Used by tests/e2e/test_deployment_approval.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path("/tmp/mendflow-ui-approval.png")
UI_WAIT_MS = 60_000
"""How long an expectation on the page may take to come true, milliseconds."""
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage"]


def require_browser():
    """Playwright and Debian's chromium (``.ci/run`` installs both); CI fails without them."""
    missing = [what for what, ok in (("chromium (/usr/bin/chromium)", CHROMIUM.exists()),
                                     ("playwright", shutil.which("playwright") is not None
                                      or _importable("playwright")))
               if not ok]
    if missing and os.environ.get("CI"):
        pytest.fail(f"missing for the UI test: {', '.join(missing)} (see .ci/run)")
    if missing:
        pytest.skip(f"missing for the UI test: {', '.join(missing)}: run "
                    "`apt-get install -y chromium` and `pip install -e '.[test]'`")


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def approve_in_ui(ui_root: str, run_id: str, *, approver: str, comment: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)  # actions; `expect` has its own timeout (5 s)
            page.goto(f"{ui_root}/runs/flow-run/{run_id}")
            page.get_by_role("button", name="Resume").click()
            dialog = page.get_by_role("dialog")
            expect(dialog).to_contain_text("wait for approval before reaching", timeout=UI_WAIT_MS)
            approved = dialog.get_by_role("switch").first
            approved.click()
            expect(approved).to_have_attribute("aria-checked", "true", timeout=UI_WAIT_MS)
            field = dialog.locator(".schema-form-property", has_text="Comment")
            field.locator("textarea").first.fill(comment)
            field = dialog.locator(".schema-form-property", has_text="Approver")
            field.get_by_role("button", name="str").click()  # the field is `str | None`
            field.locator("textarea").first.fill(approver)
            page.screenshot(path=str(SCREENSHOT))
            submit_resume(dialog, ui_root, run_id)
        finally:
            browser.close()


def submit_resume(dialog, ui_root: str, run_id: str, attempts: int = 3) -> None:
    """Press Submit until the dialog closes; the dialog closes once the API took the resume.

    On a loaded machine a Submit press was once left without effect (the dialog stayed
    open, no error, the run still paused after 60 s). Before pressing again, the run's
    state is read from the API: a run no longer paused was resumed, and is not resumed twice.
    """
    import httpx
    from playwright.sync_api import expect

    for attempt in range(1, attempts + 1):
        dialog.get_by_role("button", name="Submit").click()
        try:
            expect(dialog).to_be_hidden(timeout=UI_WAIT_MS // 2)
            return
        except AssertionError:
            state = httpx.get(f"{ui_root}/api/flow_runs/{run_id}", timeout=30).json()["state"]
            if state["type"] != "PAUSED":
                return  # resumed: the dialog was only slow to close
            assert attempt < attempts, f"still {state['name']} after {attempts} Submits"
