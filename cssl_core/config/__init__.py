"""One typed, validated view of params.yaml: `ProjectConfig.from_params(params)`.

Why: every stage used to index the raw params dict and validate its own keys deep inside, so a typo or an
inconsistent schedule surfaced as a traceback (or a missing path) when DVC reached the stage that read it,
after everything upstream had run. Built once before any work (`cssl check`, and every stage command), it
refuses a bad params.yaml with one line, `params.yaml <key.path>: <bad value> is not allowed: <what to do>`
(ConfigError), and reuses the validators the stages themselves run, so the two cannot disagree.

One file per section; cssl_core.config.project ties them together and checks what lies between sections.
The rules the stages share with it live in cssl_core (config/quality.py, privacy/settings.py, replay/release.py
keep_labels, demo SOURCES, strategies/options.py); tasks/ imports them from there, never the other way round
(tests/test_layers.py). Nothing here imports torch, MONAI or scikit-learn: every stage command runs this first.
"""

from cssl_core.config.errors import ConfigError
from cssl_core.config.load import load_params
from cssl_core.config.project import ProjectConfig

__all__ = ["ConfigError", "ProjectConfig", "load_params"]
