"""Keep tests away from the developer's own stores: MLflow, Prefect home and the key secret go to temp dirs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="cssl-tests-"))
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{_SESSION_DIR / 'mlflow.db'}")
os.environ.setdefault("PREFECT_HOME", str(_SESSION_DIR / "prefect"))
os.environ.setdefault("CSSL_SECRET_FILE", str(_SESSION_DIR / "secret.key"))
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# session fixtures s3_server, postgres_server, mlflow_server: real servers on 127.0.0.1, started on first use
pytest_plugins = ("tests.servers",)
