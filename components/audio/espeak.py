"""A minimal ctypes binding to eSpeak NG, used only by the synthetic data generator.

eSpeak NG (GPL-3.0) is an optional extra: ``espeakng_loader`` ships the shared library
and its voice data, and is imported lazily here so the rest of the project never needs it.
The library is process-global, so one engine is initialised per process (:func:`engine`);
each synthesis call holds a lock and sets every parameter it uses. eSpeak still carries
some state from one utterance to the next (see :func:`synthesize_isolated`), so callers
that need reproducible audio synthesize whole batches in a fresh process.

Called by ``components.audio.synth_speech``; also runnable as ``python -m components.audio.espeak``,
the worker side of :func:`synthesize_isolated`.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import logging
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from components.errors import ComponentError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install tflm-pipelines[synth]"

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4

# int callback(short *wav, int numsamples, espeak_EVENT *events); the events are not used.
_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


@dataclass(frozen=True)
class Rendition:
    """How one word is spoken: eSpeak's own units (words per minute, 0-100 pitch and range)."""

    voice: str
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50
    volume: int = 100
    seed: int = 0


def _load_loader():  # -> the espeakng_loader module
    """Import the optional ``espeakng_loader`` package, or explain how to install it."""
    try:
        import espeakng_loader
    except ImportError as e:
        raise ComponentError(
            "the synthetic data generator needs eSpeak NG (package 'espeakng-loader'), "
            f"an optional GPL-3.0 extra: {INSTALL_HINT}"
        ) from e
    return espeakng_loader


def data_path() -> Path:
    """The ``espeak-ng-data`` folder that ships with ``espeakng_loader``."""
    try:
        return Path(_load_loader().get_data_path())
    except RuntimeError as e:
        raise ComponentError(f"eSpeak NG data is missing from espeakng_loader: {e}") from e


def languages() -> tuple[str, ...]:
    """Every language voice name (lower case, e.g. ``en-gb-scotland``) in the voice data."""
    lang = data_path() / "lang"
    return tuple(sorted(p.name.lower() for p in lang.rglob("*") if p.is_file()))


def variants() -> tuple[str, ...]:
    """Every voice variant name (``m1``, ``f3``, ``klatt``, ``whisper``, ...)."""
    return tuple(sorted(p.name for p in (data_path() / "voices" / "!v").iterdir()))


def check_voices(voices: tuple[str, ...] | list[str]) -> None:
    """Fail early, naming the voice, when a ``language[+variant]`` name does not exist:
    eSpeak itself silently ignores an unknown variant."""
    known_languages, known_variants = set(languages()), set(variants())
    for voice in voices:
        language, _, variant = voice.partition("+")
        if language.lower() not in known_languages:
            raise ComponentError(f"unknown eSpeak voice {voice!r}: no language {language!r}")
        if variant and variant not in known_variants:
            raise ComponentError(f"unknown eSpeak voice {voice!r}: no variant {variant!r}")


class Engine:
    """One initialised eSpeak NG library; use :func:`engine` rather than building one."""

    def __init__(self) -> None:
        loader = _load_loader()
        self._lib = _open_library(loader.get_library_path())
        self._lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._callback = _SynthCallback(self._collect)  # kept alive: the library holds it
        self.sample_rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data_path()).encode(), _INITIALIZE_DONT_EXIT
        )
        if self.sample_rate <= 0:
            raise ComponentError(f"espeak_Initialize failed with data path {data_path()}")
        self._lib.espeak_SetSynthCallback(self._callback)
        self.version = self._lib.espeak_Info(None).decode()
        log.info("eSpeak NG %s initialised at %d Hz", self.version, self.sample_rate)

    def _collect(self, wav, numsamples, _events) -> int:
        if numsamples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0  # 0 = keep going

    def synthesize(self, text: str, rendition: Rendition) -> np.ndarray:
        """Speak ``text`` and return its int16 samples at :attr:`sample_rate`."""
        with self._lock:
            self._chunks = []
            self._configure(rendition)
            data = text.encode("utf-8") + b"\0"
            status = self._lib.espeak_Synth(
                data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            self._check(status, f"espeak_Synth({text!r})")
            self._check(self._lib.espeak_Synchronize(), "espeak_Synchronize")
            chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)

    def _configure(self, r: Rendition) -> None:
        self._check(self._lib.espeak_SetVoiceByName(r.voice.encode()), f"voice {r.voice!r}")
        for parameter, value in ((_RATE, r.rate), (_PITCH, r.pitch), (_RANGE, r.pitch_range)):
            self._check(self._lib.espeak_SetParameter(parameter, value, 0), f"parameter {value}")
        self._check(self._lib.espeak_SetParameter(_VOLUME, r.volume, 0), "volume")
        self._lib.espeak_ng_SetRandSeed(r.seed)  # whisper/klatt voices draw random noise

    @staticmethod
    def _check(status: int, what: str) -> None:
        if status != _EE_OK:
            raise ComponentError(f"eSpeak NG failed on {what} (status {status})")


def _open_library(path: str) -> ctypes.CDLL:
    """Load the library and declare the argument types of the calls used."""
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        raise ComponentError(f"cannot load eSpeak NG library {path}: {e}") from e
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = None
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    return lib


@functools.cache
def engine() -> Engine:
    """The process's one eSpeak NG engine, initialised on first use."""
    return Engine()


class Batch(NamedTuple):
    """What :func:`synthesize_isolated` returns: the int16 audio of each item, in order."""

    version: str
    sample_rate: int
    audio: list[np.ndarray]


def synthesize_isolated(items: Sequence[tuple[str, Rendition]]) -> Batch:
    """Speak each ``(text, rendition)`` in a fresh interpreter, in order.

    eSpeak NG keeps static state between utterances (the pitch-flutter phase, the gain
    control), so one utterance's samples depend on every utterance spoken before it in the
    process. A fresh process per batch makes the audio a pure function of the batch, which
    is what a seeded data generator needs. A plain subprocess (not multiprocessing) is used so
    the caller's ``__main__`` (maybe a CLI importing TensorFlow) is not re-imported.
    """
    payload = pickle.dumps([(text, dataclasses.astuple(r)) for text, r in items])
    package_root = str(Path(__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, "-m", __name__],
        input=payload,
        capture_output=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise ComponentError(f"eSpeak NG worker failed (exit {proc.returncode}): {detail[0]}")
    return Batch(*pickle.loads(proc.stdout))


def _serve() -> None:
    """Worker side of :func:`synthesize_isolated`: pickled items on stdin, audio on stdout."""
    items = pickle.loads(sys.stdin.buffer.read())
    eng = engine()
    audio = [eng.synthesize(text, Rendition(*fields)) for text, fields in items]
    sys.stdout.buffer.write(pickle.dumps((eng.version, eng.sample_rate, audio)))


if __name__ == "__main__":
    _serve()
