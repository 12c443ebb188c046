#!/usr/bin/env python3
"""Write the fuzzer's seed corpus: every RFC 4475 fixture and the first messages of each capture.

    python3 Tests/Fuzz/seeds.py Tests/Fixtures OUT_DIR
"""
import os
import sys

PER_CAPTURE = 40


def main():
    fixtures, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    written = 0
    for folder in ("valid", "invalid"):
        directory = os.path.join(fixtures, "torture", folder)
        for name in sorted(os.listdir(directory)):
            with open(os.path.join(directory, name), "rb") as f, open(os.path.join(out, f"{folder}-{name}"), "wb") as g:
                g.write(f.read())
                written += 1
    corpus = os.path.join(fixtures, "corpus")
    for name in sorted(os.listdir(corpus)):
        if not name.endswith(".sipmsgs"):
            continue
        data = open(os.path.join(corpus, name), "rb").read()
        offset = data.index(b"\n") + 1
        for index in range(PER_CAPTURE):
            if offset >= len(data):
                break
            newline = data.index(b"\n", offset)
            length = int(data[offset:newline].split()[0])
            with open(os.path.join(out, f"{name[:-8]}-{index}"), "wb") as g:
                g.write(data[newline + 1:newline + 1 + length])
                written += 1
            offset = newline + 2 + length
    print(f"{written} seeds in {out}")


if __name__ == "__main__":
    main()
