"""Choosing words: sampling options, the rules, log-prob processors, decoding loops and step-by-step generation.

The files follow one word's way from the model to the text::

    options.py      SamplingOptions: method, filters, word rules, beam settings, seed (+ field metadata)
    rules.py        each rule once: temperature's greedy limit, top-k order and ties, the nucleus
                    search, the min-p cut, the draw, the lifted ban (a leaf: torch and math only)
    processors.py   the stages between the model's log-probs and a choice, applied in order:
                    <unk> rule -> repetition penalty -> no-repeat n-grams      (every method)
                    -> temperature -> top-k -> top-p -> min-p                  (sampling only)
    history.py      what the word rules read: the text so far, its seen words and n-grams
    fast_choice.py  the same rules at the fast path's cursor: argmax and draw, computing only what matters
    shortcut.py     which processor lists the cursor can follow, and their choice there
    decoding.py     greedy / sample / beam loops, generate(), beam_search(), Generation
    step.py         StepGenerator (step, undo, reset, regenerate) and the candidates a UI shows

Everything starts from the model's normalised log-probabilities (``model.log_probs``, or for an
LSTM model in float32 the same numbers from :mod:`lstm_core.model.cursor`), never from raw logits,
so the full and the adaptive softmax behave the same. Scoring a text is an evaluation, not
sampling: it lives in :mod:`lstm_core.evaluation.scoring`. This file imports nothing: import each
name from the module above that defines it.
"""
