"""Renderers: pure functions from a Plan (via its canonical JSON form) to text."""
