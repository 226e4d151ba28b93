"""PyInstaller runtime hook: run before Sift's code in the frozen app, it makes the app offline and self-contained.

- Hugging Face and transformers work offline: the bundled model is a local folder and nothing is
  fetched at run time. The one exception is `sift reranker download`, which the user runs to
  download a cross-encoder and which asks before it does.
- Their caches (and torch's) go into Sift's own cache folder, not ~/.cache/huggingface or
  ~/.cache/torch, so uninstalling Sift and deleting its folders leaves nothing behind.
Values already set in the environment win: a user or an administrator can still point them elsewhere.
"""

import os
import sys


def _configure():
    argv = sys.argv[1:]
    asks_for_download = "reranker" in argv and "download" in argv
    if not asks_for_download:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    try:
        from engine.paths import home_argument, resolve_paths

        home = home_argument(argv)
        cache = resolve_paths({**os.environ, "SIFT_HOME": home} if home else None).cache
    except Exception:  # noqa: BLE001  (never stop the app from starting over where a cache goes)
        return
    os.environ.setdefault("HF_HOME", str(cache / "huggingface"))
    os.environ.setdefault("SENTENCE_TRANSFORMERS_HOME", str(cache / "sentence-transformers"))
    os.environ.setdefault("TORCH_HOME", str(cache / "torch"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache / "torchinductor"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(cache / "triton"))


_configure()
