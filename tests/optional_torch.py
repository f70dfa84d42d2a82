"""PyTorch for the parity tests, when it is installed: ``torch`` (or None) and the
``needs_torch`` mark that skips a test, with the reason, when it is not."""

import pytest

try:
    import torch
except ImportError:  # pragma: no cover - torch is in the test extras
    torch = None

needs_torch = pytest.mark.skipif(
    torch is None, reason="PyTorch is not installed; the parity tests need it "
                          "(pip install torch, CPU is enough)")
