"""One torch thread for the tests that run the tiny model.

The tiny model's matrices are far too small for threads to pay, and the machine's two cores are
shared: with OpenMP spinning each forward ran 10-30x slower. A module opts in with
``pytestmark = pytest.mark.usefixtures("one_torch_thread")``; the previous count is restored
when the module ends.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
