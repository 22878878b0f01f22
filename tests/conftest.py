"""Test-suite set-up shared by every test module.

The Hub endpoint must be in the environment before `huggingface_hub` or `datasets` is imported
(both read HF_ENDPOINT once, at import), so the port of the local Hub server is chosen here, at
collection time; the server itself starts lazily in the `local_hub` fixture (tests/local_hub.py).
"""

from __future__ import annotations

import os
import socket
import tempfile


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_TEST_HOME = tempfile.mkdtemp(prefix="hf-selectit-tests-")
os.environ["HF_SELECTIT_TEST_HUB_PORT"] = str(_free_port())
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{os.environ['HF_SELECTIT_TEST_HUB_PORT']}"
# The Xet upload path asks for a write token the local server does not have.
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
# Isolate the Hub/datasets caches and any stored login of the developer's machine.
os.environ["HF_HOME"] = os.path.join(_TEST_HOME, "hf_home")
os.environ["HF_DATASETS_CACHE"] = os.path.join(_TEST_HOME, "datasets_cache")
os.environ.pop("HF_TOKEN", None)
os.environ["TOKENIZERS_PARALLELISM"] = "false"

# --- shared fixtures (each lives in its own module) ---
from tests.tiny_lm import tiny_model_dir  # noqa: E402,F401
from tests.local_hub import local_hub  # noqa: E402,F401
from tests.threads import one_torch_thread  # noqa: E402,F401
