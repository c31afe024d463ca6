"""Recipes and the command line: config checks, train / resume / evaluate, torchrun set-up, one-line errors."""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from metalearn_sep import SOURCES
from metalearn_sep.__main__ import CHECKPOINT_NAME, main
from metalearn_sep.config import CONV_TASNET_SIZES, CONV_TASNET_STEPS, CONV_TASNET_TRAINING
from metalearn_sep.models import MetaTasNet
from metalearn_sep.recipe import TRAINING, build_model, load_recipe, parse_recipe, prepare
from metalearn_sep.train import TrainerConfig
from musdb_fixtures import write_hq

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.json"))

TINY = {
    "description": "a 2-stage Meta-TasNet small enough for a unit test",
    "model": {"class": "MetaTasNet", "stages": 2, "N": 40, "B": 16, "H": 16, "X": 2, "R": 1, "spec_channels": 16},
    "data": {"segment": 0.5, "song_seconds": 1.0, "stereo": True, "augment": True,
             "valid_songs": 2, "valid_seconds": 0.5, "statistics_examples": 4},
    "training": {"steps": 4, "batch_size": 2, "optimizer": "ranger", "lr": 0.01, "weight_decay": 5e-4,
                 "schedule": "sgdr", "schedule_period": 2, "valid_every": 2},
}
TINY_CONV = {
    "model": {"class": "ConvTasNet", "N": 16, "L": 16, "B": 8, "H": 16, "Sc": 8, "X": 1, "R": 1},
    "data": {"segment": 0.5, "song_seconds": 1.0, "valid_songs": 1, "valid_seconds": 0.5},
    "training": {"steps": 2, "batch_size": 2},
}


@pytest.fixture(autouse=True)
def no_musdb(monkeypatch):
    monkeypatch.delenv("MUSDB_PATH", raising=False)


def write(path: Path, config: dict) -> Path:
    path.write_text(json.dumps(config))
    return path


def run_cli(capsys, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    """The one ``error:`` line a failing command prints (progress bars aside), checking there is no traceback."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def changed(config: dict, section: str, key: str, value: object) -> dict:
    config = copy.deepcopy(config)
    config.setdefault(section, {})[key] = value
    return config


# ---------------------------------------------------------------- configs


def test_every_config_validates_and_builds_its_model():
    names = {path.name for path in CONFIGS}
    assert {"conv_tasnet_cpu.json", "meta_tasnet_cpu.json", "meta_tasnet_paper.json"} <= names
    counts = {"meta_tasnet_cpu.json": 2_726_428, "meta_tasnet_paper.json": 45_531_260}
    for path in CONFIGS:
        recipe = load_recipe(path)
        assert recipe.description, f"{path.name} has no description"
        assert parse_recipe(recipe.to_dict()) == recipe
        with torch.device("meta"):  # no memory, even for the paper's 45.5 M parameters
            model = build_model(recipe)
        if path.name in counts:
            assert sum(p.numel() for p in model.parameters() if p.requires_grad) == counts[path.name], path.name
    conv = load_recipe(CONFIG_DIR / "conv_tasnet_cpu.json")
    assert conv.model == {"num_sources": 4, **CONV_TASNET_SIZES["cpu"]}
    assert conv.training["steps"] == conv.training["schedule_period"] == CONV_TASNET_STEPS["cpu"]
    assert {k: conv.training[k] for k in CONV_TASNET_TRAINING["cpu"]} == CONV_TASNET_TRAINING["cpu"]
    paper = load_recipe(CONFIG_DIR / "meta_tasnet_paper.json")
    assert paper.model == MetaTasNet().config and paper.data["sample_rate"] == 32000
    assert {k: paper.training[k] for k in ("batch_size", "lr", "weight_decay", "schedule_period", "schedule_decay", "clip_grad")} == {
        "batch_size": 12, "lr": 1e-3, "weight_decay": 5e-4, "schedule_period": 200_000, "schedule_decay": 0.85, "clip_grad": 5.0}


def test_the_training_section_checks_every_trainer_setting():
    assert set(TRAINING) == {"steps", *TrainerConfig.__dataclass_fields__} - {"extra"}


def test_a_conv_tasnet_recipe_records_its_data_rate_in_the_model():
    recipe = parse_recipe(changed(TINY_CONV, "data", "sample_rate", 16000))
    with torch.device("meta"):
        assert build_model(recipe).sample_rates == [16000]
    with pytest.raises(ValueError, match=re.escape("model.sample_rate must equal data.sample_rate (16000 Hz), got 8000.")):
        parse_recipe(changed(changed(TINY_CONV, "data", "sample_rate", 16000), "model", "sample_rate", 8000))


def test_every_config_trains_a_step_with_tiny_sizes():
    """Each recipe's objective, data, statistics and Trainer settings, with the model and data shrunk."""
    tiny_sizes = {"MetaTasNet": {"N": 16, "B": 8, "H": 8, "X": 1, "R": 1, "spec_channels": 8},
                  "ConvTasNet": {"N": 16, "B": 8, "H": 16, "Sc": 8, "X": 1, "R": 1}}
    for path in CONFIGS:
        config = json.loads(path.read_text())
        config["model"].update(tiny_sizes[config["model"]["class"]])
        config["data"].update(segment=0.25, valid_songs=1, valid_seconds=0.25)
        if "statistics_examples" in config["data"]:
            config["data"]["statistics_examples"] = 2
        config["training"].update(batch_size=2, num_workers=0)
        run = prepare(parse_recipe(config), device="cpu")
        trainer = run.trainer(run.trainer_config(valid_every=1), progress=False, device="cpu")
        history = trainer.fit(1)
        assert torch.isfinite(torch.tensor(history[0]["loss"])) and "valid_mean" in history[0], path.name


@pytest.mark.parametrize(
    "config, message",
    [
        ([1, 2], "A recipe is a JSON object with sections"),
        ({**TINY, "trainig": {}}, "Unknown section 'trainig': expected one of description, model"),
        (changed(TINY, "data", "segmnet", 1.0), "Unknown key data.segmnet: expected one of sample_rate, segment"),
        (changed(TINY, "model", "hidden", 8), "Unknown key model.hidden: expected one of stages, N"),
        (changed(TINY, "model", "class", "UNet"), "model.class must be one of 'MetaTasNet', 'ConvTasNet', got 'UNet'."),
        ({"training": {}}, "model.class must be one of 'MetaTasNet', 'ConvTasNet', got None."),
        (changed(TINY, "training", "steps", "100"), "training.steps must be a positive integer, got '100'."),
        (changed(TINY, "training", "batch_size", 4.0), "training.batch_size must be a positive integer, got 4.0."),
        (changed(TINY, "training", "seed", True), "training.seed must be a non-negative integer, got True."),
        (changed(TINY, "training", "lr", 0), "training.lr must be a positive number, got 0."),
        (changed(TINY, "training", "optimizer", "sgd"), "training.optimizer must be one of 'adam', 'adamw', 'radam', 'ranger', got 'sgd'."),
        (changed(TINY, "training", "clip_grad", "5"), "training.clip_grad must be a positive number or null, got '5'."),
        (changed(TINY, "training", "schedule_decay", 1.5), "training.schedule_decay must be a number in (0, 1], got 1.5."),
        (changed(TINY, "training", "schedule_period", 0), "training.schedule_period must be a positive number of steps for the 'sgdr' schedule, got 0."),
        (changed(TINY, "data", "stereo", "yes"), "data.stereo must be true or false, got 'yes'."),
        (changed(TINY, "data", "segment", 2.0), "data.segment must be at most data.song_seconds (1.0 s), got 2.0."),
        (changed(TINY, "data", "sample_rate", 8000), "data.sample_rate must be at least the last stage's rate (16000 Hz)"),
        (changed(TINY, "model", "N", -8), "model.N must be a non-negative integer, got -8."),
        (changed(TINY, "model", "N", 41), "The model section does not build a MetaTasNet: N must be divisible by 8"),
        (changed(TINY, "model", "generated", 1), "model.generated must be true or false, got 1."),
        (changed(TINY, "objective", "lambda_sim", -1), "objective.lambda_sim must be a non-negative number, got -1."),
        (changed(TINY, "objective", "targets", ["bass"]), "Unknown key objective.targets: expected one of lambda_rec"),
        ({**TINY, "description": 3}, "description must be a string, got 3."),
        (changed(TINY_CONV, "objective", "targets", ["bass"]), "objective.targets must name one source per model output (4)"),
        (changed(TINY_CONV, "objective", "targets", ["guitar"]), "objective.targets must be a non-empty list of distinct source names"),
        (changed(TINY_CONV, "data", "statistics_examples", 8), "Unknown key data.statistics_examples"),
        (changed(TINY_CONV, "data", "stereo", True), "data.stereo must be false for a ConvTasNet unless data.augment is true"),
    ],
)
def test_a_bad_config_fails_with_one_sentence_naming_the_key(config, message):
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        parse_recipe(config)
    assert "\n" not in str(err.value) and str(err.value).endswith(".")


def test_config_files_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="Config file .*missing.json does not exist."):
        load_recipe(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text('{"model": {"class": "MetaTasNet",}}')
    with pytest.raises(ValueError, match=r"broken.json is not valid JSON: .* at line 1, column 34\."):
        load_recipe(tmp_path / "broken.json")
    with pytest.raises(ValueError, match=r"bad.json: training.lr must be a positive number, got -1\."):
        load_recipe(write(tmp_path / "bad.json", changed(TINY, "training", "lr", -1)))


# ---------------------------------------------------------------- train, resume, evaluate


def checkpoint_state(folder: Path) -> dict:
    return torch.load(folder / CHECKPOINT_NAME, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """An uninterrupted 4-step run of the tiny recipe through the CLI: its --out folder."""
    root = tmp_path_factory.mktemp("run")
    config = write(root / "tiny.json", TINY)
    assert main(["train", str(config), "--out", str(root / "full"), "--device", "cpu"]) == 0
    return root


def test_an_interrupted_and_resumed_cli_run_ends_equal_to_an_uninterrupted_one(trained, capsys):
    config, part = trained / "tiny.json", trained / "part"
    code, out, _ = run_cli(capsys, "train", config, "--out", part, "--steps", 2, "--device", "cpu")
    assert code == 0 and "Trained 2 steps" in out and f"checkpoint {part / CHECKPOINT_NAME}" in out
    torch.manual_seed(1234)  # a different global RNG state must not matter
    code, out, _ = run_cli(capsys, "train", config, "--out", part, "--resume", "--device", "cpu")
    assert code == 0 and "Trained 4 steps" in out  # the recipe's steps

    full, resumed = checkpoint_state(trained / "full"), checkpoint_state(part)
    assert resumed["step"] == full["step"] == 4
    for name, weight in full["model"].items():
        assert torch.equal(weight, resumed["model"][name]), f"{name} differs after resume"
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in full["history"]]
    assert [h.get("valid_mean") for h in resumed["history"]] == [h.get("valid_mean") for h in full["history"]]
    assert full["trainer"]["extra"]["recipe"] == parse_recipe(TINY).to_dict()


def test_resume_refuses_a_changed_recipe(trained, tmp_path, capsys):
    other = write(tmp_path / "other.json", changed(TINY, "data", "segment", 0.25))
    code, _, err = run_cli(capsys, "train", other, "--out", trained / "full", "--resume", "--steps", 5, "--device", "cpu")
    assert code == 1
    assert error_line(err) == (
        f"error: {trained / 'full' / CHECKPOINT_NAME} was written by another recipe: "
        "data.segment=0.5 in the checkpoint but 0.25 now."
    )


def test_evaluate_prints_a_table_per_source(trained, capsys):
    code, out, _ = run_cli(capsys, "evaluate", trained / "full" / CHECKPOINT_NAME, "--songs", 2, "--seconds", 1, "--device", "cpu")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].endswith("on the synthetic band's test songs (1 s at 16000 Hz, stereo), 2 songs:")
    assert lines[1].split() == ["source", "SI-SDRi", "(dB)", "SDR", "(dB)"]
    assert [line.split()[0] for line in lines[2:]] == [*SOURCES, "mean"]
    for line in lines[2:]:
        assert re.fullmatch(r"\w+ +-?\d+\.\d\d +(-?\d+\.\d\d|nan)", line), line


def test_a_conv_tasnet_recipe_trains_and_evaluates_at_its_rate(tmp_path, capsys):
    config = write(tmp_path / "conv.json", TINY_CONV)
    assert run_cli(capsys, "train", config, "--out", tmp_path / "run", "--device", "cpu")[0] == 0
    code, out, _ = run_cli(capsys, "evaluate", tmp_path / "run" / CHECKPOINT_NAME, "--songs", 1, "--seconds", 1)
    assert code == 0 and "(1 s at 8000 Hz, mono), 1 song:" in out


def test_evaluate_on_musdb_uses_its_test_songs(trained, tmp_path, capsys):
    """The SiSEC evaluation itself is tested in test_evaluate.py."""
    root = write_hq(tmp_path / "musdb", {"test/Fake - One": 1.0, "test/Fake - Two": 1.0})
    code, out, _ = run_cli(capsys, "evaluate", trained / "full" / CHECKPOINT_NAME, "--musdb", root, "--songs", 1,
                           "--fast", "--out", tmp_path / "scores")
    assert code == 0 and out.startswith(f"{CHECKPOINT_NAME} on MUSDB18 test (MUSDB18-HQ), 1 track")
    assert (tmp_path / "scores" / "test" / "Fake - One.json").is_file()


def test_train_under_torchrun_environment_starts_and_ends_a_gloo_process_group(tmp_path, monkeypatch, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(key, value)
    backends = []
    destroy = dist.destroy_process_group
    monkeypatch.setattr(dist, "destroy_process_group", lambda: (backends.append(dist.get_backend()), destroy()))
    config = write(tmp_path / "conv.json", changed(TINY_CONV, "training", "steps", 1))
    assert run_cli(capsys, "train", config, "--out", tmp_path / "run", "--device", "cpu")[0] == 0
    assert backends == ["gloo"] and not dist.is_initialized()
    assert (tmp_path / "run" / CHECKPOINT_NAME).is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "{tmp}/missing.json", "--out", "{tmp}/run"], "error: Config file {tmp}/missing.json does not exist."),
        (["train", "{tmp}/broken.json", "--out", "{tmp}/run"], "error: {tmp}/broken.json is not valid JSON: Expecting value at line 1, column 1."),
        (["train", "{tmp}/bad.json", "--out", "{tmp}/run"], "error: {tmp}/bad.json: Unknown key training.stpes: expected one of steps, batch_size, optimizer, lr, weight_decay, schedule, warmup_steps, schedule_period, schedule_decay, clip_grad, valid_every, checkpoint_every, seed, num_workers."),
        (["train", "{tmp}/tiny.json", "--out", "{tmp}/run", "--musdb", "{tmp}/nowhere"], "error: MUSDB18 folder {tmp}/nowhere does not exist or is not a folder."),
        (["train", "{tmp}/tiny.json", "--out", "{tmp}/empty", "--resume"], "error: --resume needs a run to continue, but {tmp}/empty holds no checkpoint.pt."),
        (["train", "{tmp}/tiny.json", "--out", "{tmp}/done"], "error: {tmp}/done/checkpoint.pt exists: pass --resume to continue that run, or choose another --out."),
        (["evaluate", "{tmp}/done/checkpoint.pt", "--musdb", "{tmp}/nowhere"], "error: MUSDB18 folder {tmp}/nowhere does not exist or is not a folder."),
        (["evaluate", "{tmp}/none.pt"], "error: Checkpoint {tmp}/none.pt does not exist."),
    ],
)
def test_command_line_errors_are_one_line(argv, message, trained, tmp_path, monkeypatch, capsys):
    (tmp_path / "broken.json").write_text("")
    write(tmp_path / "bad.json", {**TINY, "training": {"stpes": 4}})
    write(tmp_path / "tiny.json", TINY)
    (tmp_path / "done").symlink_to(trained / "full")
    code, _, err = run_cli(capsys, *(a.format(tmp=tmp_path) for a in argv))
    assert code == 1
    assert error_line(err) == message.format(tmp=tmp_path)


def test_musdb_path_comes_from_the_environment_when_not_given(trained, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MUSDB_PATH", str(tmp_path / "elsewhere"))
    code, _, err = run_cli(capsys, "evaluate", trained / "full" / CHECKPOINT_NAME)
    assert code == 1 and error_line(err) == f"error: MUSDB18 folder {tmp_path / 'elsewhere'} does not exist or is not a folder."


def test_torchrun_trains_a_meta_tasnet_on_two_cpu_processes(tmp_path):
    """Two gloo processes share each batch; MetaTasNet has parameters no loss reaches, which DDP must accept."""
    config = write(tmp_path / "tiny.json", changed(TINY, "training", "steps", 2))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "METALEARN_SEP_PROFILE": "ci"}
    env.pop("MUSDB_PATH", None)
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "metalearn_sep", "train", str(config), "--out", str(tmp_path / "run"), "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=90,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("Trained 2 steps") == 1  # only rank 0 prints and writes
    assert checkpoint_state(tmp_path / "run")["step"] == 2
