"""Build an English->German parallel corpus (offline) and its SentencePiece model.

Everything comes from Debian packages (fetched with ``apt-get download`` into a
cache dir and unpacked with ``dpkg-deb -x``, nothing is installed) plus the
gettext catalogues already installed under /usr/share/locale/de. No other
network access is needed.

Usage:
    python scripts/data/prepare_ende_corpus.py --out data/ende [--vocab-size 4000]

Sources, in priority order (English-side dedupe keeps the first occurrence),
with licences (exact package versions are recorded in ``sources.json``):

    gettext  UI message catalogues: German .mo files of gcc-12-locales,
             inkscape, vlc-l10n, evolution-common, gimp-data, gnucash-common,
             libreoffice-l10n-de, gettext (GPL-2+/GPL-3+/LGPL-2+/MPL-2.0, per
             package), plus the catalogues installed on the machine in
             /usr/share/locale/de/LC_MESSAGES (licences of their owning
             packages, listed in sources.json). msgid -> msgstr.
             thunderbird-l10n-de ships no .mo files (Fluent/.xpi), so it is
             not used.
    lohelp   LibreOffice help, libreoffice-help-en-us vs libreoffice-help-de,
             paragraphs aligned by their HTML id (MPL-2.0).
    gimphelp GIMP user manual, gimp-help-en vs gimp-help-de, <p> paragraphs
             aligned by order within pages with equal paragraph counts
             (GFDL-1.2).
    debref   Debian Reference, debian-reference-en vs debian-reference-de,
             aligned like gimphelp (GPL-2+).
    ding     Ding dictionary (trans-de-en, GPL-2+), entries whose English
             side has >= 4 words, capped at 40% of all pairs.

Paragraph pairs are split into sentence pairs when both sides split into the
same number of sentences. Cleaning: strip markup and entities, remove UI
accelerators (_ & ~), collapse whitespace, drop pairs with format placeholders
(%s, {0}, $x ...) or non-Latin scripts, with < 2 or > 60 words on either side,
with a character length ratio above 1.8, or with en == de. Pairs are deduplicated on the
English side, shuffled (seed 1234) and 2000 test + 2000 valid pairs are held
out (disjoint English sentences, so no overlap with train).

Writes into ``--out``:
    {train,valid,test}.{en,de}   one sentence per line, aligned
    sources.json                 per source: packages + versions, licence, pairs
    spm.model, spm.vocab         SentencePiece unigram, pad=0 eos=1 unk=2 no bos
                                 (the ids KerasHub's T5Tokenizer expects)
    tokens.npz                   uint16 (N, 64) arrays train_en, train_de,
                                 valid_en, ... : ids + eos(1), truncated to 64
                                 keeping eos last, right-padded with 0. No task
                                 prefix on the encoder side (En->De only).
    debs/, extract/              the download cache and unpacked packages
"""

import argparse
import gettext
import glob
import html
import json
import os
import random
import re
import subprocess
import time
import unicodedata

import numpy as np

SEED = 1234
SEQ_LEN = 64
N_TEST = 2000
N_VALID = 2000
DING_MAX_FRACTION = 0.4

GETTEXT_PACKAGES = {
    "gcc-12-locales": "GPL-3+",
    "inkscape": "GPL-2+",
    "vlc-l10n": "GPL-2+",
    "evolution-common": "LGPL-2+",
    "gimp-data": "GPL-3+",
    "gnucash-common": "GPL-2+",
    "libreoffice-l10n-de": "MPL-2.0",
    "gettext": "GPL-3+",
}
HELP_SOURCES = {
    "lohelp": (("libreoffice-help-en-us", "libreoffice-help-de"), "MPL-2.0"),
    "gimphelp": (("gimp-help-en", "gimp-help-de"), "GFDL-1.2"),
    "debref": (("debian-reference-en", "debian-reference-de"), "GPL-2+"),
}
DING_PACKAGE = ("trans-de-en", "GPL-2+")
ALL_PACKAGES = (
    list(GETTEXT_PACKAGES)
    + [p for pkgs, _ in HELP_SOURCES.values() for p in pkgs]
    + [DING_PACKAGE[0]]
)


def log(*args):
    print(*args, flush=True)


# --------------------------------------------------------------------------
# Debian packages
# --------------------------------------------------------------------------


def fetch_debs(cache):
    os.makedirs(cache, exist_ok=True)
    missing = [
        p for p in ALL_PACKAGES if not glob.glob(os.path.join(cache, p + "_*.deb"))
    ]
    if missing:
        log("apt-get download", " ".join(missing))
        subprocess.run(["apt-get", "download", *missing], cwd=cache, check=True)
    debs = {}
    for p in ALL_PACKAGES:
        found = sorted(glob.glob(os.path.join(cache, p + "_*.deb")))
        if not found:
            raise SystemExit(f"could not download {p}")
        debs[p] = found[-1]
    return debs


def deb_version(deb):
    return subprocess.run(
        ["dpkg-deb", "-f", deb, "Version"], capture_output=True, text=True, check=True
    ).stdout.strip()


def extract(deb, root):
    """Unpack a .deb into root/<package> once; returns that directory."""
    name = os.path.basename(deb).split("_")[0]
    target = os.path.join(root, name)
    stamp = os.path.join(target, ".extracted-from")
    if not (os.path.exists(stamp) and open(stamp).read() == os.path.basename(deb)):
        os.makedirs(target, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", deb, target], check=True)
        with open(stamp, "w") as f:
            f.write(os.path.basename(deb))
    return target


# --------------------------------------------------------------------------
# Cleaning
# --------------------------------------------------------------------------

TAG_RE = re.compile(r"<[^>]*>")
INLINE_TAG_RE = re.compile(
    r"</?(?:a|span|em|strong|b|i|u|code|tt|kbd|var|sup|sub|abbr|acronym|cite|q|small"
    r"|big|font|samp)\b[^>]*>"
)
# LibreOffice help: hidden macOS variants of shortcuts ("Command+T" next to "Ctrl+T")
MAC_SPAN_RE = re.compile(
    r'<span hidden="true"[^>]*class="MAC"[^>]*>(?:<span[^>]*>[^<]*</span>|[^<])*</span>'
)
SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+([.,;:!?])(?=\s|$)")
WS_RE = re.compile(r"\s+")
PLACEHOLDER_RE = re.compile(
    r"%[-#0 +'I]*[\d*]*(?:\.[\d*]+)?(?:hh|h|ll|l|L|q|j|z|t)?[diouxXeEfFgGaAcspnm%]"
    r"|%\d|%\(|%[A-Za-z]|\{[^}]*\}|\$\{|\$\w|\$\d|\\[a-z]|@\w+@|%\w+%"
)
# characters allowed besides Latin (<= U+024F)
EXTRA_CHARS = set("–—‘’‚“”„…•€™→←↑↓−′″")
BAD_CHARS_RE = re.compile(r"[_&~|<>{}\\^`=#*\[\]]")


def strip_accelerator(s, mark):
    """Remove a single UI accelerator marker (e.g. "_File", "&Open", "~Save")."""
    if mark == "&":
        # ignore entities like &amp; (handled later by html.unescape)
        hits = [m.start() for m in re.finditer(r"&(?!#?\w+;)(?=\w)", s)]
        if len(hits) == 1:
            s = s[: hits[0]] + s[hits[0] + 1 :]
        return s
    if s.count(mark) == 1:
        i = s.index(mark)
        if i + 1 < len(s) and s[i + 1].isalnum():
            s = s[:i] + s[i + 1 :]
    return s


def clean_text(s, accelerators=False):
    s = s.replace("\u00ad", "").replace("\u00a0", " ")
    if accelerators:
        for mark in "_&~":
            s = strip_accelerator(s, mark)
        s = re.sub(r"\s*\(_?\w\)$", "", s)  # "Datei (F)" style accelerators
    s = MAC_SPAN_RE.sub("", s)
    s = INLINE_TAG_RE.sub("", s)
    s = TAG_RE.sub(" ", s)
    s = html.unescape(s)
    s = unicodedata.normalize("NFC", s)
    s = WS_RE.sub(" ", s).strip()
    s = SPACE_BEFORE_PUNCT_RE.sub(r"\1", s)
    s = s.replace("( ", "(").replace(" )", ")")
    return s


def is_latin(s):
    for ch in s:
        o = ord(ch)
        if o < 32:
            return False
        if o > 0x24F and ch not in EXTRA_CHARS:
            return False
    return True


def keep_pair(en, de, min_words=2, max_words=60):
    if not en or not de or en.lower() == de.lower():
        return False
    wen, wde = len(en.split()), len(de.split())
    if min(wen, wde) < min_words or max(wen, wde) > max_words:
        return False
    if (max(len(en), len(de)) + 10) / (min(len(en), len(de)) + 10) > 1.8:
        return False
    if max(wen, wde) > 2.5 * min(wen, wde) + 1:
        return False
    for s in (en, de):
        if PLACEHOLDER_RE.search(s) or BAD_CHARS_RE.search(s) or not is_latin(s):
            return False
        if "--" in s or "http" in s or "www." in s or "@" in s:
            return False
        if not any(c.isalpha() for c in s):
            return False
    return True


SENT_SPLIT_RE = re.compile(r"(?<=[a-zäöüß0-9)\"”“]{2}[.!?])\s+(?=[A-ZÄÖÜ\"„“])")


def sentence_pairs(en, de):
    """Split a paragraph pair into sentence pairs when the counts agree."""
    se, sd = SENT_SPLIT_RE.split(en), SENT_SPLIT_RE.split(de)
    if len(se) > 1 and len(se) == len(sd):
        return list(zip(se, sd))
    return [(en, de)]


# --------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------


def read_mo(path):
    """Yield (msgid, msgstr) of a GNU .mo file, read by the standard library's
    `gettext.GNUTranslations` (decoded with the catalogue's charset): a
    message's context is dropped, plural messages give their singular and
    first translated form, the header is skipped. An unreadable file
    yields nothing."""
    try:
        with open(path, "rb") as f:
            catalog = gettext.GNUTranslations(f)._catalog  # {msgid: msgstr}
    except (OSError, ValueError) as error:  # bad magic, truncated, bad charset
        log(f"  skipping {path}: {error}")
        return
    for msgid, msgstr in catalog.items():
        if isinstance(msgid, tuple):  # (singular, plural form index)
            msgid, form = msgid
            if form != 0:
                continue
        msgid = msgid.split("\x04")[-1]  # "context\x04msgid"
        if msgid and msgstr:  # not the header, not untranslated
            yield msgid, msgstr


def gettext_pairs(mo_files):
    pairs = []
    for path in mo_files:
        for en, de in read_mo(path):
            en = clean_text(en, accelerators=True)
            de = clean_text(de, accelerators=True)
            pairs.append((en, de))
    return pairs


LO_ELEM_RE = re.compile(r'<(p|h[1-6])\b[^>]*?\bid="([^"]+)"[^>]*>(.*?)</\1>', re.S)
P_RE = re.compile(r"<p\b[^>]*>(.*?)</p>", re.S)


def read_text(path):
    return open(path, encoding="utf-8", errors="replace").read()


def lohelp_pairs(en_root, de_root):
    pairs = []
    en_dir = os.path.join(en_root, "usr/share/libreoffice/help/en-US")
    de_dir = os.path.join(de_root, "usr/share/libreoffice/help/de")
    for dirpath, dirnames, filenames in os.walk(en_dir):
        dirnames.sort()
        for fn in sorted(filenames):
            if not fn.endswith(".html"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, fn), en_dir)
            de_path = os.path.join(de_dir, rel)
            if not os.path.exists(de_path):
                continue
            de_map = {}
            for _, pid, txt in LO_ELEM_RE.findall(read_text(de_path)):
                de_map.setdefault(pid, txt)
            seen = set()
            for _, pid, txt in LO_ELEM_RE.findall(read_text(os.path.join(dirpath, fn))):
                if pid in seen or pid not in de_map:
                    continue
                seen.add(pid)
                pairs += sentence_pairs(clean_text(txt), clean_text(de_map[pid]))
    return pairs


def ordered_help_pairs(en_dir, de_dir, en_suffix="", de_suffix=""):
    """Align <p> paragraphs by order in pages with equal paragraph counts."""
    pairs, used, skipped = [], 0, 0
    for fn in sorted(os.listdir(en_dir)):
        if not fn.endswith(en_suffix + ".html"):
            continue
        de_path = os.path.join(
            de_dir, fn[: len(fn) - len(en_suffix + ".html")] + de_suffix + ".html"
        )
        if not os.path.exists(de_path):
            continue
        pe = P_RE.findall(read_text(os.path.join(en_dir, fn)))
        pd = P_RE.findall(read_text(de_path))
        if len(pe) != len(pd):
            skipped += 1
            continue
        used += 1
        for a, b in zip(pe, pd):
            pairs += sentence_pairs(clean_text(a), clean_text(b))
    log(f"    pages aligned {used}, skipped (paragraph count mismatch) {skipped}")
    return pairs


BRACKETS_RE = re.compile(r"\{[^}]*\}|\[[^\]]*\]|\([^)]*\)|<[^>]*>")


def ding_pairs(path):
    pairs = []
    for line in open(path, encoding="utf-8"):
        if line.startswith("#") or " :: " not in line:
            continue
        de, en = line.rstrip("\n").split(" :: ", 1)
        de_senses, en_senses = de.split(" | "), en.split(" | ")
        if len(de_senses) != len(en_senses):
            de_senses, en_senses = de_senses[:1], en_senses[:1]
        for d, e in zip(de_senses, en_senses):
            d = WS_RE.sub(" ", BRACKETS_RE.sub(" ", d.split("; ")[0])).strip()
            e = WS_RE.sub(" ", BRACKETS_RE.sub(" ", e.split("; ")[0])).strip()
            if len(e.split()) >= 4:
                pairs.append(
                    (unicodedata.normalize("NFC", e), unicodedata.normalize("NFC", d))
                )
    return pairs


def installed_mo_owners(mo_files):
    """Map the installed .mo files to 'package version' strings via dpkg."""
    res = subprocess.run(["dpkg", "-S", *mo_files], capture_output=True, text=True)
    pkgs = sorted(
        {line.split(":")[0] for line in res.stdout.splitlines() if ":" in line}
    )
    if not pkgs:
        return []
    res = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *pkgs],
        capture_output=True,
        text=True,
    )
    return sorted(line for line in res.stdout.splitlines() if line)


# --------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------


def encode_matrix(sp, sentences):
    out = np.zeros((len(sentences), SEQ_LEN), dtype=np.uint16)
    lengths = []
    for i, ids in enumerate(sp.encode(sentences)):
        lengths.append(len(ids) + 1)
        ids = ids[: SEQ_LEN - 1] + [1]
        out[i, : len(ids)] = ids
    return out, np.array(lengths)


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument(
        "--out", default="data/ende", help="The directory to write the corpus to."
    )
    ap.add_argument(
        "--vocab-size",
        type=int,
        default=4000,
        help="The SentencePiece vocabulary size.",
    )
    ap.add_argument(
        "--cache",
        default=None,
        help="Where downloaded Debian packages are kept; None means OUT/debs.",
    )
    ap.add_argument(
        "--skip-keras-check",
        action="store_true",
        help="Skip the final check that KerasHub's T5Tokenizer round-trips a "
        "sentence with the trained SentencePiece model.",
    )
    args = ap.parse_args()
    t0 = time.time()
    out = args.out
    os.makedirs(out, exist_ok=True)
    debs = fetch_debs(args.cache or os.path.join(out, "debs"))
    versions = {p: deb_version(d) for p, d in debs.items()}
    roots = {p: extract(d, os.path.join(out, "extract")) for p, d in debs.items()}
    log(f"packages ready ({time.time() - t0:.0f}s)")

    raw = {}  # source -> list of pairs (cleaned, unfiltered)
    meta = {}
    # gettext: deb catalogues then installed ones
    deb_mo = []
    for p in GETTEXT_PACKAGES:
        deb_mo += sorted(
            f
            for f in glob.glob(os.path.join(roots[p], "**/*.mo"), recursive=True)
            if "/de/LC_MESSAGES/" in f
        )
    sys_mo = sorted(glob.glob("/usr/share/locale/de/LC_MESSAGES/*.mo"))
    raw["gettext"] = gettext_pairs(deb_mo) + gettext_pairs(sys_mo)
    meta["gettext"] = {
        "packages": [f"{p} {versions[p]}" for p in GETTEXT_PACKAGES]
        + ["installed: " + s for s in installed_mo_owners(sys_mo)],
        "licence": "per package: "
        + ", ".join(f"{p} {lic}" for p, lic in GETTEXT_PACKAGES.items())
        + "; installed catalogues: see /usr/share/doc/<package>/copyright",
        "catalogues": len(deb_mo) + len(sys_mo),
    }
    log(
        f"gettext: {len(deb_mo)} deb + {len(sys_mo)} installed .mo, "
        f"{len(raw['gettext'])} raw"
    )

    for name, ((pen, pde), lic) in HELP_SOURCES.items():
        log(f"{name}:")
        if name == "lohelp":
            raw[name] = lohelp_pairs(roots[pen], roots[pde])
        elif name == "gimphelp":
            raw[name] = ordered_help_pairs(
                os.path.join(roots[pen], "usr/share/gimp/2.0/help/en"),
                os.path.join(roots[pde], "usr/share/gimp/2.0/help/de"),
            )
        else:
            raw[name] = ordered_help_pairs(
                os.path.join(roots[pen], "usr/share/debian-reference"),
                os.path.join(roots[pde], "usr/share/debian-reference"),
                ".en",
                ".de",
            )
        meta[name] = {
            "packages": [f"{p} {versions[p]}" for p in (pen, pde)],
            "licence": lic,
        }
        log(f"    {len(raw[name])} raw")

    ding_path = os.path.join(roots[DING_PACKAGE[0]], "usr/share/trans/de-en")
    raw["ding"] = ding_pairs(ding_path)
    meta["ding"] = {
        "packages": [f"{DING_PACKAGE[0]} {versions[DING_PACKAGE[0]]}"],
        "licence": DING_PACKAGE[1],
    }
    log(f"ding: {len(raw['ding'])} raw (English side >= 4 words)")

    # filter + dedupe on English (keep first), sentence-like sources first
    seen = set()
    kept = {}
    for name in ["gettext", "lohelp", "gimphelp", "debref", "ding"]:
        kept[name] = []
        for en, de in raw[name]:
            key = en.lower()
            if key in seen or not keep_pair(en, de):
                continue
            seen.add(key)
            kept[name].append((en, de))
    n_sent = sum(len(v) for k, v in kept.items() if k != "ding")
    ding_cap = int(n_sent * DING_MAX_FRACTION / (1 - DING_MAX_FRACTION))
    rng = random.Random(SEED)
    if len(kept["ding"]) > ding_cap:
        kept["ding"] = rng.sample(kept["ding"], ding_cap)

    data = [(en, de, name) for name, v in kept.items() for en, de in v]
    rng.shuffle(data)
    splits = {
        "test": data[:N_TEST],
        "valid": data[N_TEST : N_TEST + N_VALID],
        "train": data[N_TEST + N_VALID :],
    }
    for split, rows in splits.items():
        for lang, col in (("en", 0), ("de", 1)):
            with open(os.path.join(out, f"{split}.{lang}"), "w", encoding="utf-8") as f:
                f.writelines(r[col] + "\n" for r in rows)

    log("\npairs kept per source:")
    for name in kept:
        meta[name]["raw_pairs"] = len(raw[name])
        meta[name]["pairs"] = len(kept[name])
        meta[name]["pairs_per_split"] = {
            s: sum(1 for r in rows if r[2] == name) for s, rows in splits.items()
        }
        log(f"  {name:9s} {len(kept[name]):7d}  (raw {len(raw[name])})")
    log(
        f"  total     {len(data):7d}  train {len(splits['train'])} valid "
        f"{len(splits['valid'])} test {len(splits['test'])}  (ding cap {ding_cap})"
    )
    with open(os.path.join(out, "sources.json"), "w") as f:
        json.dump(
            {
                "sources": meta,
                "seed": SEED,
                "total_pairs": len(data),
                "splits": {s: len(r) for s, r in splits.items()},
            },
            f,
            indent=2,
            ensure_ascii=False,
        )

    # SentencePiece on train en+de
    import sentencepiece as spm

    spm_input = os.path.join(out, "spm_input.txt")
    with open(spm_input, "w", encoding="utf-8") as f:
        for en, de, _ in splits["train"]:
            f.write(en + "\n" + de + "\n")
    spm.SentencePieceTrainer.train(
        input=spm_input,
        model_prefix=os.path.join(out, "spm"),
        model_type="unigram",
        vocab_size=args.vocab_size,
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        input_sentence_size=2_000_000,
        shuffle_input_sentence=True,
        num_threads=os.cpu_count() or 1,
        minloglevel=2,
    )
    os.remove(spm_input)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(out, "spm.model"))
    assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)

    arrays, stats = {}, {}
    for split, rows in splits.items():
        for lang, col in (("en", 0), ("de", 1)):
            arr, lengths = encode_matrix(sp, [r[col] for r in rows])
            arrays[f"{split}_{lang}"] = arr
            stats[f"{split}_{lang}"] = lengths
    np.savez(os.path.join(out, "tokens.npz"), **arrays)
    log(f"\nspm vocab size {sp.get_piece_size()}")
    for lang in ("en", "de"):
        lengths = stats[f"train_{lang}"] - 1
        log(
            f"  train {lang}: mean tokens {lengths.mean():.1f} (without eos), "
            f"truncated at {SEQ_LEN}: {100 * (lengths + 1 > SEQ_LEN).mean():.2f}%"
        )

    if not args.skip_keras_check:
        import keras_hub

        tok = keras_hub.models.T5Tokenizer(proto=os.path.join(out, "spm.model"))
        text = "Öffnen Sie die Datei und prüfen Sie die Größe der Tabellenblätter."
        ids = tok(text)
        back = tok.detokenize(ids)
        back = (
            back
            if isinstance(back, str)
            else back.numpy().decode()
            if hasattr(back, "numpy")
            else str(back)
        )
        assert back == text, (back, text)
        assert tok.pad_token_id == 0 and tok.end_token_id == 1
        log(f"keras_hub T5Tokenizer round-trip ok: {back!r}")

    log("\nexamples (train):")
    for en, de, name in random.Random(SEED + 1).sample(splits["train"], 5):
        log(f"  [{name}] {en}\n      -> {de}")
    log(f"\ndone in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
