#!/usr/bin/env python3
"""ctest's doctest discovery splits a test name at ';' (a CMake list separator): each piece then
matches no test case and the ctest entry "passes" having run nothing. This check fails on any
doctest TEST_CASE or SUBCASE name with a ';' under the folder given."""
import pathlib
import re
import sys

NAME = re.compile(r'\b(?:TEST_CASE|SUBCASE)\(\s*"((?:[^"\\]|\\.)*)"')

bad = []
for path in sorted(pathlib.Path(sys.argv[1]).rglob("*.[ch]pp")):
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        for name in NAME.findall(line):
            if ";" in name:
                bad.append(f"{path}:{number}: {name}")
if bad:
    print("test names must not contain ';' (ctest would run nothing for them):", *bad, sep="\n")
    sys.exit(1)
print("every test name is free of ';'")
