"""The Inside the LSTM page's parts; ``app/pages/inside.py`` puts them in order. One module per tab.

equations        the model's equations (an LSTM's, a GRU's, a plain RNN's), the quantity on show in colour
text_choice      the text to look inside (a prime continued by the model, or the visitor's), its trace
quantity_choice  the layer and quantity on show, the unit chosen, the colour scale in words
heatmap_tab      "Heatmap": the quantity for every word and the units that vary most
unit_tab         "One unit": one unit over the text, and the finders of units by feature or by span
vectors_tab      "Word vectors": a word's nearest neighbours and the map of the frequent words
gates_tab        "Why gates": up to three models' gradient through time and memory test, side by side
"""
