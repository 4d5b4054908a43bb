"""Generate every prompt and number word (FR, EN) as 8 kHz µ-law with espeak-ng and sox.

    python -m ivr_bridge.prompts.generate [--out DIR] [--only FR]

Each file is raw G.711 µ-law (no header), 8000 samples/s, mono, silence trimmed at both
ends, normalised to -3 dBFS. The word list comes from `ivr_bridge.speech.all_words`, the
sentences from `SENTENCES`; a file is only rebuilt when its text changed (a sidecar
``texts.json`` records what each file says). Tones (ringback, credit warning) are synthesised
by sox into ``tones/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ivr_bridge import dialog, speech

VOICES = {"FR": "fr-fr", "EN": "en-gb"}
SPEED = {"FR": 155, "EN": 160}

SENTENCES: dict[str, dict[str, str]] = {
    "FR": {
        dialog.P_WELCOME: "Bienvenue sur le service de cartes prépayées.",
        dialog.P_ENTER_PIN: "Veuillez composer votre code confidentiel, suivi de la touche dièse.",
        dialog.P_WRONG_PIN: "Code incorrect.",
        dialog.P_TOO_MANY: "Nombre maximal d'essais atteint.",
        dialog.P_LOCKED: "Trop d'essais erronés. L'accès est temporairement bloqué.",
        dialog.P_YOUR_CREDIT: "Votre crédit est de",
        dialog.P_ENTER_DEST: "Composez le numéro de votre correspondant, suivi de la touche dièse.",
        dialog.P_BARRED: "Cette destination n'est pas autorisée.",
        dialog.P_NO_CREDIT: "Votre crédit est épuisé.",
        dialog.P_INSUFFICIENT: "Votre crédit est insuffisant pour cette destination.",
        dialog.P_INVALID: "Ce numéro n'est pas valide.",
        dialog.P_CONNECTING: "Mise en relation.",
        dialog.P_CALL_FAILED: "Votre appel n'a pas pu aboutir.",
        dialog.P_BUSY: "La ligne de votre correspondant est occupée.",
        dialog.P_NO_ANSWER: "Votre correspondant ne répond pas.",
        dialog.P_UNREACHABLE: "Votre correspondant n'est pas joignable.",
        dialog.P_LANGUAGE_OPTION: "Pour le français, tapez 1.",
        dialog.P_NO_REDIAL: "Aucun numéro à rappeler.",
        dialog.P_YOU_HAVE: "Vous disposez de",
        dialog.P_FOR_THIS_CALL: "pour cet appel.",
        dialog.P_CREDIT_WARNING: "Attention, votre crédit est presque épuisé.",
        dialog.P_ANOTHER_CALL: (
            "Pour passer un autre appel, composez le numéro suivi de la touche dièse. "
            "Pour rappeler le dernier numéro, tapez étoile puis dièse."
        ),
        dialog.P_VOUCHER_MENU: "Pour recharger votre compte avec un code, tapez étoile puis deux.",
        dialog.P_VOUCHER_ENTER: "Composez votre code de recharge, suivi de la touche dièse.",
        dialog.P_VOUCHER_INVALID: "Ce code de recharge n'est pas valide.",
        dialog.P_VOUCHER_USED: "Ce code de recharge a déjà été utilisé.",
        dialog.P_VOUCHER_EXPIRED: "Ce code de recharge a expiré.",
        dialog.P_VOUCHER_DONE: "Votre compte a été rechargé.",
        dialog.P_EXHAUSTED: "Votre crédit est épuisé. La communication va être coupée.",
        dialog.P_GOODBYE: "Au revoir.",
        dialog.P_SERVICE_ERROR: "Le service est momentanément indisponible.",
    },
    "EN": {
        dialog.P_WELCOME: "Welcome to the prepaid calling service.",
        dialog.P_ENTER_PIN: "Please enter your PIN, followed by the hash key.",
        dialog.P_WRONG_PIN: "Incorrect PIN.",
        dialog.P_TOO_MANY: "Too many attempts.",
        dialog.P_LOCKED: "Too many failed attempts. Access is temporarily blocked.",
        dialog.P_YOUR_CREDIT: "Your credit is",
        dialog.P_ENTER_DEST: "Please dial the number you wish to call, followed by the hash key.",
        dialog.P_BARRED: "Calls to this destination are not allowed.",
        dialog.P_NO_CREDIT: "You have no credit left.",
        dialog.P_INSUFFICIENT: "Your credit is not sufficient for this destination.",
        dialog.P_INVALID: "This number is not valid.",
        dialog.P_CONNECTING: "Connecting your call.",
        dialog.P_CALL_FAILED: "Your call could not be connected.",
        dialog.P_BUSY: "The number you are calling is busy.",
        dialog.P_NO_ANSWER: "There is no answer from the number you are calling.",
        dialog.P_UNREACHABLE: "The number you are calling cannot be reached.",
        dialog.P_LANGUAGE_OPTION: "For English, press 2.",
        dialog.P_NO_REDIAL: "There is no number to call again.",
        dialog.P_YOU_HAVE: "You have",
        dialog.P_FOR_THIS_CALL: "for this call.",
        dialog.P_CREDIT_WARNING: "Your credit is about to run out.",
        dialog.P_ANOTHER_CALL: (
            "To make another call, dial the number followed by the hash key. "
            "To call the last number again, press star then hash."
        ),
        dialog.P_VOUCHER_MENU: "To top up with a voucher, press star then two.",
        dialog.P_VOUCHER_ENTER: "Please enter your voucher code, followed by the hash key.",
        dialog.P_VOUCHER_INVALID: "This voucher code is not valid.",
        dialog.P_VOUCHER_USED: "This voucher has already been used.",
        dialog.P_VOUCHER_EXPIRED: "This voucher has expired.",
        dialog.P_VOUCHER_DONE: "Your account has been recharged.",
        dialog.P_EXHAUSTED: "Your credit is exhausted. Your call will now be cut.",
        dialog.P_GOODBYE: "Goodbye.",
        dialog.P_SERVICE_ERROR: "The service is temporarily unavailable.",
    },
}

# Tones (language independent, ``tones/<name>.ul``): sox synth arguments.
# Ringback: 440 Hz, 1.5 s on / 3.5 s off (the French cadence), well below speech level.
# Warning before the credit cut: three 1400 Hz beeps (distinct from dial and ringback tones).
TONES: dict[str, list[str]] = {
    dialog.TONE_RINGBACK: ["synth", "1.5", "sine", "440", "gain", "-12", "pad", "0", "3.5"],
    dialog.TONE_WARNING: [
        "synth", "0.2", "sine", "1400", "gain", "-6", "pad", "0", "0.2", "repeat", "2",
    ],
}

DEFAULT_OUT = Path(__file__).resolve().parent


def texts(language: str) -> dict[str, str]:
    """file stem -> text to speak, for one language."""
    out = {speech.prompt_name(word): word for word in speech.all_words(language)}
    out.update(SENTENCES[language])
    return out


def render(text: str, language: str, target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "tts.wav"
        subprocess.run(
            ["espeak-ng", "-v", VOICES[language], "-s", str(SPEED[language]), "-w", str(wav),
             text],
            check=True,
            capture_output=True,
        )  # fmt: skip
        subprocess.run(
            ["sox", str(wav), "-r", "8000", "-c", "1", "-t", "ul", str(target),
             "silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%",
             "reverse", "gain", "-n", "-3", "pad", "0", "0.08"],
            check=True,
            capture_output=True,
        )  # fmt: skip


def render_tone(effects: list[str], target: Path) -> None:
    subprocess.run(
        ["sox", "-n", "-r", "8000", "-c", "1", "-t", "ul", str(target), *effects],
        check=True,
        capture_output=True,
    )


def generate_tones(out_dir: Path) -> int:
    folder = out_dir / "tones"
    folder.mkdir(parents=True, exist_ok=True)
    index_path = folder / "tones.json"
    old: dict[str, list[str]] = json.loads(index_path.read_text()) if index_path.exists() else {}
    written = 0
    for name, effects in sorted(TONES.items()):
        target = folder / f"{name}.ul"
        if old.get(name) == effects and target.exists():
            continue
        render_tone(effects, target)
        written += 1
    index_path.write_text(json.dumps(TONES, indent=1, sort_keys=True))
    return written


def generate(out_dir: Path, languages: list[str]) -> int:
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is required to generate prompts")
    written = generate_tones(out_dir)
    for lang in languages:
        folder = out_dir / lang.lower()
        folder.mkdir(parents=True, exist_ok=True)
        index_path = folder / "texts.json"
        old: dict[str, str] = json.loads(index_path.read_text()) if index_path.exists() else {}
        wanted = texts(lang)
        for stem, text in sorted(wanted.items()):
            target = folder / f"{stem}.ul"
            if old.get(stem) == text and target.exists():
                continue
            render(text, lang, target)
            written += 1
        for stale in folder.glob("*.ul"):
            if stale.stem not in wanted:
                stale.unlink()
        index_path.write_text(json.dumps(wanted, ensure_ascii=False, indent=1, sort_keys=True))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--only", action="append", choices=sorted(VOICES))
    args = parser.parse_args(argv)
    count = generate(args.out, args.only or sorted(VOICES))
    print(f"{count} prompt file(s) written under {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
