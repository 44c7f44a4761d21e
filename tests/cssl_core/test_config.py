"""ProjectConfig: the shipped params.yaml parses, and each kind of bad params.yaml is refused with one line that
names the key path, the bad value and what is allowed."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from cssl_core.config import ConfigError, ProjectConfig
from tests.helpers import REPO_ROOT, tiny_params

REAL = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())


def edited(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    params = copy.deepcopy(REAL)
    params.pop("compare", None)  # validated on its own below; keeps every case to one build
    edit(params)
    return params


def refusal(edit: Callable[[dict[str, Any]], None]) -> str:
    with pytest.raises(ConfigError) as caught:
        ProjectConfig.from_params(edited(edit))
    line = str(caught.value)
    assert "\n" not in line and line.startswith("params.yaml ")
    return line


def setter(dotted: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(params: dict[str, Any]) -> None:
        *parents, last = dotted.split(".")
        node = params
        for key in parents:
            node = node[key]
        node[last] = value

    return edit


def swap_train_for_trian(params: dict[str, Any]) -> None:
    params["ssl"]["trian"] = params["ssl"].pop("train")


def two_cycle(params: dict[str, Any]) -> None:
    params["continual"]["stages"]["s1"]["prev"] = "s2"


CASES = [
    # (id, edit, the line's start "params.yaml <path>: <value> is not allowed: ", fragments of what is allowed)
    ("lr-fast", setter("ssl.train.lr", "fast"), "ssl.train.lr: 'fast'", ["must be a number"]),
    ("lr-negative", setter("ssl.train.lr", -0.001), "ssl.train.lr: -0.001", ["lr must be > 0"]),
    ("prev-missing", setter("continual.stages.s2.prev", "s9"), "continual.stages.s2.prev: 's9'", ["init, s1"]),
    ("two-cycle", two_cycle, "continual.stages.s1.prev: 's2'", ["s1 <- s2 <- s1 is a cycle", "init or an earlier"]),
    (
        "cohort-not-ingested",
        setter("continual.stages.s2.cohort", "site_x"),
        "continual.stages.s2.cohort: 'site_x'",
        ["ingest.cohorts", "phantom_a, phantom_b, nsclc, phantom_c"],
    ),
    (
        "window-not-applied",
        setter("continual.stages.s2.window", "bone"),
        "continual.stages.s2.window: 'bone'",
        ["window.apply", "mediastinal, lung"],
    ),
    (
        "strategy-misspelt",
        setter("ssl.strategy", "latent_replya"),
        "ssl.strategy: 'latent_replya'",
        ["finetune, joint, er, der, medcoss, latent_replay", "did you mean 'latent_replay'"],
    ),
    ("augment-bogus", setter("ssl.augment", "gpu"), "ssl.augment: 'gpu'", ["choose one of sample, batch"]),
    ("audit-fraction-range", setter("ssl.audit_fraction", 1.0), "ssl.audit_fraction: 1.0", ["1"]),
    (
        "audit-leaves-no-training",
        lambda p: (setter("ssl.val_fraction", 0.5)(p), setter("ssl.audit_fraction", 0.5)(p)),
        "ssl.audit_fraction: 0.5",
        ["leaves no patient to train on"],
    ),
    ("unknown-key", swap_train_for_trian, "ssl.trian: key 'trian'", ["ssl takes strategy, preset", "'train'"]),
    (
        "attacker-trained-on",
        setter("privacy.attacker_cohort", "phantom_b"),
        "privacy.attacker_cohort: 'phantom_b'",
        ["stage s2 trains on it", "nsclc, phantom_c"],
    ),
    (
        "release-mode-bogus",
        setter("replay.privacy.mode", "bogus"),
        "replay.privacy.mode: 'bogus'",
        ["none, noise, pool, aggregate, adversarial"],
    ),
    (
        "decoder-distillation-on-pooled-latents",
        lambda p: (
            setter("replay.privacy.mode", "pool")(p),
            setter("ssl.strategies.latent_replay.lambda_decoder", 1.0)(p),
        ),
        "ssl.strategies.latent_replay.lambda_decoder: 1.0",
        ["a latent of every patch", "set it to 0 or choose another buffer mode"],
    ),
]


@pytest.mark.parametrize(("edit", "start", "allowed"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_params_are_one_line_with_key_value_and_what_is_allowed(edit, start, allowed):
    line = refusal(edit)
    assert line.startswith(f"params.yaml {start} is not allowed: "), line
    for fragment in allowed:
        assert fragment in line, line


def test_the_shipped_params_yaml_parses_into_typed_sections():
    from cssl_core.models.config import MAEConfig
    from cssl_core.privacy import AuditConfig
    from cssl_core.replay.release import ReleaseConfig
    from cssl_core.train.config import TrainConfig

    config = ProjectConfig.from_params(copy.deepcopy(REAL))
    assert config.continual.order == ("s1", "s2") and config.continual.chain("s2") == ("s1", "s2")
    assert config.continual.stages["s2"].prev == "s1" and config.continual.stages["s2"].window == "lung"
    assert isinstance(config.ssl.train, TrainConfig) and config.ssl.train.lr == REAL["ssl"]["train"]["lr"]
    assert isinstance(config.ssl.model, MAEConfig) and config.ssl.model.img_size == config.window.size
    assert config.ssl.strategy == REAL["ssl"]["strategy"]
    assert set(config.ssl.strategies) == set(REAL["ssl"]["strategies"])
    assert isinstance(config.replay.privacy, ReleaseConfig) and isinstance(config.privacy.attack, AuditConfig)
    assert config.privacy.attack.max_rows == REAL["privacy"]["max_rows"]  # privacy.max_rows goes into the audit
    assert config.quality.cohorts["nsclc"]["on_fail"] == REAL["quality"]["on_fail"]
    assert set(config.eval.tasks) == set(REAL["eval"]["tasks"]) and config.eval.tasks["nsclc_tumor"].folds == "loo"
    assert config.compare is not None and set(config.compare.configs) == set(REAL["compare"]["configs"])
    assert config.summary().startswith("2 stages: s1 <- init, s2 <- s1; strategy latent_replay;")
    with pytest.raises(AttributeError):
        config.ssl.batch_size = 1  # frozen


def test_the_tests_tiny_params_parse():
    """tests/helpers.py tiny_params drives the e2e projects: it must stay a valid params.yaml."""
    assert ProjectConfig.from_params(tiny_params()).window.size == 32


def test_a_stage_train_override_is_named_by_its_own_path():
    line = refusal(setter("continual.stages.s2.train", {"lr": "fast"}))
    assert line.startswith("params.yaml continual.stages.s2.train.lr: 'fast' is not allowed: ")
    config = ProjectConfig.from_params(edited(setter("continual.stages.s2.train", {"epochs": 3})))
    assert config.ssl.stage_train["s2"].epochs == 3
    assert config.ssl.stage_train["s1"].epochs == REAL["ssl"]["train"]["epochs"]


def test_a_stage_can_set_its_own_augmentation():
    line = refusal(setter("continual.stages.s2.augment", "strong"))
    assert line.startswith("params.yaml continual.stages.s2.augment: 'strong' is not allowed: ")
    assert "sample" in line and "none" in line
    config = ProjectConfig.from_params(edited(setter("continual.stages.s2.augment", "none")))
    assert config.ssl.stage_augment == {"s1": config.ssl.augment, "s2": "none"}
    assert config.continual.stages["s2"].as_params()["augment"] == "none"  # DVC and the checkpoint key see it
    assert "augment" not in config.continual.stages["s1"].as_params()


def test_a_yaml_exponent_without_a_dot_is_explained():
    line = refusal(setter("ssl.train.lr", "5e-4"))  # PyYAML reads 5e-4 as a string
    assert "ssl.train.lr: '5e-4'" in line and "5.0e-4" in line


@pytest.mark.parametrize(
    ("edit", "start"),
    [
        (setter("quality.air_hu_min", [1]), "quality.air_hu_min: [1]"),  # cssl_core/config/quality.py
        (setter("privacy.gate.mode", "loud"), "privacy.gate.mode: 'loud'"),  # cssl_core/privacy/gate.py
        (setter("privacy.gate.max_ssim_p95", 1.7), "privacy.gate.max_ssim_p95: 1.7"),  # would never fail
        (setter("privacy.gate.max_reid_auc", -3), "privacy.gate.max_reid_auc: -3"),  # would fail every buffer
        (setter("privacy.attack.decoder_steps", 0), "privacy.attack.decoder_steps: 0"),  # AuditConfig
        (setter("ssl.strategies.latent_replay.bke_omega", 5), "ssl.strategies.latent_replay.bke_omega: 5"),
        (setter("ssl.model", {"patch_size": 7}), "ssl.model.patch_size: 7"),  # MAEConfig
        (setter("data.demo.phantom_a.n_patients", 0), "data.demo.phantom_a.n_patients: 0"),  # PhantomConfig
    ],
    ids=["quality", "gate", "gate-ssim-range", "gate-auc-range", "audit", "strategy-option", "model", "phantom"],
)
def test_errors_of_reused_validators_get_the_key_path(edit, start):
    assert refusal(edit).startswith(f"params.yaml {start} is not allowed: ")


def test_cross_section_mistakes():
    task = refusal(setter("eval.tasks.ggo.window", "bone"))
    assert task.startswith("params.yaml eval.tasks.ggo.window: 'bone' is not allowed: ") and "window.apply" in task
    missing = refusal(lambda p: p["quality"]["cohorts"].pop("nsclc"))
    assert missing.startswith("params.yaml quality.cohorts.nsclc: (missing) is not allowed: ")
    assert "nsclc: {}" in missing
    size = refusal(setter("window.size", 128))
    assert size.startswith("params.yaml window.size: 128 is not allowed: ") and "96px" in size
    forced = refusal(
        lambda p: (
            p["ssl"].update(strategy="medcoss"),
            p["replay"].update(selection="selective", selection_options={"protect_fraction": 0.3}),
        )
    )
    assert forced.startswith("params.yaml replay.selection_options.protect_fraction: 0.3") and "medcoss" in forced


def test_compare_runs_are_checked_as_the_params_they_would_run():
    from cssl_core.config.project import compare_problems

    assert compare_problems(copy.deepcopy(REAL)) == []
    params = copy.deepcopy(REAL)
    params["compare"]["variants"]["latent_replay_no_wkd"] = {"ssl.strategies.latent_replay.wdk": "none"}
    ProjectConfig.from_params(params)  # the pipeline itself is fine
    [problem] = compare_problems(params, only="quick")
    line = str(problem)
    assert line.startswith("params.yaml compare.variants.latent_replay_no_wkd: ") and "\n" not in line
    assert "ssl.strategies.latent_replay.wdk: key 'wdk' is not allowed" in line and "did you mean 'wkd'" in line
    assert compare_problems(params, only="privacy") == []  # that config does not run the variant


def test_a_compare_config_for_another_model_is_a_problem_of_that_config_only():
    """tiny_params' model takes 32px slices and has no nsclc_tumor task; the shipped gpu config sets window.size
    224, and a config that sets eval.tasks.nsclc_tumor.folds would create that task's block: each is that
    config's problem, the pipeline and the other configs (the shipped cpu one included) stay usable."""
    from cssl_core.config.project import compare_problems

    params = tiny_params()
    params["compare"]["configs"]["other_tasks"] = {"seeds": [0], "overrides": {"eval.tasks.nsclc_tumor.folds": 2}}
    ProjectConfig.from_params(params)
    problems = {p.path: str(p) for p in compare_problems(params)}
    assert sorted(problems) == ["compare.configs.gpu.overrides", "compare.configs.other_tasks.overrides"]
    assert "window.size: 224 is not allowed" in problems["compare.configs.gpu.overrides"]
    assert "32px" in problems["compare.configs.gpu.overrides"]
    assert (
        "params.yaml has no eval.tasks.nsclc_tumor (a setting here would create it)"
        in problems["compare.configs.other_tasks.overrides"]
    )
    assert "has no" not in problems["compare.configs.gpu.overrides"]  # every block it sets exists: not blamed
    assert compare_problems(params, only="quick") == []
    assert compare_problems(params, only="cpu") == []  # a stage's own train block is created, and allowed


def test_the_line_names_the_file_it_was_read_from_and_is_a_value_error():
    with pytest.raises(ValueError, match=r"^conf/other\.yaml ssl\.strategy: 'x' is not allowed: "):
        ProjectConfig.from_params(edited(setter("ssl.strategy", "x")), source="conf/other.yaml")


@pytest.mark.parametrize("jobs", [0, -1, "2", 1.5, True])
def test_a_compare_config_runs_a_whole_number_of_experiments_side_by_side(jobs):
    from cssl_core.config.compare import parse_compare

    block = copy.deepcopy(REAL["compare"])
    assert parse_compare(block).configs["cpu"].jobs == REAL["compare"]["configs"]["cpu"].get("jobs", 1)
    block["configs"]["quick"]["jobs"] = jobs
    with pytest.raises(ConfigError) as caught:
        parse_compare(block)
    assert caught.value.path == "compare.configs.quick.jobs" and "integer" in str(caught.value)


def test_a_compare_config_extends_another_with_its_own_variants_and_overrides_on_top():
    from cssl_core.config.compare import parse_compare

    block = copy.deepcopy(REAL["compare"])
    block["configs"]["few"] = {"extends": "cpu", "variants": ["finetune"], "overrides": {"eval.folds": 2}}
    parsed = parse_compare(block).configs
    few, cpu = parsed["few"], parsed["cpu"]
    assert few.seeds == cpu.seeds and few.jobs == cpu.jobs and few.variants == ("finetune",)
    assert dict(few.overrides) == {**cpu.overrides, "eval.folds": 2} and cpu.overrides["eval.folds"] == 4
    for extends, message in (("nope", "the name of another config"), ("few", "the name of another config")):
        block["configs"]["few"]["extends"] = extends
        with pytest.raises(ConfigError, match=message) as caught:
            parse_compare(block)
        assert caught.value.path == "compare.configs.few.extends"
    block["configs"]["few"]["extends"] = "cpu"
    block["configs"]["more"] = {"extends": "few"}
    with pytest.raises(ConfigError, match="one level only"):
        parse_compare(block)
    del block["configs"]["more"], block["configs"]["few"]["extends"]
    with pytest.raises(ConfigError) as caught:  # without a parent, seeds are required as before
        parse_compare(block)
    assert caught.value.path == "compare.configs.few.seeds"
