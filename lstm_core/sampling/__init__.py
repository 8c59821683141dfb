"""Choosing words: sampling options, log-prob processors, decoding loops and step-by-step generation.

The files follow one word's way from the model to the text::

    options.py      SamplingOptions: method, filters, word rules, beam settings, seed (+ field metadata)
    processors.py   the stages between the model's log-probs and a choice, applied in order:
                    <unk> rule -> repetition penalty -> no-repeat n-grams      (every method)
                    -> temperature -> top-k -> top-p -> min-p                  (sampling only)
    history.py      what the word rules read: the text so far, its seen words and n-grams
    shortcut.py     the same choice made on the fast path's cursor, for the lists it can follow
    decoding.py     greedy / sample / beam loops, generate(), beam_search(), Generation
    step.py         StepGenerator (step, undo, reset, regenerate) and the candidates a UI shows

Everything starts from the model's normalised log-probabilities (``model.log_probs``, or for an
LSTM model in float32 the same numbers from :mod:`lstm_core.model.fast`), never from raw logits,
so the full and the adaptive softmax behave the same. Scoring a text is an
evaluation, not sampling: it lives in :mod:`lstm_core.evaluation.scoring` (and is re-exported here).
"""

from lstm_core.evaluation.scoring import TextScore, WordScore, score
from lstm_core.sampling.decoding import (
    MAX_LENGTH,
    Generation,
    NextWordModel,
    beam_score,
    beam_search,
    generate,
    generate_next_word,
    make_generator,
    sample_index,
)
from lstm_core.sampling.history import History, NgramIndex, banned_ngram_words
from lstm_core.sampling.options import MAX_BEAM_WIDTH, Method, SamplingOptions, UnknownRule
from lstm_core.sampling.processors import (
    GREEDY_TEMPERATURE,
    MAX_TOP_K,
    MIN_P_TOLERANCE,
    PIPELINE,
    TOP_P_TOLERANCE,
    LogProbsProcessor,
    MinP,
    NoRepeatNgram,
    OptionProcessor,
    ProcessorList,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    UnknownWordRule,
    apply_temperature,
    descending_order,
    filter_min_p,
    filter_top_k,
    filter_top_p,
    penalize_repetition,
)
from lstm_core.sampling.step import (
    UNDO_LIMIT,
    Candidate,
    Distribution,
    LastWord,
    StepGenerator,
    word_distribution,
)

__all__ = [
    "GREEDY_TEMPERATURE",
    "MAX_BEAM_WIDTH",
    "MAX_LENGTH",
    "MAX_TOP_K",
    "MIN_P_TOLERANCE",
    "PIPELINE",
    "TOP_P_TOLERANCE",
    "UNDO_LIMIT",
    "Candidate",
    "Distribution",
    "Generation",
    "History",
    "LastWord",
    "LogProbsProcessor",
    "Method",
    "MinP",
    "NextWordModel",
    "NgramIndex",
    "NoRepeatNgram",
    "OptionProcessor",
    "ProcessorList",
    "RepetitionPenalty",
    "SamplingOptions",
    "StepGenerator",
    "Temperature",
    "TextScore",
    "TopK",
    "TopP",
    "UnknownRule",
    "UnknownWordRule",
    "WordScore",
    "apply_temperature",
    "banned_ngram_words",
    "beam_score",
    "beam_search",
    "descending_order",
    "filter_min_p",
    "filter_top_k",
    "filter_top_p",
    "generate",
    "generate_next_word",
    "make_generator",
    "penalize_repetition",
    "sample_index",
    "score",
    "word_distribution",
]
