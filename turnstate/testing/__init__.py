"""Test helpers shipped with turnstate: the storage conformance suite.

Usage, in a third-party backend's test module::

    import pytest
    from turnstate.testing import StorageConformance

    class TestMyStorage(StorageConformance):
        @pytest.fixture
        async def storage(self):
            async with MyStorage(...) as s:
                yield s

Needs pytest and pytest-asyncio (``pip install "turnstate[testing]"``), with ``asyncio_mode = "auto"``.
"""

from turnstate.testing.clock import ManualClock
from turnstate.testing.conformance import StorageConformance

__all__ = ["ManualClock", "StorageConformance"]
