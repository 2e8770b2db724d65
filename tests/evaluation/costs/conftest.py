"""The cost benchmark's tests set torch's thread count (`--threads`): each test gets the old count back."""

import pytest
import torch


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
