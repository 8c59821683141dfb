"""Looking inside a trained model.

inspection.py   every gate and memory for every word (the traced pass, any cell), cut down to what a page draws
units.py        features of a raw text, and the units that follow one or stay on across a span
embeddings.py   word vectors: nearest words, the most frequent words on a 2-D map
walkthrough.py  one generation step explained: the softmax walk-through and the last word's gates
gradients.py    why gates: the gradient of the last word's loss at each earlier state, and the sentence that reads it
recall.py       why gates: does a model remember a name it read N words before
"""
