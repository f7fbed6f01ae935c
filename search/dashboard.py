"""Serve a study's storage with optuna-dashboard."""

from __future__ import annotations

import os
import signal
import sys
from typing import TextIO

from search.spec import StudySpec
from search.storage import load_study


def serve(spec: StudySpec, *, host: str = "127.0.0.1", port: int = 8080, stream: TextIO | None = None) -> None:
    """Serve the study's storage until interrupted (Ctrl-C or SIGTERM both stop it cleanly).

    Raises ``StudyNotFound`` before serving if the study was never run.
    """
    from optuna_dashboard import run_server

    stream = stream or sys.stdout
    study = load_study(spec)
    study_id = study._study_id
    print(f"Serving study {spec.name!r} from {spec.storage}", file=stream)
    print(f"Open http://{host}:{port}/dashboard/studies/{study_id}  (Ctrl-C stops)", file=stream, flush=True)

    def stop(signum, frame):
        raise KeyboardInterrupt

    artifacts = study.user_attrs.get("actreg_artifacts")
    store = None
    if artifacts and os.path.isdir(artifacts):  # figures attached by `actreg report`
        import optuna

        store = optuna.artifacts.FileSystemArtifactStore(artifacts)
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        run_server(study._storage, host=host, port=port, artifact_store=store)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("dashboard stopped", file=stream, flush=True)
