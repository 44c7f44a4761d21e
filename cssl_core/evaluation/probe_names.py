"""The downstream probes' names, importable without torch or scikit-learn.

Why a module of its own: params.yaml is validated as a whole before every stage command (cssl_core.config,
`cssl check`), and `eval.probes` must name registered probes; the probes themselves (cssl_core.evaluation
.registry) need torch and scikit-learn, which most stages never import. tests/cssl_core/evaluation/
test_registry.py holds these names and the registry together.
"""

from __future__ import annotations

# what eval.probes may list, in the order of cssl_core.evaluation.registry.PROBES
PROBE_NAMES = ("linear", "attentive", "token")
# the reference probe evaluate@init adds on raw downsampled pixels (what pretraining must beat); not selectable
REFERENCE_PROBE = "pixels"
