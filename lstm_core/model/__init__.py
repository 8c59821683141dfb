"""The model, its fast inference path, its file and its memory.

network.py      embedding -> recurrent layers -> softmax, and the regularisers
fast.py         the same probabilities one word at a time, computing only what a choice needs
checkpoint.py   one file of plain data and tensors, loaded with weights_only=True
memory.py       the memory a training run will need, from its config alone
"""
