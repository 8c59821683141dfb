"""Looking inside a trained model.

inspection.py   every gate and memory for every word, units that follow a feature, word vectors
walkthrough.py  one generation step explained: the softmax walk-through and the last word's gates
"""
