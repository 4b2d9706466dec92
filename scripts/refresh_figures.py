#!/usr/bin/env python3
"""Refresh the figures quoted in the docs after a result was rerun.

    scripts/refresh_figures.py [--only=results/a.md,...] OLD_REV [FILES...]
                                    (default: README.md, docs/**/*.md)

For every `<!-- figures: results/PATH -->` block whose numbers no longer occur in PATH, each
such number is looked up in PATH as it was at OLD_REV (git show OLD_REV:PATH): where it sat
in a Markdown table (which table, which row by its first cell, which cell, which number in
the cell), the number at the same place in the new PATH replaces it. Numbers it cannot place
(outside a table, or a row that is gone) are listed for a person to fix; so is every block it
changed, because the words around a figure may need to change with it. It never guesses.
"""

import glob
import re
import subprocess
import sys

NUM = re.compile(r"\d+(?:\.\d+)?")
OPEN = re.compile(r"<!-- figures: (\S+) -->")
CLOSE = "<!-- /figures -->"


def rows(text):
    """Every Markdown table row: (table index, its cells)."""
    table = -1
    in_table = False
    for line in text.splitlines():
        if line.startswith("|"):
            if not in_table:
                table += 1
                in_table = True
            yield table, [c.strip() for c in line.strip().strip("|").split("|")]
        else:
            in_table = False


def places(text):
    """number -> list of (table index, row key, cell index, number index within the cell)."""
    out = {}
    for table, cells in rows(text):
        key = cells[0] if cells else ""
        for ci, cell in enumerate(cells):
            for ni, m in enumerate(NUM.findall(cell)):
                out.setdefault(m, []).append((table, key, ci, ni))
    return out


def value_at(text, place):
    table, key, ci, ni = place
    for t, cells in rows(text):
        if t == table and cells and cells[0] == key and ci < len(cells):
            nums = NUM.findall(cells[ci])
            if ni < len(nums):
                return nums[ni]
    return None


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    args = sys.argv[1:]
    only = None
    if args and args[0].startswith("--only="):
        only = set(args.pop(0)[len("--only="):].split(","))
    rev = args[0]
    files = args[1:] or ["README.md"] + glob.glob("docs/**/*.md", recursive=True)
    unplaced = []
    changed_blocks = []
    for path in files:
        doc = open(path).read()
        out = []
        pos = 0
        for m in OPEN.finditer(doc):
            if m.start() < pos:
                continue
            end = doc.find(CLOSE, m.end())
            if end < 0:
                continue
            cited = m.group(1)
            if only is not None and cited not in only:
                continue
            body = doc[m.end():end]
            try:
                new = open(cited).read()
            except OSError:
                unplaced.append(f"{path}: {cited} does not exist")
                continue
            old = subprocess.run(["git", "show", f"{rev}:{cited}"], capture_output=True,
                                 text=True).stdout
            old_places = places(old)
            # Every figure-like number (a decimal, or three digits or more) is looked up, not
            # only those that vanished: a figure that changed may still occur elsewhere.
            wanted = [n for n in dict.fromkeys(NUM.findall(body))
                      if n not in new or "." in n or len(n) >= 3]
            replacements = {}
            for n in wanted:
                values = {v for v in (value_at(new, p) for p in old_places.get(n, [])) if v}
                if len(values) == 1:
                    replacements[n] = values.pop()
                elif n not in new:
                    unplaced.append(f"{path}: {n} (from {cited})"
                                    + (" ambiguous" if values else ""))
            replaced = NUM.sub(lambda mm: replacements.get(mm.group(0), mm.group(0)), body)
            if replaced != body:
                changed_blocks.append(f"{path}: block citing {cited}")
            out.append((m.end(), end, replaced))
            pos = end
        for start, end, replaced in reversed(out):
            doc = doc[:start] + replaced + doc[end:]
        with open(path, "w") as f:
            f.write(doc)
    print("changed (read the words around them):")
    print("\n".join("  " + c for c in changed_blocks) or "  none")
    print("not placed (fix by hand):")
    print("\n".join("  " + u for u in unplaced) or "  none")


if __name__ == "__main__":
    main()
