"""The terminal side of the shell: progress, colour, logs, JSON events, Ctrl-C, start-up.

Part of the shell (like cli.py): stages never import it. They report progress through
segops.observe and log through the standard `logging` module under the `segops` logger;
what those become on the terminal, in a log file or as JSON is decided here.
"""
