"""Starting and resuming runs: `run` (what every client calls), `session` (one run from config
to result), `hooks` (records, checkpoints, progress, gallery), `torchrun` (data-parallel
launcher, which starts ranks by module name)."""
