"""What operators see: request context and logs (`logs`), Prometheus metrics (`metrics`).

The bottom floor, like storage/: it imports nothing of ours, so every layer may report to it.
"""
