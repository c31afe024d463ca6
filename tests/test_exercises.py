"""Exercises: a stub falls back to the package's reference, a written body runs, self-checks say which is not done."""

from __future__ import annotations

import importlib.util
import textwrap

import pytest
import torch

from metalearn_sep import course
from metalearn_sep.exercises import EXERCISES, STUB, exercise, is_stub
from metalearn_sep.metrics import si_sdr


def load(tmp_path, body: str):
    """``my_si_sdr`` defined with ``body`` in a real file (so its source can be read), decorated for chapter 00."""
    path = tmp_path / f"student_{abs(hash(body))}.py"
    path.write_text(textwrap.dedent(f'''
        from metalearn_sep import course

        @course.exercise("00")
        def my_si_sdr(estimate, reference, eps=1e-8):
            {body}
    '''))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.my_si_sdr


def pair():
    g = torch.Generator().manual_seed(0)
    reference = torch.randn(2, 800, generator=g)
    return reference + 0.1 * torch.randn(2, 800, generator=g), reference


def test_a_stub_runs_the_reference_and_says_so_once(tmp_path, capsys):
    fn = load(tmp_path, STUB)
    assert is_stub(fn) and not fn.done
    estimate, reference = pair()
    torch.testing.assert_close(fn(estimate, reference), si_sdr(estimate, reference))
    fn(estimate, reference)
    assert capsys.readouterr().out.count("exercise 1, my_si_sdr, is not done yet") == 1


def test_a_written_body_runs_the_students_code(tmp_path):
    fn = load(tmp_path, "return estimate.sum(-1) * 0 + 42.0")
    assert fn.done
    assert fn(*pair()).tolist() == [42.0, 42.0]


def test_the_self_check_of_a_stub_runs_its_cell_silently_and_says_what_is_not_done(tmp_path, capsys):
    fn = load(tmp_path, STUB)
    with course.self_check(fn):
        estimate, reference = pair()
        course.check_close(fn(estimate, reference), si_sdr(estimate, reference), "my_si_sdr")
        course.confirm("all good")
        defined_inside = True
    out = capsys.readouterr().out
    assert defined_inside and "✓" not in out
    assert out.splitlines()[-1].startswith("exercise 1 (my_si_sdr) is not done yet: fill it in above")


def test_the_self_check_of_a_written_body_compares_and_names_the_difference(tmp_path, capsys):
    right = load(tmp_path, "from metalearn_sep.metrics import si_sdr\n            return si_sdr(estimate, reference, eps=eps)")
    with course.self_check(right):
        course.check_close(right(*pair()), si_sdr(*pair()), "my_si_sdr")
    assert capsys.readouterr().out == "✓ my_si_sdr: matches the package.\n"
    wrong = load(tmp_path, "return estimate.pow(2).sum(-1)")
    with pytest.raises(AssertionError, match=r"my_si_sdr: 2 of 2 values differ; first at index \(0,\)"):
        with course.self_check(wrong):
            course.check_close(wrong(*pair()), si_sdr(*pair()), "my_si_sdr")


def test_an_unknown_exercise_is_named():
    def mystery() -> None: ...

    with pytest.raises(ValueError, match=r"Chapter 02 has no exercise 'mystery' \(its exercises: branch_padding, frame_count, predicted_spectrogram_"):
        exercise("02")(mystery)


def test_every_exercise_is_in_its_chapter_decorated_and_self_checked():
    import json
    from pathlib import Path

    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    for chapter, items in EXERCISES.items():
        (path,) = notebooks.glob(f"{chapter}_*.ipynb")
        code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
        for item in items:
            assert f'@course.exercise("{chapter}")\ndef {item.name}(' in code, (chapter, item.name)
            assert any(item.name in line for line in code.splitlines() if "course.self_check(" in line), (chapter, item.name)


def test_every_chapter_asks_three_exercises_or_more_one_a_prediction():
    assert sorted(EXERCISES) == ["00", "01", "02", "03", "04", "05", "06", "07"]
    for chapter, items in EXERCISES.items():
        assert len(items) >= 3 and [i.number for i in items] == list(range(1, len(items) + 1)), chapter
        assert any(i.name.startswith("predicted_") for i in items), chapter
