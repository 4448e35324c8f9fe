"""Print the README's quick-start block (the first ```bash block under "## Quick start"), for CI to run as is."""

import re
import sys
from pathlib import Path


def quickstart(readme: str) -> str:
    section = readme.split("\n## Quick start", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    if match is None:
        raise SystemExit("README.md's Quick start section has no ```bash block")
    return match.group(1)


if __name__ == "__main__":
    sys.stdout.write(quickstart(Path(sys.argv[1] if len(sys.argv) > 1 else "README.md").read_text(encoding="utf-8")))
