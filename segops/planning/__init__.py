"""Stage 3: planning: decide per destination, build the immutable Plan, guards, selection,
schedule, plan files.
"""
