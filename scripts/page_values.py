"""The numbers and verdicts a built book shows, page by page, to check that a refactor changed none.

    python scripts/page_values.py book/generated > before.json    # on the old code
    python scripts/page_values.py book/generated --against before.json

For each executed page (``book/generated/*.ipynb``) it collects every number and every verdict word
in what the page shows: glued values, printed Markdown, and HTML (tables, and the charts with their
data; element ids stripped), as a sorted multiset, so that moving a sentence or a table within a
page changes nothing while changing a value does. The standing explanations the sections print
(:mod:`pruneflow.report.sections`' text constants) are left out: their digits are typed, not computed.
``--against`` prints the pages whose values differ
and exits 1 if any does.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

import nbformat

from pruneflow.report import sections

# Element ids that change from one execution to the next: Altair's chart ids, pandas Styler's
# T_<uuid> ids, run ids and other hex digests.
IDS = re.compile(r"altair-viz-[0-9a-f]+|T_[0-9a-f]{5}\w*|\b[0-9a-f]{8,}(?:-[0-9a-f]{4,})*\b")
SHOWN = ("text/markdown", "text/html", "application/papermill.record/text/markdown")
STANDING = [v for v in vars(sections).values() if isinstance(v, str) and len(v) > 40]
TOKENS = re.compile(
    r"[-+]?\d+(?:[.,]\d+)*(?:e[-+]?\d+)?|\b(?:supported|contradicted|equivalent|inconclusive)\b"
)


def values(page: Path) -> list[str]:
    """Sorted number and verdict tokens of every output of the executed notebook ``page``."""
    tokens: Counter[str] = Counter()
    for cell in nbformat.read(page, as_version=4).cells:
        for output in cell.get("outputs", []):
            for mime, text in output.get("data", {}).items():
                if mime in SHOWN:
                    text = "".join(text)
                    for standing in STANDING:
                        text = text.replace(standing, "")
                    tokens.update(TOKENS.findall(IDS.sub("", text)))
    return sorted(tokens.elements())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="folder of executed pages, e.g. book/generated")
    parser.add_argument("--against", type=Path, help="a JSON file this script wrote before")
    args = parser.parse_args()
    found = {p.stem: values(p) for p in sorted(args.folder.glob("*.ipynb"))}
    if args.against is None:
        json.dump(found, sys.stdout, indent=0)
        return 0
    before = json.loads(args.against.read_text())
    bad = 0
    for name in sorted(set(before) | set(found)):
        old, new = Counter(before.get(name, [])), Counter(found.get(name, []))
        if old != new:
            bad += 1
            print(
                f"{name}: {sum((old - new).values())} values gone, e.g. {list(old - new)[:8]}; "
                f"{sum((new - old).values())} new, e.g. {list(new - old)[:8]}"
            )
    print(f"{len(found)} pages, {bad} with other values than before")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
