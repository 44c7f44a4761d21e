"""Continual strategies, one file each. Adding one = its file + its options in options.py + one line in
registry.py's STRATEGIES + a params block.

The names are imported on first use (cssl_core._lazy): `cssl_core.strategies.options` (each strategy's options
and rules) needs no torch and validates params.yaml before every stage command, training or not.
"""

from cssl_core._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "cssl_core.strategies.base": ("StageContext", "Strategy"),
        "cssl_core.strategies.der": ("DarkExperienceReplayStrategy",),
        "cssl_core.strategies.er": ("ExperienceReplayStrategy",),
        "cssl_core.strategies.finetune": ("FinetuneStrategy",),
        "cssl_core.strategies.joint": ("JointStrategy",),
        "cssl_core.strategies.latent_replay": ("LatentReplayStrategy",),
        "cssl_core.strategies.medcoss": ("MedCoSSStrategy",),
        "cssl_core.strategies.registry": ("STRATEGIES", "build_strategy"),
    },
)
