"""The Generate page's parts; ``app/pages/generate.py`` puts them in order. One module per tab.

address          the page's settings kept in its address: a link's values checked, the model's choice
inputs           the prime text, the step generator that has read it, the sampling settings
text_display     a prime and its continuation as the tabs show them
snapshot_slider  the choice of one of a run's snapshots (the model earlier in training)
write_tab        "Write": the continuation, with an n-gram's or an earlier model's beside it
step_tab         "Step by step": word by word, the candidates and the softmax's walk-through
score_tab        "Score a text": its perplexity, and each word coloured by how surprising it was
copy_link        "Copy link": the result's address without the private key; sharing a model
"""
