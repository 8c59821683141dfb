"""The model, its fast inference path, its file and its memory.

network.py      embedding -> recurrent layers -> softmax, and the regularisers
cells.py        the LSTM, the GRU and the plain RNN: where the three cells differ
fast.py         the same probabilities with fused gates and buffers; whole texts scored without (N, V)
cursor.py       one text on the fast path: its state, and the next word's log-probs piece by piece
checkpoint.py   one file of plain data and tensors, loaded with weights_only=True
memory.py       the memory a training run will need, from its config alone
"""
