"""`fleet bench` benchmarks, one module per target: `tools.bench.<target>.run(args) -> int`.

Each module prints its own result (a JSON object when `args.json`) and returns
an exit code: 0 when the goals were met, 1 when a goal was missed, 2 when the
benchmark could not run. Every figure is measured against a same-run baseline,
so a loaded machine slows both sides alike. A module may also define
`add_arguments(parser)` to add options of its own to `fleet bench`.
"""

TARGETS = ("watcher", "loop", "runner", "jobs")
"""What `fleet bench` knows; `all` runs each one whose module exists."""
