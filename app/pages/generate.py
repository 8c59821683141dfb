"""Generate page: continue a prime text, live; step word by word; score a text.

Every setting on this page is bound to the page address, so the address reproduces what is on
screen and a link without the private key shares it (see ``app/share.py``). Its parts, one module
per tab, are in ``app/generate_page/``.
"""

from __future__ import annotations

import streamlit as st

from app import share, state
from app.generate_page.address import BIND, keep_model_in_address, requested_shares, settle_address
from app.generate_page.copy_link import share_section
from app.generate_page.inputs import generator_for, options_section, prime_section, show_prime
from app.generate_page.score_tab import score_tab
from app.generate_page.step_tab import step_tab
from app.generate_page.write_tab import write_tab
from app.models import available_models, model_choice

st.title("✒️ Generate")
models = available_models(requested_shares())
settle_address(models)
entry = model_choice(models)
if entry is None:
    st.stop()
keep_model_in_address(st.session_state[state.MODEL_CHOICE])
prime = prime_section()
generator = generator_for(entry, prime)
if generator is None:
    st.stop()
show_prime(generator)
options = options_section()
if options is None:
    st.stop()
share_section(entry)
# Only the open tab runs: a slider move redoes the text on show, not all three.
write, step, scoring = st.tabs(list(share.MODES), key=state.GENERATE_MODE, on_change="rerun", bind=BIND)
if write.open:
    with write:
        write_tab(entry, generator, prime, options)
if step.open:
    with step:
        step_tab(generator, options)
if scoring.open:
    with scoring:
        score_tab(entry)
