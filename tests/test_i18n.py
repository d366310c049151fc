"""nl, fr and en are shipped complete: every translatable string of the code is
in each catalogue, translated (nl, fr), not fuzzy, and compiled."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import polib
import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
LANGS = [code for code, _name in settings.LANGUAGES]


def catalogue(lang: str) -> polib.POFile:
    return polib.pofile(str(ROOT / "locale" / lang / "LC_MESSAGES" / "django.po"))


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> set[str]:
    """The msgids `makemessages` finds in the code today, extracted in a scratch copy."""
    work = tmp_path_factory.mktemp("i18n")
    for name in ("fablab", "devices", "firmware_bridge", "manage.py"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__", "static"))
        elif src.exists():
            shutil.copy(src, work / name)
    (work / "locale").mkdir()
    subprocess.run(
        # The same command as `make messages`; the bridge has no user-visible strings.
        [
            sys.executable,
            "manage.py",
            "makemessages",
            "-l",
            "nl",
            "--no-location",
            "-v",
            "0",
            "--ignore=firmware_bridge",
        ],
        cwd=work,
        check=True,
        capture_output=True,
    )
    return {
        e.msgid for e in polib.pofile(str(work / "locale" / "nl" / "LC_MESSAGES" / "django.po")) if e.msgid
    }


@pytest.mark.parametrize("lang", LANGS)
def test_catalogue_covers_every_string_in_the_code(lang, extracted):
    shipped = {e.msgid for e in catalogue(lang) if not e.obsolete}
    missing = sorted(extracted - shipped)
    assert not missing, f"{lang}: run `make messages` and translate: {missing[:10]}"


@pytest.mark.parametrize("lang", [lang for lang in LANGS if lang != "en"])
def test_catalogue_is_translated_and_not_fuzzy(lang):
    po = catalogue(lang)
    untranslated = [e.msgid for e in po.untranslated_entries() if not e.obsolete]
    fuzzy = [e.msgid for e in po.fuzzy_entries()]
    assert not untranslated, f"{lang}: {len(untranslated)} untranslated, e.g. {untranslated[:5]}"
    assert not fuzzy, f"{lang}: {len(fuzzy)} fuzzy, e.g. {fuzzy[:5]}"


@pytest.mark.parametrize("lang", LANGS)
def test_compiled_catalogue_matches_the_source(lang):
    po = catalogue(lang)
    mo_path = ROOT / "locale" / lang / "LC_MESSAGES" / "django.mo"
    assert mo_path.exists(), f"{lang}: run `make messages`"
    mo = polib.mofile(str(mo_path))
    compiled = {(e.msgid, e.msgstr) for e in mo if e.msgid}
    source = {(e.msgid, e.msgstr) for e in po.translated_entries() if not e.obsolete and e.msgid}
    assert source <= compiled, f"{lang}: django.mo is older than django.po; run `make messages`"


def test_placeholders_survive_translation():
    for lang in LANGS:
        for entry in catalogue(lang).translated_entries():
            translations = list(entry.msgstr_plural.values()) if entry.msgid_plural else [entry.msgstr]
            for translation in translations:
                for token in ("%(", "{"):
                    # A plural form may use or drop the count ("one booking" for %(count)d).
                    allowed = {entry.msgid.count(token), (entry.msgid_plural or entry.msgid).count(token)}
                    if translation.count(token) not in allowed:
                        pytest.fail(f"{lang}: placeholders differ in {entry.msgid!r} -> {translation!r}")
