"""Progbar: Keras 3's text, in static (file/pipe) and dynamic (terminal) modes."""

from __future__ import annotations

import io
import re

import pytest

from polykeras.utils import progbar as progbar_module
from polykeras.utils.progbar import (Progbar, format_eta, format_time_per_unit, format_value,
                                     is_dynamic_display)

ANSI = re.compile(r"\x1b\[[0-9;]*m")
BAR = "━" * 20


class FakeClock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(progbar_module, "_now", c)
    return c


def run_epoch(bar: Progbar, clock: FakeClock, steps: int, step_time: float, values):
    """Drive ``bar`` like a training loop: one update per step, then finalize."""
    for step in range(1, steps + 1):
        clock.t += step_time
        bar.update(step, values)
    bar.update(steps, values, finalize=True)


# -- formatting helpers -----------------------------------------------------------------
@pytest.mark.parametrize("value, text", [(0.345123, "0.3451"), (12.0, "12.0000"), (-0.5, "-0.5000"),
                                         (1.2345e-4, "1.2345e-04"), (0.0, "0.0000e+00"), (-2e-5, "-2.0000e-05"),
                                         (float("nan"), "nan"), ("text", "text")])
def test_format_value_like_keras(value, text):
    assert format_value(value) == text


@pytest.mark.parametrize("seconds, text", [(0.006, " 6ms/step"), (2.4, " 2s/step"), (5e-6, " 5us/step"),
                                           (0, " 0s/step"), (0.0015, " 2ms/step")])
def test_format_time_per_unit(seconds, text):
    assert format_time_per_unit(seconds, "step") == text


@pytest.mark.parametrize("seconds, text", [(30.2, "30s"), (125, "2:05"), (3725, "1:02:05")])
def test_format_eta(seconds, text):
    assert format_eta(seconds) == text


# -- static display (stdout is a file or a pipe) --------------------------------------------
def test_static_prints_only_the_final_line(clock, capsys):
    bar = Progbar(469, dynamic_display=False, stateful_metrics=["accuracy", "loss"])
    clock.t += 0.5
    bar.update(1, [("accuracy", 0.5), ("loss", 1.0)])
    assert capsys.readouterr().out == ""  # nothing mid-epoch: no partial lines in log files
    for step in range(2, 469):
        clock.t += 0.006
        bar.update(step, [("accuracy", 0.9), ("loss", 0.35)])
    assert capsys.readouterr().out == ""
    clock.t += 0.006
    bar.update(469, [("accuracy", 0.90123), ("loss", 0.34512)], finalize=True)
    # 3.3 s in all; 2.8 s over the 468 steps after the first one -> 6 ms/step
    assert capsys.readouterr().out == f"469/469 {BAR} 3s 6ms/step - accuracy: 0.9012 - loss: 0.3451\n"


def test_static_counts_are_right_aligned_to_the_target_width(clock, capsys):
    bar = Progbar(1000, dynamic_display=False)
    bar.update(7, finalize=True)
    assert capsys.readouterr().out.startswith("   7/1000 ━━")


def test_unknown_target(clock, capsys):
    bar = Progbar(None, dynamic_display=False)
    bar.update(12, [("loss", 0.5)], finalize=True)
    assert capsys.readouterr().out == "     12/Unknown 0s 0s/step - loss: 0.5000\n"


def test_verbose_2_prints_one_line_at_the_end(clock, capsys):
    bar = Progbar(469, verbose=2, dynamic_display=True)
    clock.t += 0.5
    bar.update(1, [("accuracy", 0.5)])
    for step in range(2, 469):
        clock.t += 0.006
        bar.update(step, [("accuracy", 0.9)])
    assert capsys.readouterr().out == ""
    clock.t += 0.006
    bar.update(469, [("accuracy", 0.90123), ("loss", 0.34512)], finalize=True)
    assert capsys.readouterr().out == "469/469 - 3s - 6ms/step - accuracy: 0.9012 - loss: 0.3451\n"


def test_verbose_0_is_silent(clock, capsys):
    run_epoch(Progbar(10, verbose=0, dynamic_display=True), clock, 10, 0.1, [("loss", 1.0)])
    assert capsys.readouterr().out == ""


# -- dynamic display (a terminal) -----------------------------------------------------------
def test_dynamic_redraws_in_place_with_eta_then_final_time(clock, capsys):
    bar = Progbar(10, dynamic_display=True, stateful_metrics=["loss"])
    clock.t += 1.0
    bar.update(1, [("loss", 2.0)])
    clock.t += 1.0
    bar.update(2, [("loss", 1.5)])
    out = capsys.readouterr().out
    frames = out.split("\r")[1:]
    assert len(frames) == 2 and "\n" not in out
    assert "\x1b[1m" in frames[0] and "\x1b[32m" in frames[1]  # Keras's bold count, green bar
    # 2/10 done: 4 of 20 bar cells; ETA 8 steps x 1 s
    assert ANSI.sub("", frames[1]) == " 2/10 " + "━" * 20 + " 8s 1s/step - loss: 1.5000"
    for step in range(3, 11):
        clock.t += 1.0
        bar.update(step, [("loss", 1.0)])
    bar.update(10, [("loss", 0.9), ("val_loss", 1.1)], finalize=True)
    last = capsys.readouterr().out.split("\r")[-1]
    assert last.endswith("\n")
    assert ANSI.sub("", last) == "10/10 " + "━" * 20 + " 10s 1s/step - loss: 0.9000 - val_loss: 1.1000\n"


def test_dynamic_redraw_is_throttled_by_interval(clock, capsys):
    bar = Progbar(1000, dynamic_display=True, interval=0.05)
    for step in range(1, 101):  # 100 steps within 0.099 s
        clock.t += 0.001
        bar.update(step, [("loss", 1.0)])
    frames = capsys.readouterr().out.count("\r")
    assert frames == 2  # the first step, then once after 0.05 s


def test_dynamic_pads_a_shorter_line(clock, capsys):
    bar = Progbar(10, dynamic_display=True, stateful_metrics=["loss"], interval=0)
    bar.update(1, [("loss", 123456.0)])
    first = capsys.readouterr().out
    bar.update(2, [("loss", 1.0)])
    second = capsys.readouterr().out
    width = len(ANSI.sub("", first).lstrip("\r"))
    assert len(ANSI.sub("", second).lstrip("\r")) == width  # blanks out the leftover characters
    assert second.endswith(" ")


def test_stateless_values_are_averaged_like_keras(clock, capsys):
    bar = Progbar(10, dynamic_display=True, interval=0)
    bar.update(1, [("loss", 1.0)])
    bar.update(3, [("loss", 4.0)])  # weight 2 (two steps)
    out = capsys.readouterr().out.split("\r")[-1]
    assert "loss: 3.0000" in out  # (1*1 + 4*2) / 3


def test_redraw_due_and_advance_are_the_cheap_path(clock):
    static = Progbar(10, dynamic_display=False)
    assert not static.redraw_due(1) and not static.redraw_due(10)
    bar = Progbar(10, dynamic_display=True, interval=0.05)
    assert bar.redraw_due(1)  # nothing drawn yet
    bar.update(1)
    assert not bar.redraw_due(2)
    clock.t += 0.06
    assert bar.redraw_due(2)
    assert bar.redraw_due(10)  # the last step always redraws
    bar.advance(2)
    assert bar._seen_so_far == 2


def test_first_step_is_left_out_of_the_step_time(clock, capsys):
    bar = Progbar(3, verbose=2)
    clock.t += 10.0  # a slow first step (compilation)
    bar.advance(1)
    clock.t += 0.002
    bar.advance(2)
    clock.t += 0.002
    bar.update(3, finalize=True)
    assert capsys.readouterr().out == "3/3 - 10s - 2ms/step\n"


def test_add_advances_by_n(clock, capsys):
    bar = Progbar(4, verbose=2)
    bar.add(2)
    bar.add(2, [("loss", 0.25)])
    assert capsys.readouterr().out.startswith("4/4 - ")


def test_dynamic_display_detection(monkeypatch):
    class Stream(io.StringIO):
        def __init__(self, tty):
            super().__init__()
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.delenv("PYCHARM_HOSTED", raising=False)
    monkeypatch.delitem(__import__("sys").modules, "ipykernel", raising=False)
    assert is_dynamic_display(Stream(True))
    assert not is_dynamic_display(Stream(False))
    monkeypatch.setenv("PYCHARM_HOSTED", "1")
    assert is_dynamic_display(Stream(False))
