"""The app's chart builders (app/charts.py): plain data in, the intended Altair spec out."""

from __future__ import annotations

import math

from app import charts
from lstm_core.evaluation.baselines import Baseline
from lstm_core.training.events import EvalEvent, StepEvent


def step(n: int, loss: float) -> StepEvent:
    return StepEvent(
        epoch=1, step=n, total_steps=5000, loss=loss, learning_rate=0.001, tokens_per_s=1.0, elapsed_s=n, eta_s=0.0
    )


def test_smoothing_is_a_bias_corrected_moving_average():
    assert charts.smooth([4.0, 4.0, 4.0]) == [4.0, 4.0, 4.0]  # no pull towards zero at the start
    smoothed = charts.smooth([0.0, 10.0], weight=0.5)
    assert smoothed == [0.0, 5.0 / 0.75]  # average 0.5 * 0 + 0.5 * 10, divided by 1 - 0.5 ** 2


def test_the_loss_frame_thins_long_runs_but_keeps_the_newest_step_and_every_evaluation():
    events = [step(n, 10.0 / n) for n in range(1, 5001)]
    events += [EvalEvent(epoch=1, step=n, val_loss=1.0, perplexity=math.e, best=True) for n in (1000, 5000)]
    frame = charts.loss_frame(events)
    raw = frame[frame.series == "training (raw)"]
    assert len(raw) <= charts.MAX_POINTS and raw.step.max() == 5000
    assert frame[frame.series == "validation"].step.tolist() == [1000, 5000]


def test_candidates_keep_their_order_with_the_rest_last_in_grey():
    spec = charts.candidates_chart(["than", "thou", "(rest)"], [0.3, 0.2, 0.5], rest_label="(rest)").to_dict()
    assert spec["encoding"]["y"]["sort"] == ["than", "thou", "(rest)"]
    kinds = {row["word"]: row["kind"] for row in next(iter(spec["datasets"].values()))}
    assert kinds == {"than": "word", "thou": "word", "(rest)": "rest"}
    assert spec["encoding"]["color"]["scale"]["range"][1] != charts.ACCENT


def evaluation(n: int, perplexity: float) -> EvalEvent:
    return EvalEvent(epoch=1, step=n, val_loss=math.log(perplexity), perplexity=perplexity, best=False, elapsed_s=n / 2)


PLAYS = [
    Baseline(2, "bigram", "bigram (Kneser-Ney)", 283.3, 10),
    Baseline(0, "uniform", "uniform", 7025.0, 10),
    Baseline(5, "5-gram", "5-gram (Kneser-Ney)", 263.1, 10),
]


def test_baselines_are_labelled_rules_on_the_log_axis_of_the_evaluations():
    spec = charts.perplexity_chart([evaluation(100, 400.0), evaluation(200, 150.0)], PLAYS).to_dict()
    rules = [layer for layer in spec["layer"] if layer["mark"]["type"] == "rule"]
    texts = [layer for layer in spec["layer"] if layer["mark"]["type"] == "text"]
    assert len(rules) == 1 and len(texts) == 4  # above and below their rules, each on its halo
    halos = [layer for layer in texts if "stroke" in layer["mark"]]
    assert len(halos) == 2 and spec["layer"].index(halos[-1]) < min(
        spec["layer"].index(t) for t in texts if t not in halos
    )
    for layer in [spec["layer"][0], *rules, *texts]:
        assert layer["encoding"]["y"]["scale"] == {"type": "log", "domain": [100.0, 10000.0]}
    rows = spec["datasets"][rules[0]["data"]["name"]]
    assert {row["text"] for row in rows} == {"5-gram (Kneser-Ney): 263", "bigram (Kneser-Ney): 283", "uniform: 7,025"}
    assert charts.perplexity_chart([evaluation(100, 400.0)]).to_dict()["layer"][0]["mark"]["type"] == "line"


def label_pixels(labels, domain, height=280):
    """Each label's near edge, in pixels up from the chart's bottom."""
    per_decade = height / math.log10(domain[1] / domain[0])
    return {row.baseline: math.log10(row.label_y / domain[0]) * per_decade for row in labels.itertuples()}


def test_labels_keep_off_the_newest_evaluation_and_off_each_other():
    domain = [100.0, 10000.0]
    # The run is at 270: below the bigram, not yet below the 5-gram.
    labels = charts.baseline_labels(PLAYS, 270.0, domain, 280).set_index("baseline", drop=False)
    assert labels["above"].to_dict() == {"bigram (Kneser-Ney)": True, "uniform": True, "5-gram (Kneser-Ney)": False}
    assert labels.loc["bigram (Kneser-Ney)", "label_y"] > 283.3 and labels.loc["5-gram (Kneser-Ney)", "label_y"] < 263.1
    # At 400 both n-grams are ahead: both labels go below their rules, the 5-gram's under the bigram's.
    labels = charts.baseline_labels(PLAYS, 400.0, domain, 280)
    pixels = label_pixels(labels, domain)
    assert pixels["bigram (Kneser-Ney)"] - pixels["5-gram (Kneser-Ney)"] >= charts.LABEL_HEIGHT
    # Before any evaluation every label is above its rule, stacked where the rules are close.
    labels = charts.baseline_labels(PLAYS, None, domain, 280)
    pixels = label_pixels(labels, domain)
    assert labels["above"].all()
    assert pixels["bigram (Kneser-Ney)"] - pixels["5-gram (Kneser-Ney)"] >= charts.LABEL_HEIGHT
    assert pixels["uniform"] > pixels["bigram (Kneser-Ney)"] + charts.LABEL_HEIGHT


def test_compared_runs_are_thinned_per_run_keeping_the_first_and_newest_evaluation():
    long = [evaluation(n, 1000.0 / n) for n in range(1, 2001)]
    frame = charts.runs_frame([("long", long), ("short", long[:3])])
    runs = dict(tuple(frame.groupby("run")))
    assert len(runs["long"]) <= charts.MAX_POINTS and runs["long"].step.iloc[[0, -1]].tolist() == [1, 2000]
    assert runs["short"].step.tolist() == [1, 2, 3]
    assert runs["long"].time.iloc[-1] == 1000 / 60  # 2000 steps at half a second each, in minutes
