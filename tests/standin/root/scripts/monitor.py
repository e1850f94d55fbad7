# stand-in: Renode's scripts/monitor.py is not modelled
