"""The ``shoal`` command: thin click commands over the library, one module per command group.

main       the root group, --version, error -> exit code mapping
common     options every command shares (-f FILE), consoles
manifest   validate, schema
init       init
export     export: the manifest as another engine's documents, and the gaps
deploy     deploy: apply them to Swarm or Kubernetes
"""
