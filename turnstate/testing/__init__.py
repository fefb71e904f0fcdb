"""Test helpers shipped with turnstate: the storage conformance suite.

Usage, in a third-party backend's test module::

    import pytest
    import pytest_asyncio
    from turnstate.testing import ManualClock, StorageConformance

    class TestMyStorage(StorageConformance):
        @pytest.fixture
        def clock(self):  # optional, for a storage that takes a clock: expiry is tested without sleeping
            return ManualClock()

        @pytest_asyncio.fixture
        async def storage(self, clock):
            async with MyStorage(..., clock=clock) as s:
                yield s

Needs pytest and pytest-asyncio (``pip install "turnstate[testing]"``); works in its strict and auto modes
(declare async fixtures with ``pytest_asyncio.fixture``, which both modes accept).
"""

from turnstate.testing.clock import ManualClock
from turnstate.testing.conformance import StorageConformance

__all__ = ["ManualClock", "StorageConformance"]
