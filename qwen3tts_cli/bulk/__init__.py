"""Bulk synthesis: a manifest in, a folder of WAVs and a results table out (job.py), in this
process or on a Ray cluster (ray_job.py, the [ray] extra)."""
