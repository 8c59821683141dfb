"""How good a model is, and against what.

scoring.py        validation loss and perplexity over a text; a text scored word by word
ngram.py          interpolated modified Kneser-Ney n-gram models over word ids: the maths, scoring, files
ngram_tables.py   the n-grams of a training stream counted once, discounted, one compressed table per length
baselines.py      the perplexities a run must beat: uniform, unigram, Kneser-Ney bigram and 5-gram
standing.py       where a run stands against them, in one sentence
folds.py          folds by whole play: test, validation and training plays for an honest quality figure
"""
