"""One typed, validated view of params.yaml: `ProjectConfig.from_params(params)`.

Why: every stage used to index the raw params dict and validate its own keys deep inside, so a typo or an
inconsistent schedule surfaced as a traceback (or a missing path) when DVC reached the stage that read it,
after everything upstream had run. Built once before any work (`cssl check`, and every stage command), it
refuses a bad params.yaml with one line, `params.yaml <key.path>: <bad value> is not allowed: <what to do>`
(ConfigError), and reuses the validators the stages themselves run, so the two cannot disagree.

One file per section; cssl_core.config.project ties them together and checks what lies between sections.
The validators of tasks/ (quality_params, privacy_audit.settings, privacy_gate.gate_settings, export.keep_labels,
demo_data.SOURCES) are imported inside the functions that reuse them.
"""

from cssl_core.config.errors import ConfigError
from cssl_core.config.project import ProjectConfig

__all__ = ["ConfigError", "ProjectConfig"]
