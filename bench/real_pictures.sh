#!/usr/bin/env bash
# real_pictures.sh - installs a pool of REAL pictures (photographs and artwork)
# from Debian packages and prints the absolute paths of the usable ones, one per
# line, sorted. Used as the negative pool of the lookalike false-positive
# benchmark. Nothing but paths goes to stdout; install chatter goes to stderr.
#
# Usable = JPEG/PNG, short side >= MIN_SIDE (default 400) px, opaque (no cut-out
# on a transparent background), not mostly one flat colour (>90 % of a 64 px
# thumbnail in one 5-bit colour), and not a near duplicate (same picture at
# another size, a copy, a recolour: 32x32 grey signatures correlate >= 0.985;
# the largest copy is kept). Counts below: Debian 12 (bookworm), MIN_SIDE=400,
# 827 pictures in all; about 1 minute when installed (mostly the dedup).
# Install size: about 1.3 GB (stellarium-data and naev-data are the big ones).
#
# Packages (apt-get install --no-install-recommends unless noted):
#   stellarium-data 0.22.2 (388 MB installed; Debian copyright: GPL-2+; the
#       skyculture art carries its own licence in skycultures/*/info.ini:
#       CC BY-SA 4.0, GPL-2.0, CC BY-ND 4.0, a few CC BY-NC-ND 4.0)
#       - nebulae/default: 312 astrophotographs of galaxies, nebulae and
#         clusters (mostly 512-2048 px PNG, dark sky backgrounds)
#       - skycultures/*: 385 constellation illustrations (drawings/paintings
#         on black, 400-1500 px), 47 sky cultures
#   wesnoth-1.16-data 1.16.9 (193 MB; GPL-2+)
#       - data/core/images/{story,maps}: 19 painted landscapes and maps
#         (1280x960 JPEG)
#   naev-data 0.8.2 (365 MB; GPL-3+, parts CC-BY-3.0/CC-BY-SA-3.0/PD)
#       - dat/gfx/planet/exterior: 53 rendered/painted planet-surface
#         landscapes (mostly 1024x768 PNG)
#   opencv-doc 4.6.0 (274 MB + libjs-mathjax; Apache-2.0 AND BSD-3-Clause)
#       - examples/{data,text,ximgproc,fuzzy}: 34 classic test photographs
#         (baboon, fruits, aero, graffiti, scene text, ...), allow-listed so
#         that stereo pairs / calibration sequences / masks are left out
#   kphotoalbum 5.9.1 (GPL-2+) - NOT installed (it would pull in KDE): the
#       .deb is fetched with `apt-get download` and unpacked with dpkg-deb
#       into /opt/bench-pictures/deb/kphotoalbum
#       - usr/share/kphotoalbum/demo: 24 real photographs (people, places)
#   endless-sky-data 0.9.8 (76 MB; images CC-BY-SA-4.0) - only when
#       MIN_SIDE <= 360: images/land, 273 landscape photographs at 720x360
#
# Related pictures (the benchmark may want to group them):
#   - wesnoth story/landscape-battlefield{,_nohumans}, landscape-bridge{,_sun}:
#     the same painting in two variants
#   - kphotoalbum demo: X.jpg / X_2.jpg and grand_canyon_1..3, new_wave_1..2
#     are shots of the same scene/session
#   - naev exterior: uninhabited-rocky-<colour>-NN are recolours of one render
#     per NN (the closest ones are deduplicated, a few survive); aquatic,
#     aquatic2, ... are different pictures of one theme
#   - stellarium nebulae: globular clusters / elliptical galaxies are distinct
#     photos that look alike (bright blob on black) - genuine hard negatives
#   - stellarium nebulae: some textures cover overlapping sky regions
#     (e.g. neighbouring objects); skycultures: the same constellation drawn
#     by the same artist in several cultures (exact copies are deduplicated)
#
# Environment: PYTHON (default python3; needs Pillow, e.g. .venv/bin/python),
# MIN_SIDE (default 400), SHOW_DUPS=1 (list dropped duplicates on stderr).
set -euo pipefail

PYTHON=${PYTHON:-python3}
MIN_SIDE=${MIN_SIDE:-400}
ROOT=/opt/bench-pictures

APT_PKGS=(stellarium-data wesnoth-1.16-data naev-data opencv-doc)
if [ "$MIN_SIDE" -le 360 ]; then APT_PKGS+=(endless-sky-data); fi
EXTRACT_PKGS=(kphotoalbum)

updated=0
apt_update() {
    if [ "$updated" = 0 ]; then apt-get update -qq >&2; updated=1; fi
}

missing=()
for p in "${APT_PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >&2
fi

for p in "${EXTRACT_PKGS[@]}"; do
    dest="$ROOT/deb/$p"
    if [ ! -f "$dest/.unpacked" ]; then
        apt_update
        tmp=$(mktemp -d)
        chmod 755 "$tmp"
        chown _apt "$tmp" 2>/dev/null || true  # lets apt download sandboxed
        (cd "$tmp" && apt-get download -qq "$p") >&2
        rm -rf "$dest"
        mkdir -p "$dest"
        dpkg-deb -x "$tmp"/"$p"_*.deb "$dest"
        rm -rf "$tmp"
        touch "$dest/.unpacked"
    fi
done

if ! "$PYTHON" -c "import PIL" 2>/dev/null; then
    echo "real_pictures.sh: $PYTHON has no Pillow; set PYTHON=.venv/bin/python" >&2
    exit 1
fi

MIN_SIDE="$MIN_SIDE" ROOT="$ROOT" "$PYTHON" - <<'EOF'
import glob, os, re, sys
from collections import Counter
from PIL import Image

min_side = int(os.environ["MIN_SIDE"])
root = os.environ["ROOT"]
cv = "/usr/share/doc/opencv-doc/examples/"
cv_allow = [
    "data/aero1.jpg", "data/aloeL.jpg", "data/apple.jpg", "data/baboon.jpg",
    "data/basketball1.png", "data/board.jpg", "data/building.jpg",
    "data/chicky_512.png", "data/ela_original.jpg", "data/fruits.jpg",
    "data/graf1.png", "data/left.jpg", "data/left01.jpg", "data/leuvenA.jpg",
    "data/licenseplate_motion.jpg", "data/orange.jpg", "data/squirrel_cls.jpg",
    "data/starry_night.jpg", "data/stuff.jpg", "data/sudoku.png",
    "data/text_defocus.jpg", "fuzzy/input.png", "ximgproc/stanford.png",
] + ["text/scenetext0%d.jpg" % i for i in range(1, 7)] + [
    "text/scenetext_segmented_word0%d.jpg" % i for i in range(1, 6)]

cands = []
cands += glob.glob("/usr/share/stellarium/nebulae/default/*")
cands += glob.glob("/usr/share/stellarium/skycultures/*/*")
for d in ("story", "maps"):
    cands += glob.glob("/usr/share/games/wesnoth/1.16/data/core/images/%s/*" % d)
cands += glob.glob("/usr/share/naev/dat/gfx/planet/exterior/*")
cands += [cv + f for f in cv_allow]
cands += glob.glob(root + "/deb/kphotoalbum/usr/share/kphotoalbum/demo/*")
if min_side <= 360:
    cands += glob.glob("/usr/share/games/endless-sky/images/land/*")

keep = []  # (path, area, dhash)
for path in sorted(set(cands)):
    if not re.search(r"\.(jpe?g|png)$", path, re.I) or not os.path.isfile(path):
        continue
    try:
        with Image.open(path) as im:
            w, h = im.size
            if min(w, h) < min_side:
                continue
            im.draft("RGB", (128, 128))
            im = im.convert("RGBA")
            im.thumbnail((64, 64))
    except Exception:
        continue
    raw = im.tobytes()
    npx = len(raw) // 4
    opaque = [tuple(raw[i:i + 3]) for i in range(0, len(raw), 4) if raw[i + 3] >= 128]
    if len(opaque) < 0.98 * npx:  # cut-out on transparent background
        continue
    cnt = Counter((r >> 3, g >> 3, b >> 3) for r, g, b in opaque)
    if cnt.most_common(1)[0][1] > 0.90 * len(opaque):  # mostly one flat colour
        continue
    # 32x32 grey signature, zero mean / unit norm
    v = list(im.convert("RGB").convert("L").resize((32, 32), Image.BOX).tobytes())
    mean = sum(v) / len(v)
    v = [x - mean for x in v]
    norm = sum(x * x for x in v) ** 0.5
    if norm < 1.0:
        continue
    keep.append((path, w * h, [x / norm for x in v]))

# near-duplicates (same picture resized/recompressed/recoloured): grey
# signatures correlate >= DUP_CORR; keep the largest copy (ties: first path)
DUP_CORR = 0.985
keep.sort(key=lambda t: (-t[1], t[0]))
chosen = []
for path, area, sig in keep:
    dup = None
    for q, _, s2 in chosen:
        if sum(a * b for a, b in zip(sig, s2)) >= DUP_CORR:
            dup = q
            break
    if dup is not None:
        if os.environ.get("SHOW_DUPS"):
            print("dup", path, "~", dup, file=sys.stderr)
        continue
    chosen.append((path, area, sig))
for path in sorted(p for p, _, _ in chosen):
    print(path)
EOF
