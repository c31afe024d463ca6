"""SiSEC evaluation of MUSDB18 (``evaluate --musdb``): museval's numbers, resuming, the report, one-line errors.

The MUSDB18 folders are built here from synthetic-band songs (MUSDB18-HQ wav folders and
``.stem.mp4`` files written with stempeg/ffmpeg); nothing is downloaded. museval costs
seconds per second of audio, so the songs are short and museval runs as few times as the
checks allow.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import statistics
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from metalearn_sep import SOURCES
from metalearn_sep import evaluate as evaluation
from metalearn_sep import sisec
from metalearn_sep.__main__ import main
from metalearn_sep.checkpoint import model_state, save_checkpoint
from metalearn_sep.data.musdb import MusdbDataset
from metalearn_sep.data.published import PUBLISHED
from metalearn_sep.separate import separate
from musdb_fixtures import write_band_hq, write_band_stems
from tiny_models import tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

HQ_SONGS = {"test/Band - One": 1.0, "test/Band - Two": 3.0}
STEM_SONGS = {"test/Band - Four": 44050 / 44100, "test/Band - Two": 2.0}
"""``Band - Four`` is under 1 s, but AAC pads its streams to 45056 samples: museval scores
one whole 1 s frame of it, with the estimate zero-padded, and so must ``fast``.

museval costs seconds per 1 s frame on one core, so it scores three frames in all here:
``Band - Four`` through ``evaluate`` and through ``eval_mus_track`` directly, and
``Band - One``. Every instrument plays in these songs: museval refuses a source silent
over a whole track."""


@pytest.fixture(autouse=True)
def no_musdb(monkeypatch):
    monkeypatch.delenv("MUSDB_PATH", raising=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """The checkpoint of a tiny Meta-TasNet, a MUSDB18-HQ folder and a MUSDB18 (STEMS) folder."""
    root = tmp_path_factory.mktemp("evaluate")
    return {"checkpoint": save_checkpoint(model_state(tiny_model()), root / "tiny.pt"),
            "hq": write_band_hq(root / "hq", HQ_SONGS), "stems": write_band_stems(root / "stems", STEM_SONGS)}


class Separator:
    """``separate`` as the evaluation calls it, recording each track's estimates ``(4, 2, T)``.

    The tiny untrained model's stems are near silent (SDR near 0 dB everywhere), so a quarter of
    the mixture is added to them: SDRs then differ between sources and frames, which makes the
    comparisons with museval mean something.
    """

    def __init__(self, fail_at: int | None = None) -> None:
        self.estimates: list[torch.Tensor] = []
        self.fail_at = fail_at

    def __call__(self, model, mixture, rate, **options) -> torch.Tensor:
        if len(self.estimates) == self.fail_at:
            raise KeyboardInterrupt
        stems = separate(model, mixture, rate, **options) + mixture / 4
        self.estimates.append(stems)
        return stems


def run(data: dict[str, Path], layout: str, out: Path, **options) -> tuple[evaluation.Evaluation, Separator]:
    recorder = Separator()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluation, "separate", recorder)
        done = evaluation.evaluate_musdb(data["checkpoint"], data[layout], out_dir=out, device="cpu", progress=False, **options)
    return done, recorder


@pytest.fixture(scope="module")
def museval_run(data, tmp_path_factory):
    """museval on the first stem file, in a worker process (``workers=2``)."""
    return run(data, "stems", tmp_path_factory.mktemp("museval") / "out", workers=2, tracks=1)


@pytest.fixture(scope="module")
def fast_run(data, tmp_path_factory):
    return run(data, "hq", tmp_path_factory.mktemp("fast") / "out", fast=True)


@pytest.fixture(scope="module")
def stems_run(data, tmp_path_factory):
    return run(data, "stems", tmp_path_factory.mktemp("stems") / "out", fast=True)


def tracks(root: Path) -> dict:
    """The musdb track objects of a folder, by name."""
    return {track.name: track for track in MusdbDataset(root, "test", segment=None).tracks}


def as_estimates(stems: torch.Tensor) -> dict[str, np.ndarray]:
    return {name: stems[k].T.double().numpy() for k, name in enumerate(SOURCES)}


def scores(path: Path, metrics=("SDR",)) -> dict[str, np.ndarray]:
    return sisec.read_track_scores(path, metrics)


def museval_json(track, estimates: dict[str, np.ndarray], out: Path) -> Path:
    """museval's own ``eval_mus_track`` with ``output_dir``: the file it writes."""
    import museval

    museval.eval_mus_track(track, estimates, output_dir=str(out))
    return out / track.subset / f"{track.name}.json"


# ---------------------------------------------------------------- museval's numbers


def test_museval_mode_writes_what_museval_writes(data, museval_run, tmp_path):
    done, recorder = museval_run
    assert done.scored == ["Band - Four"] and len(recorder.estimates) == 1
    track = tracks(data["stems"])["Band - Four"]
    theirs = museval_json(track, as_estimates(recorder.estimates[0]), tmp_path).read_text()
    ours = sisec.track_json_path(done.out_dir, "test", "Band - Four").read_text()
    assert ours == theirs  # byte for byte
    assert {t["name"] for t in json.loads(ours)["targets"]} == set(SOURCES)


def test_fast_sdr_equals_museval_on_stem_files(museval_run, stems_run):
    (slow, slow_estimates), (fast, fast_estimates) = museval_run, stems_run
    assert fast.scored == ["Band - Four", "Band - Two"]
    assert torch.equal(slow_estimates.estimates[0], fast_estimates.estimates[0])  # the same estimates in both runs
    theirs = scores(sisec.track_json_path(slow.out_dir, "test", "Band - Four"))["SDR"]
    ours = scores(sisec.track_json_path(fast.out_dir, "test", "Band - Four"))["SDR"]
    assert ours.shape == theirs.shape == (4, 1) and np.isfinite(theirs).all()
    np.testing.assert_allclose(ours, theirs, atol=0.01, rtol=0)
    assert np.ptp(theirs) > 0.5  # the estimates are not trivially scored


def test_fast_sdr_equals_museval_on_wav_folders(data, fast_run, tmp_path):
    done, recorder = fast_run
    assert done.scored == ["Band - One", "Band - Two"]
    track = tracks(data["hq"])["Band - One"]
    theirs = scores(museval_json(track, as_estimates(recorder.estimates[0]), tmp_path))["SDR"]
    ours = scores(sisec.track_json_path(done.out_dir, "test", "Band - One"))["SDR"]
    assert ours.shape == theirs.shape == (4, 1)
    np.testing.assert_allclose(ours, theirs, atol=0.01, rtol=0)


# ---------------------------------------------------------------- aggregate and report


def by_hand(out: Path, names: list[str], metric: str) -> list[float]:
    """The median over tracks of each track's median over its non-NaN frames, per source, from the JSONs."""
    medians = []
    for name in names:
        document = json.loads(sisec.track_json_path(out, "test", name).read_text())
        frames = {t["name"]: [f["metrics"][metric] for f in t["frames"]] for t in document["targets"]}
        medians.append([statistics.median([v for v in frames[s] if not math.isnan(v)]) for s in SOURCES])
    return [statistics.median(column) for column in zip(*medians)]


@pytest.mark.parametrize("mode", ["museval", "fast"])
def test_the_aggregate_is_the_median_over_tracks_of_the_median_over_frames(mode, museval_run, fast_run):
    """museval's four metrics of one stem file; the fast SDR of the wav songs (1 and 3 frames)."""
    done = (museval_run if mode == "museval" else fast_run)[0]
    metrics = sisec.METRICS if mode == "museval" else ("SDR",)
    assert set(done.result.scores) == set(metrics) and len(done.result.tracks) == (1 if mode == "museval" else 2)
    rows = {row["metric"]: row for row in csv.DictReader(done.files["csv"].open()) if row["method"] == "this checkpoint"}
    for metric in metrics:
        expected = by_hand(done.out_dir, done.result.tracks, metric)
        np.testing.assert_allclose(done.result.scores[metric], expected, atol=1e-9)
        np.testing.assert_allclose([float(rows[metric][s]) for s in SOURCES], expected, atol=1e-4)
        assert float(rows[metric]["mean"]) == pytest.approx(np.mean(expected), abs=1e-4)


def test_the_report_shows_the_published_rows_with_their_citations(fast_run):
    done = fast_run[0]
    assert {p.name for p in done.out_dir.iterdir()} == {"test", "evaluation.json", "report.md", "report.csv", "boxplot.png"}
    text = done.files["markdown"].read_text()
    rows = {row["method"]: row for row in csv.DictReader(done.files["csv"].open()) if row["method"] != "this checkpoint"}
    assert [p.method for p in PUBLISHED] == ["Meta-TasNet", "Open-Unmix", "MMDenseLSTM"] == list(rows)
    assert PUBLISHED[0].sdr == {"drums": 5.91, "bass": 5.58, "other": 4.19, "vocals": 6.40}
    assert round(PUBLISHED[0].mean, 2) == 5.52
    for k, p in enumerate(PUBLISHED, 1):
        assert f"| {p.method} [{k}] | " + " | ".join(f"{p.sdr[s]:.2f}" for s in SOURCES) in text
        assert f"{k}. {p.method}: {p.citation}" in text and p.citation in rows[p.method]["reference"]
        assert [float(rows[p.method][s]) for s in SOURCES] == [p.sdr[s] for s in SOURCES]
    assert "| Meta-TasNet [1] |" in done.summary and "this checkpoint" in done.summary
    assert done.files["boxplot"].read_bytes().startswith(b"\x89PNG")


# ---------------------------------------------------------------- resuming


def test_an_interrupted_evaluation_resumes_without_scoring_a_track_again(data, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(evaluation, "separate", Separator(fail_at=1))
    with pytest.raises(KeyboardInterrupt):
        evaluation.evaluate_musdb(data["checkpoint"], data["hq"], out_dir=out, fast=True, device="cpu", progress=False)
    first = sisec.track_json_path(out, "test", "Band - One")
    assert sorted(p.name for p in (out / "test").iterdir()) == ["Band - One.json"]
    assert not (out / "report.md").exists() and sisec.is_complete(first)
    before = first.read_bytes()

    scored = []
    score = evaluation.score_fast
    monkeypatch.setattr(evaluation, "score_fast", lambda track, *a: (scored.append(track.name), score(track, *a))[1])
    recorder = Separator()
    monkeypatch.setattr(evaluation, "separate", recorder)
    done = evaluation.evaluate_musdb(data["checkpoint"], data["hq"], out_dir=out, fast=True, device="cpu", progress=False)
    assert scored == done.scored == ["Band - Two"] and len(recorder.estimates) == 1
    assert first.read_bytes() == before and done.result.tracks == ["Band - One", "Band - Two"]


def test_an_evaluation_with_other_settings_is_refused_in_the_same_folder(fast_run, data):
    out = fast_run[0].out_dir
    with pytest.raises(ValueError, match=r"holds another evaluation \(metric 'framewise_sdr' there, 'museval' now\)"):
        evaluation.evaluate_musdb(data["checkpoint"], data["hq"], out_dir=out, device="cpu", progress=False)


# ---------------------------------------------------------------- command line


def run_cli(capsys, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_prints_the_table_and_writes_beside_the_checkpoint(data, capsys):
    code, out, _ = run_cli(capsys, "evaluate", data["checkpoint"], "--musdb", data["hq"], "--tracks", 1, "--fast", "--device", "cpu")
    folder = data["checkpoint"].parent / "tiny-musdb-test-fast"
    assert code == 0 and folder == evaluation.default_out_dir(data["checkpoint"], "test", fast=True)
    lines = out.splitlines()
    assert lines[0] == "tiny.pt on MUSDB18 test (MUSDB18-HQ), 1 track"
    assert lines[3].startswith("| **this checkpoint** |") and lines[4].startswith("| Meta-TasNet [1] | 5.91 | 5.58 | 4.19 | 6.40 | 5.52 |")
    assert lines[-1] == f"Scored 1 track(s); scores and report.md, report.csv, boxplot.png in {folder}"
    assert sorted(p.name for p in (folder / "test").iterdir()) == ["Band - One.json"]
    code, out, _ = run_cli(capsys, "evaluate", data["checkpoint"], "--musdb", data["hq"], "--tracks", 2, "--fast", "--device", "cpu")
    assert code == 0 and "Scored 1 track(s) (1 already scored)" in out


def bad_inputs(data: dict[str, Path], tmp: Path) -> dict[str, tuple[list, str]]:
    """Each case: the arguments after ``evaluate``, and the one line expected."""
    write_band_hq(tmp / "no_test", {"train/Band - One": 1.0})
    uneven = tmp / "uneven"
    shutil.copytree(data["hq"], uneven)
    bass = uneven / "test" / "Band - Two" / "bass.wav"
    audio, rate = sf.read(bass)
    sf.write(bass, audio[:-100], rate, subtype="PCM_16")
    torch.save({"weights": torch.zeros(3)}, tmp / "foreign.pt")
    checkpoint = data["checkpoint"]
    return {
        "no test/": ([checkpoint, "--musdb", tmp / "no_test"],
                     f"error: {tmp / 'no_test'} has no test/ folder: a MUSDB18 folder holds train/ and test/."),
        "HQ read as stems": ([checkpoint, "--musdb", data["hq"], "--layout", "stems"],
                             f"error: {data['hq'] / 'test'} holds MUSDB18-HQ wav folders, not .stem.mp4 files: pass is_wav=True."),
        "uneven lengths": ([checkpoint, "--musdb", uneven],
                           "error: Track 'Band - Two' has a mixture and stems of different lengths (mixture 132300, drums "
                           "132300, bass 132200, other 132300, vocals 132300 samples); a MUSDB18 track's files all have the same length."),
        "foreign checkpoint": ([tmp / "foreign.pt", "--musdb", data["hq"]], f"error: {tmp / 'foreign.pt'} "),
        "options without MUSDB18": ([checkpoint, "--workers", 2, "--fast"],
                                    "error: --workers, --out, --fast apply to MUSDB18 only: pass --musdb PATH or set $MUSDB_PATH."),
    }


@pytest.mark.parametrize("case", ["no test/", "HQ read as stems", "uneven lengths", "foreign checkpoint", "options without MUSDB18"])
def test_bad_input_fails_in_one_sentence_and_writes_nothing(case, data, tmp_path, capsys):
    argv, message = bad_inputs(data, tmp_path)[case]
    out = tmp_path / "scores"
    code, _, err = run_cli(capsys, "evaluate", *argv, "--out", out)
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 1 and "Traceback" not in err and len(lines) == 1, err
    assert lines[0] == message or (message.endswith(" ") and lines[0].startswith(message)), lines[0]
    assert not out.exists()
