"""Where words come from and how they become ids; no torch, so the first page can import it.

corpus.py       the sources: bundled plays, the Gutenberg download, any file or upload
cleaning.py     the recipe's cleaning rule, fixed, and the contiguous train/valid/test split
vocab.py        words -> ids, with <unk> at index 0, as plain JSON
encoded.py      a cleaned text as ids over its own words (numpy), what a server keeps
plays_cache.py  the bundled plays cleaned and encoded once, on disk
"""
