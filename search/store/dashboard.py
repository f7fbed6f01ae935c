"""optuna-dashboard's door: serve a study's storage, attach a report's files to the study, write notes.

Every call into optuna-dashboard, and into Optuna's artifacts and study system attributes, is
made here. optuna-dashboard's notes are written through its private ``_note`` module (see
:func:`save_notes`); ``tests/test_store_contract.py`` pins each function of it used here.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from search.store.reading import annotating, load_study, study_id
from search.store.schema import ARTIFACTS_ATTR, DIGESTS_ATTR
from search.store.storage import file_digest, open_storage, redact
from search.study.spec import StudySpec

if TYPE_CHECKING:
    import optuna



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
    storage = open_storage(spec.storage, create=False, access="read", patience=spec.storage_patience)
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
        number = study_id(storage, spec.name)
        print(f"Open http://{host}:{httpd.server_port}/dashboard/studies/{number}  (Ctrl-C stops)",
              file=stream, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        httpd.shutdown()
        httpd.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("dashboard stopped", file=stream, flush=True)


def study_folder(spec: StudySpec) -> Path:
    """Where paths stored in the study are relative to: the study file's folder (else the working folder)."""
    return Path(spec.path).resolve().parent if spec.path is not None else Path.cwd()


def attach_report(spec: StudySpec, folder: Path, paths: Sequence[Path], summary: str) -> None:
    """``paths`` (a report's files in ``folder``) as artifacts of ``spec``'s study, uploaded again only
    when changed and kept in ``<folder>/artifacts``; ``summary`` (Markdown) as the study's note."""
    import optuna
    from optuna_dashboard import save_note

    store_dir = (folder / "artifacts").resolve()
    store_dir.mkdir(exist_ok=True)
    store = optuna.artifacts.FileSystemArtifactStore(str(store_dir))
    # Stored relative to the study file, so that the study names no folder of this machine.
    shown = Path(os.path.relpath(folder.resolve(), study_folder(spec)))
    with annotating(spec) as study:
        digests = dict(study.user_attrs.get(DIGESTS_ATTR, {}))
        for path in paths:
            digest = file_digest(str(path))
            if digests.get(path.name) == digest:
                continue
            optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study)
            digests[path.name] = digest
        study.set_user_attr(DIGESTS_ATTR, digests)
        study.set_user_attr(ARTIFACTS_ATTR, str(shown / "artifacts"))
        save_note(study, f"# {spec.name}\n\nWritten by `actreg report` into `{shown}` (from the study file's "
                  "folder).\n\n" + summary)


def save_notes(storage: optuna.storages.BaseStorage, study_id: int, study_note: str,
               trial_notes: dict[int, str]) -> int:
    """The study's note and trials' notes (by trial number) as optuna-dashboard shows them, each written
    only where it changed; returns how many were written.

    optuna-dashboard's public ``save_note`` takes a live ``optuna.Trial``, which a finished trial
    cannot become (its sampler would write to it), and reads all the study's attributes again for
    each note. Its notes are study system attributes in its own layout (a version and the body in
    chunks), written here with one read for them all (``tests/test_race.py`` reads them back
    through its web API).
    """
    from optuna_dashboard import _note

    attrs = storage.get_study_system_attrs(study_id)
    chunks: dict[str, int] = {}  # a note's key prefix -> how many chunks it has stored
    for key in attrs:
        if ":note_str:" in key:
            prefix = key[:key.index(":note_str:") + len(":note_str:")]
            chunks[prefix] = chunks.get(prefix, 0) + 1
    written = 0
    by_id = {storage.get_trial_id_from_study_id_trial_number(study_id, number): body
             for number, body in trial_notes.items()}
    for trial_id, body in [*by_id.items(), (None, study_note)]:
        current = _note.get_note_from_system_attrs(attrs, trial_id)
        if current["body"] == body:
            continue
        storage.set_study_system_attr(study_id, _note.note_ver_key(trial_id), current["version"] + 1)
        parts = _note.split_body(body, trial_id)
        for key, value in parts.items():
            storage.set_study_system_attr(study_id, key, value)
        prefix = _note.note_str_key_prefix(trial_id)
        for i in range(len(parts), chunks.get(prefix, 0)):  # a shorter note: the old chunks past it emptied
            storage.set_study_system_attr(study_id, f"{prefix}{i}", "")
        written += 1
    return written
