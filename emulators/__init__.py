"""Emulators of the platform APIs segops talks to, for tests and `make demo-api`.

They speak real HTTP on 127.0.0.1, follow ../shared/reference (auth, bodies, validation,
asynchronous statuses, callbacks, error bodies, quotas) and inject faults on demand.
They are not part of the segops package.
"""
