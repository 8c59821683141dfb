"""Training runs: a run is a folder on disk and a process of its own; the folder is the only truth.

folder.py       the folder's files; creating a run, reading where it stands, snapshots, stop and heartbeat
recording.py    while it trains: the recorder that writes its events and status, the tail that reads them
setup.py        a training process's folder before the first step: new, resumed, begun
liveness.py     whether a run still trains: its runner and its folder, never only a local pid
admission.py    whether a run may start: the one list of problems every caller asks for
limits.py       a shared server's caps and its runner, from LSTM_PLAYHOUSE_* settings
capacity.py     the caps' defaults from the container's CPUs and memory, and why, in words
lock.py         one start at a time across every server that shares the data folder
runner.py       the interface a server starts, watches and stops runs through
local.py        the default runner: a child process of the server
cluster.py      the Ray runner: a job on a Ray cluster (ray_jobs.py: its Jobs API, bounded in time)
control.py      admit, start, resume and stop a visitor's runs
sweep.py        keeping the disk in bounds: old and least used runs and uploads deleted
"""
