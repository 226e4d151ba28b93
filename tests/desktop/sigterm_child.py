"""The desktop app in a child process for the SIGTERM test: a fake model whose embedding takes a minute."""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QApplication  # noqa: E402

from desktop.app import SiftApp, serve  # noqa: E402
from desktop.prefs import Prefs  # noqa: E402
from engine import Engine  # noqa: E402
from engine.embed import FakeEmbedder  # noqa: E402


class SlowEmbedder(FakeEmbedder):
    """Embedding documents takes a minute, like a big batch on a slow CPU: a torch call cannot be interrupted."""

    def embed_documents(self, texts):
        print("embedding", flush=True)
        time.sleep(60)
        return super().embed_documents(texts)


def main() -> int:
    home, docs = sys.argv[1], sys.argv[2]
    app = QApplication([])
    engine = Engine.open(home, embedder=SlowEmbedder())
    engine.update_config(parse_workers=1)
    engine.add_folder(docs)
    sift = SiftApp(engine, use_tray=False, prefs=Prefs(engine.paths.config),
                   service_options={"quiet_s": 0.0, "root_check_s": 0.2})
    return serve(app, sift)


if __name__ == "__main__":
    sys.exit(main())
