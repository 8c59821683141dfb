# LSTM Playhouse in a container: the Streamlit app, its training processes and the bundled plays.
#
#   docker build -t lstm-playhouse .
#   docker run -d --name playhouse -p 8501:8501 -v playhouse-data:/data --stop-timeout 60 lstm-playhouse
#
# A GPU image is one flag: --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 (and run it
# with --gpus all). `docker stop` sends SIGTERM to tini, which passes it to the server's whole process
# group (-g): each training process saves its checkpoint and exits, and the run resumes after a restart.
# Saving takes seconds, more than docker's default grace of 10 s allows on a busy host before SIGKILL,
# hence --stop-timeout 60. tests/browser/test_container.py runs this file's start command as an
# unprivileged user on read-only code and checks exactly that.
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

RUN apt-get update \
    && apt-get install --yes --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# PyTorch first, at requirements.txt's pin, from the chosen index; then the rest (torch is then installed).
COPY requirements.txt ./
RUN pip install --index-url "$TORCH_INDEX" "$(grep -E '^torch==' requirements.txt)" \
    && pip install -r requirements.txt

COPY . .
# The bundled plays' cache, built now so that the first visitor's page finds it: the data folder is
# an empty volume at first, so the app reads this file (LSTM_PLAYHOUSE_PREBUILT_PLAYS) until the plays
# or the code that encodes them change. Compiled modules speed up the first start.
RUN LSTM_PLAYHOUSE_DATA=/opt/lstm-playhouse python -m lstm_core.text.plays_cache \
    && python -m compileall -q lstm_core app streamlit_app.py

RUN useradd --create-home --uid 10001 playhouse \
    && mkdir /data \
    && chown playhouse /data
ENV LSTM_PLAYHOUSE_DATA=/data \
    LSTM_PLAYHOUSE_PREBUILT_PLAYS=/opt/lstm-playhouse/cache/bundled-plays.npz \
    STREAMLIT_SERVER_PORT=8501
USER playhouse
VOLUME /data
EXPOSE 8501

# Slim images have no curl: Python asks the server's health address (the port from the environment).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ['STREAMLIT_SERVER_PORT']; body = urllib.request.urlopen(f'http://127.0.0.1:{port}/_stcore/health', timeout=8).read(); sys.exit(body != b'ok')"]

ENTRYPOINT ["tini", "-g", "--"]
CMD ["python", "-m", "streamlit", "run", "streamlit_app.py", "--server.address=0.0.0.0", "--server.headless=true"]
