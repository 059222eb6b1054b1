"""The benchmark nginx: config template, fixed bodies, start/stop (nginx.py)."""
