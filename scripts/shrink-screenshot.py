"""README copies of the dashboard screenshots the browser tests save.

    cargo test -p iptrack-tests --test e2e -- dashboard_views
    for v in overview address requests countries; do
      python3 scripts/shrink-screenshot.py target/dashboard-$v.png docs/screenshots/$v.png
    done

960 px wide, 128 colours (median cut, which keeps the status-class colours and the page's
two near-white backgrounds apart): 30-110 KB each. Needs Pillow (`pip install Pillow`).
"""
import sys

from PIL import Image

src, dst = sys.argv[1], sys.argv[2]
im = Image.open(src).convert("RGB")
w, h = im.size
im = im.resize((960, round(h * 960 / w)), Image.LANCZOS)
im = im.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
im.save(dst, optimize=True)
