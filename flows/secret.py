"""Which site secret `cssl ingest` uses, settled before anything is written.

Patient and series keys are HMACs under the site secret, so a second secret splits a site's data: the
same patient gets other keys and earlier outputs no longer join. The library creates a missing secret
file on first use (cssl_core/ingest/keys.py); here the CLI makes sure that file is the intended one:

- `CSSL_KEY_SECRET`, `CSSL_SECRET_FILE` or `--secret-file`: used as given (a missing file is created).
- inside a project (cssl_core/project.py): the project's `.cssl/secret.key`, from any sub-folder too.
- outside every project, with none of those: refused, with one line saying how to proceed. Creating a
  fresh secret in whatever folder the command ran from is the accident this guards against.
"""

from __future__ import annotations

import os
from pathlib import Path

from flows.errors import CliError


def choose_secret(secret_file: Path | None = None) -> Path | None:
    """Settle `CSSL_SECRET_FILE` for this process; returns the secret file about to be created, if any."""
    from cssl_core.ingest.keys import DEFAULT_SECRET_FILE, SECRET_ENV, SECRET_FILE_ENV
    from cssl_core.project import find_project_root, not_a_project_text

    if secret_file is not None:
        os.environ[SECRET_FILE_ENV] = str(secret_file.expanduser().resolve())
    if os.environ.get(SECRET_ENV):
        return None
    if not os.environ.get(SECRET_FILE_ENV):
        root = find_project_root()
        if root is None:
            raise CliError(
                f"{not_a_project_text()}: ingest would start a new site secret here, giving the same patients "
                "other keys than your project; run it in the project folder, or name the site's secret with "
                f"--secret-file PATH (or set {SECRET_FILE_ENV} or {SECRET_ENV})"
            )
        os.environ[SECRET_FILE_ENV] = str(root / DEFAULT_SECRET_FILE)
    path = Path(os.environ[SECRET_FILE_ENV]).expanduser().resolve()
    has_secret = path.is_file() and path.read_text(encoding="utf-8").strip()
    return None if has_secret else path


def created_secret_line(path: Path) -> str:
    return (
        f"ingest: created the site secret {path}: keep it and back it up (a new secret gives every patient "
        "new keys); never commit or share it"
    )
