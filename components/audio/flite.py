"""CMU Flite voices for the synthetic data generator: recorded speakers of the CMU ARCTIC
and KAL databases (``awb`` Scottish male, ``rms`` US male, ``slt`` US female, ``kal16`` US
male), named ``flite:<voice>`` in the generator's voice lists.

Flite is an optional extra, like eSpeak NG, but no PyPI wheel ships it: it comes from the
Debian package ``flite`` (``apt-get install flite``; BSD-style licence, voices included),
and this module runs its command-line program, one fresh process per word, so each clip is
a pure function of its text and settings. Nothing is downloaded at run time.
Called by ``components.audio.synth_speech``.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from components.audio.espeak import Batch, Rendition
from components.errors import ComponentError

PREFIX = "flite:"
#: The recorded speakers the Debian package ships, as the generator names them (the voice
#: group ``flite`` in a voice list).
VOICES = (f"{PREFIX}awb", f"{PREFIX}rms", f"{PREFIX}slt", f"{PREFIX}kal16")
INSTALL_HINT = "apt-get install flite (Debian/Ubuntu)"
# The diphone voices (kal, kal16) take an absolute mean F0; the clustergen voices (awb, rms,
# slt) a factor on their own F0 contour (rms ignores it; the generator's replay-speed warp
# still varies its pitch).
_DIPHONE_F0_HZ = {"kal": 105.0, "kal16": 105.0}


def is_flite(voice: str) -> bool:
    return voice.startswith(PREFIX)


def speaker(voice: str) -> str:
    """Who speaks: ``flite:kal`` is ``flite:kal16``'s speaker at 8 kHz; other names are
    their own (so splits can be checked for a speaker heard in two of them)."""
    return f"{PREFIX}kal16" if voice == f"{PREFIX}kal" else voice


@functools.cache
def _program() -> str:
    path = shutil.which("flite")
    if path is None:
        raise ComponentError(
            f"voices named '{PREFIX}...' need CMU Flite, which is not installed: {INSTALL_HINT}, "
            "or leave the 'flite' voices out of data.synth.train_voices"
        )
    return path


@functools.cache
def voices() -> tuple[str, ...]:
    """The voices the installed Flite has built in (``flite -lv``)."""
    out = subprocess.run([_program(), "-lv"], capture_output=True, text=True, check=True).stdout
    return tuple(out.split(":", 1)[-1].split())


def version() -> str:
    """Flite's version line, e.g. ``flite-2.2-current Sep 2018``."""
    out = subprocess.run([_program(), "--version"], capture_output=True, text=True, check=False)
    lines = [ln.strip() for ln in out.stdout.splitlines() if "version" in ln]
    return lines[0].removeprefix("version:").strip() if lines else "flite"


def check_voices(names: Sequence[str]) -> None:
    """Fail early, naming the voice, when Flite is missing or lacks a voice."""
    for name in names:
        if name.removeprefix(PREFIX) not in voices():
            raise ComponentError(
                f"unknown Flite voice {name!r}: the installed Flite has {list(voices())}"
            )


def synthesize(items: Sequence[tuple[str, Rendition]]) -> Batch:
    """Speak each ``(text, rendition)`` of one voice; eSpeak's units are mapped to Flite's:
    rate (words per minute, 175 = normal) to ``duration_stretch``, pitch 0-100 to half an
    octave either side of the voice's own F0 (see :func:`_settings`)."""
    audio, rate = [], 16000
    with tempfile.TemporaryDirectory() as tmp:
        for i, (text, r) in enumerate(items):
            out = Path(tmp) / f"{i}.wav"
            voice = r.voice.removeprefix(PREFIX)
            args = [a for k, v in _settings(voice, r).items() for a in ("--setf", f"{k}={v:.3f}")]
            proc = subprocess.run(
                [_program(), "-voice", voice, *args, "-t", text, "-o", str(out)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0 or not out.is_file():
                raise ComponentError(f"Flite failed on {text!r} in voice {voice!r}: "
                                     f"{proc.stderr.strip()[-200:] or 'no output'}")  # fmt: skip
            with wave.open(str(out)) as w:
                rate = w.getframerate()
                audio.append(np.frombuffer(w.readframes(w.getnframes()), "<i2").copy())
    return Batch(version(), rate, audio)


def _settings(voice: str, r: Rendition) -> dict[str, float]:
    """Flite features for one rendition. Pitch range has no clustergen counterpart; the
    diphone voices take it as the F0 deviation."""
    factor = 2 ** ((r.pitch - 50) / 100)
    settings = {"duration_stretch": 175 / r.rate}
    if voice in _DIPHONE_F0_HZ:
        f0 = _DIPHONE_F0_HZ[voice] * factor
        settings |= {
            "int_f0_target_mean": f0,
            "int_f0_target_stddev": 0.3 * f0 * r.pitch_range / 100,
        }
    else:
        settings["f0_shift"] = factor
    return settings
