"""The control-plane daemon: one asyncio process per manifest folder (``shoal up``).

    locking   one daemon per folder (an flock on .shoal/daemon.lock)
    plane     the ControlPlane the API calls: supervisor + log store, as API rows
    running   the async entry point: start order, signals, shutdown order
    detached  ``shoal up -d``: start the daemon in the background and wait until it is ready

It composes the parts below it (api, supervisor, runtimes, logs, store) and is used by the CLI.
"""
