"""lvs-lab runner (Pulumi Automation API): bring a lab up and verify it, tear it down, or run an ephemeral
CI cycle (unique stack, up, verify, idempotency preview, always destroy, leak check, artefacts).

  lvslab.py up [--stack dev]            create/update the lab and verify it (summary printed)
  lvslab.py destroy [--stack dev] [--rm]
  lvslab.py ephemeral [--template ci] [--keep] [--fault F ...] [--expect-fail ASSERTION] [--artefacts DIR]
                      [--real-servers N] [--json FILE]
  lvslab.py verify|status|preview|fault ...   (see --help)

Run it inside the lab's network namespace (the Makefile does), with tools/env.sh's environment. The code is
lvslab/runner/; this file only puts the project on the path.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lvslab.runner.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
