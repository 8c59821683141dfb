"""Training runs: a run is a folder on disk and a process of its own; the folder is the only truth.

folder.py       the folder's files; creating a run, reading where it stands, snapshots, stop and heartbeat
recording.py    while it trains: the recorder that writes its events and status, the tail that reads them
setup.py        a training process's folder before the first step: new, resumed, begun
admission.py    whether a run may start: the one list of problems every caller asks for
limits.py       a shared server's caps, from LSTM_PLAYHOUSE_* settings
capacity.py     the caps' defaults from the container's CPUs and memory, and why, in words
runner.py       the interface a server starts, watches and stops runs through
local.py        the runner there is: a child process of the server
control.py      admit, start, resume and stop a visitor's runs
sweep.py        keeping the disk in bounds: old and least used runs and uploads deleted
"""
