#!/usr/bin/env python3
"""Writes normalization.txt.gz: the Unicode data UnicodeNormalization needs (NFC/NFD/NFKC/NFKD without ICU).

Lines (hex code points): `D cp full-canonical-decomposition...`, `K cp full-compatibility-decomposition...` (only where
it differs from the canonical one), `C cp combining-class`, `P first second composite` (primary composites).
Hangul syllables are computed, not listed. Run: python3 make-normalization-data.py (Python's unicodedata sets the
Unicode version, printed on the first line)."""
import gzip, os, sys, unicodedata

lines = [f"# Unicode {unicodedata.unidata_version}"]
for cp in range(0x110000):
    if 0xD800 <= cp <= 0xDFFF or 0xAC00 <= cp <= 0xD7A3:
        continue
    ch = chr(cp)
    nfd = unicodedata.normalize("NFD", ch)
    nfkd = unicodedata.normalize("NFKD", ch)
    if nfd != ch:
        lines.append("D %X %s" % (cp, " ".join("%X" % ord(c) for c in nfd)))
    if nfkd != nfd:
        lines.append("K %X %s" % (cp, " ".join("%X" % ord(c) for c in nfkd)))
    ccc = unicodedata.combining(ch)
    if ccc:
        lines.append("C %X %d" % (cp, ccc))
    d = unicodedata.decomposition(ch)
    if d and not d.startswith("<"):
        parts = [int(x, 16) for x in d.split()]
        if len(parts) == 2 and unicodedata.normalize("NFC", chr(parts[0]) + chr(parts[1])) == ch:
            lines.append("P %X %X %X" % (parts[0], parts[1], cp))
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "normalization.txt.gz")
with gzip.GzipFile(out, "wb", mtime=0) as f:
    f.write(("\n".join(lines) + "\n").encode())
print(out, len(lines), "lines, Unicode", unicodedata.unidata_version, file=sys.stderr)
