"""The prediction engine: from a shadow run to what the full VM needs.

sar.py        read sysstat sar CSV runs into per-second usage series
vmtypes.py    VM types (family, vCPUs, memory) of a cloud, from a CSV
history.py    history records (shadow run + full VM's observed requirement); sar import
features.py   what the models see of a shadow run and of the two sizes
dataset.py    records as arrays for training and evaluation
models.py     per-resource quantile models (median, P90), training
margin.py     fixed or calibrated safety margin
physical.py   the physical extrapolation used when history is thin
flavours.py   rounding to the cheapest covering flavour of a catalogue
persist.py    saving and loading models with their metadata
predictor.py  HistoryModelPredictor: the same work on a larger VM (smoke)
measured.py   ShadowMeasuredPredictor: the shadow's usage x margin
ramp.py       RampPredictor: the ramp's physical extrapolation to a load
correction.py the learned correction of an extrapolation, from history
learned.py    LearnedCorrectionPredictor: the ramp corrected by it
intervals.py  the need's range every engine's answer carries
registry.py   the engines by name, and how each is built from the settings
choice.py     which engine answers (ChosenPredictor, LivePredictor)
trackrecord.py a model's held-out track record in words (no NumPy needed)
metrics.py    under-provisioning, waste, MdAPE, pinball loss
evaluate.py   cross-validation grouped by job, beside the baselines
noise.py      hindsight reference: what run-to-run noise alone costs
"""
