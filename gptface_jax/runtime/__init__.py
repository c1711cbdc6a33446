"""What every other room runs on: configs and their validation, meshes and sharding, checkpoints,
metric writers, the optimizer, workdir locks and the names of a workdir's files (`layout`).
Imports only `models` (checkpoints convert between layer layouts)."""
