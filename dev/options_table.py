"""Print the markdown options table of a config class, for docs/refinement.md and docs/evaluation.md.

python dev/options_table.py raft_trainer.refine:RefineConfig
"""

import dataclasses
import importlib
import sys

module, name = sys.argv[1].split(":")
config = getattr(importlib.import_module(module), name)
print("| option | default | meaning |\n|---|---|---|")
for f in dataclasses.fields(config):
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    print(f"| `{f.name}` | `{default!r}` | {f.metadata['help'].replace('|', chr(92) + '|')} |")
