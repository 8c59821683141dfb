"""A training run as a folder on disk: the only source of truth about a run, for the command line and the app.

folder.py       the folder's files; creating a run, reading where it stands, snapshots, stop and heartbeat
recording.py    while it trains: the recorder that writes its events and status, the tail that reads them
"""
