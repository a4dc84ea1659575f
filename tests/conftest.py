"""For the whole suite: a failure is reported, not a crash; and the skipped checks against KEDA's files are counted.

A test or fixture that fails half-way can leave servers and sockets open: garbage whose finalizers warn
(ResourceWarning, "Event loop is closed"). If the collector runs while pytest parses source to format a
failure, the warning reaches pytest's unraisable hook, which formats a traceback, and on Python 3.11 that
parses source too; the nested `ast.parse` breaks the outer one ("SystemError: AST constructor recursion
depth mismatch"), which surfaces through hypothesis' report hookwrapper as INTERNALERROR, and the cause is
lost. So the collector is off while a failure is formatted, and runs once the failed test's fixtures are
torn down, where its warnings become that test's error. Fixtures still release what they started when a
later step of theirs fails (tests/integration/conftest.py `harness`), since pytest keeps a failed
fixture's frame, and whatever it holds, until the session ends.
"""

from __future__ import annotations

import gc
from collections.abc import Generator, Iterator

import pytest

from tests.keda_schemas import SKIP_REASON, schemas_dir

_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    if call.excinfo is None or call.excinfo.errisinstance(pytest.skip.Exception):
        return (yield)
    item.stash[_FAILED] = True
    enabled = gc.isenabled()
    gc.disable()
    try:
        return (yield)
    finally:
        if enabled:
            gc.enable()


@pytest.fixture(autouse=True)
def _collect_what_a_failure_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """Set up first, so torn down last: after the test's other fixtures, before pytest reports unraisables."""
    yield
    if request.node.stash.get(_FAILED, False):
        gc.collect()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if SKIP_REASON in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} checks against KEDA's own files skipped, for want of them in {schemas_dir()} "
            "(set KEDA_SCHEMAS_DIR to run them; KEDA_SCHEMAS_REQUIRED=1 makes their absence a failure)"
        )
