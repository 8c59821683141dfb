"""About page: what the app does, how it improves on the recipe it started from, and what this server
has and lets each run use (read without importing torch: a fresh server's first pages need none)."""

import streamlit as st

from app import services
from lstm_core.runs import capacity

st.title("🎭 About LSTM Playhouse")
st.markdown(
    """
LSTM Playhouse trains a **word-level LSTM language model** on Shakespeare: it reads the plays one
word at a time and learns to predict the next word. Then it writes.

**How to use it**

1. **Data**: pick the text (the bundled plays work offline; the Project Gutenberg Complete Works
   download once; or upload your own `.txt`). See what cleaning does and how big the vocabulary is.
2. **Train**: pick a preset (*Quick* writes recognisable Shakespeare within about a minute) or set
   every parameter yourself, press *Start training*, and watch the loss fall and the samples turn
   from noise into verse. You can move to the other pages while it trains.
3. **Generate**: continue a prime text such as *thou art more*, move the temperature and see the same
   continuation go from safe to wild, set an n-gram model's text beside it, pick words one at a time
   while the softmax's numbers and the LSTM's gates show why, or score how "Shakespearean" a
   sentence is. **Copy link** gives anyone the same result, word for word.
4. **Inside the LSTM**: the LSTM's equations, and every gate, memory cell and output of the model
   for a text you choose, as a heatmap; the units that follow a feature of the text; the words whose
   vectors lie closest to a word; and *Why gates*: a plain RNN or a GRU you trained (the cell is a
   setting on the Train page) beside the LSTM, the gradient vanishing through one and not the other.

**Your workspace** is this page's address: its `?k=` part is a private key. Keep it (a bookmark) to
come back to your runs and models, also after the server restarts; share only the links the
Generate page's *Copy link* gives, which leave it out.

**Where it comes from.** A well-known TensorFlow cookbook recipe trained an embedding + LSTM +
softmax on the Complete Works (128 units, batch 100 x 50 words, Adam 0.001, gradient clipping 4.5,
10 epochs) and continued prime texts greedily. This app keeps that model as the *Cookbook* preset and
fixes the recipe's faults: its cleaning deleted every letter *s* and glued words of adjacent lines
together; Shakespeare's own word *unknown* collided with its unknown-word token; unknown prime words
crashed it; its batches repeated text to pad and gave wrong targets; it carried LSTM state across
unrelated batches; it saved the vocabulary with pickle; and it never measured a held-out perplexity.
"""
)

st.subheader("This server")
st.caption(
    "What the server may use, read from where it runs (its container's CPU quota and memory limit, not "
    "the host's), and what each training run may then use. Its operator can change the caps with "
    "`LSTM_PLAYHOUSE_*` settings (docs/deploying.md)."
)
limits, resources = services.limits(), services.resources()
lines = capacity.resource_lines(resources) + capacity.caps_lines(limits, resources)
# Sources name cgroup files such as cpu.cfs_quota_us: their underscores are not Markdown emphasis.
st.markdown("\n".join(f"- {line}".replace("_", "\\_") for line in lines))
