"""Widget tests: each leaves no background work of ours running into the next test."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def our_workers_done(qapp):
    yield
    from napari_grounding.widgets.background import worker_pool

    assert worker_pool().waitForDone(30000), "a background job of the panel is still running"
