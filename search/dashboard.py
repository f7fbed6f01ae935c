"""Serve a study's storage with optuna-dashboard."""

from __future__ import annotations

import os
import signal
import sys
import threading
from socketserver import ThreadingMixIn
from typing import TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from search.report import ARTIFACTS_ATTR, study_folder
from search.spec import StudySpec
from search.storage import load_study, open_storage, redact


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a browser's open connection must not keep the process alive


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass


def serve(spec: StudySpec, *, host: str = "127.0.0.1", port: int = 8080, stream: TextIO | None = None) -> None:
    """Serve the study's storage until SIGINT (Ctrl-C) or SIGTERM, then stop cleanly.

    Raises ``StudyNotFound`` before serving if the study was never run. The figures that
    ``actreg report`` attached to the study are served too.
    """
    from optuna_dashboard import wsgi

    stream = stream or sys.stdout
    storage = open_storage(spec.storage, create=False)
    study = load_study(spec, storage)
    store = None
    artifacts = study.user_attrs.get(ARTIFACTS_ATTR)
    if artifacts:  # relative to the study file (absolute in studies reported by earlier versions)
        artifacts = os.path.join(study_folder(spec), artifacts)
    if artifacts and os.path.isdir(artifacts):
        import optuna

        store = optuna.artifacts.FileSystemArtifactStore(artifacts)
    app = wsgi(storage, artifact_store=store)
    httpd = make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    worker = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    worker.start()
    try:
        print(f"Serving study {spec.name!r} from {redact(spec.storage)}", file=stream)
        study_id = storage.get_study_id_from_name(spec.name)
        print(f"Open http://{host}:{httpd.server_port}/dashboard/studies/{study_id}  (Ctrl-C stops)",
              file=stream, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        httpd.shutdown()
        httpd.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("dashboard stopped", file=stream, flush=True)
