"""The Train page's parts; ``app/pages/train.py`` puts them in order.

labels          preset names, run states in words, durations
settings_form   the presets and settings, what would stop a run (``check_settings``), the model's size
controls        the run on show; Start, Stop and Resume
live_progress   the run's progress, figures, charts and samples, with the result and the runs table
                under it, all refreshed together while the run trains
result          a run's summary when it has ended, "Write with this model" and the download
runs_table      the visitor's runs, the choice of the run on show, runs compared on one chart
model_upload    loading a model file downloaded before
"""
