"""The supervisor: keeps services running as the manifest says (DESIGN.md §3).

model        desired state, observed state, actions (plain values)
backoff      restart delays (pure)
planning     plan(desired, observed, now) -> actions (pure)
health       the readiness state machine fed by probes (pure)
probing      http / tcp / exec probes and the per-instance probing task
desired      manifest -> desired services and instance specs (pure)
ports        free loopback ports for replicas
reconciling  the loop: plan, execute through the runtimes, record in the store
"""
