"""Settings of a dataset build, and the typed fields that every config section is built from.

DataConfig is a plain dataclass: constructing one checks nothing. Its types carry their ranges (pydantic
`Field(ge=...)`, `Literal[...]`), which trainer.config checks when it validates YAML into it. Its defaults are read
from configs/default.yaml's data section, the one place every default is written.
"""
import importlib.resources
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import yaml
from pydantic import BeforeValidator, ConfigDict, Field, Strict, with_config
from pydantic_core import PydanticCustomError

# YAML gives exact types: a setting takes only its own (no "3" for 3, no 1 for true).
Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]


def _number(value: Any) -> float:
    """An int or a float; YAML 1.1 reads 2e-4 (no dot) as a string, so a string that parses is a number too."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("number", "expected a number")
    if value != value:
        raise PydanticCustomError("nan", "expected a number, got NaN")
    return float(value)


Num = Annotated[float, BeforeValidator(_number)]
SECTION = ConfigDict(extra="forbid")  # every config section: an unknown key is an error

_DEFAULT = yaml.safe_load((importlib.resources.files("chorus.configs") / "default.yaml").read_text())["data"]


@with_config(SECTION)
@dataclass
class DataConfig:
    source: Literal["chorales", "midi", "npy", "pypianoroll", "dataset"] = _DEFAULT["source"]
    # MIDI folder (midi), .npy/.npz file (npy), pypianoroll .npz file or folder (pypianoroll), built dataset dir
    path: Str | None = _DEFAULT["path"]
    cache_dir: Str = _DEFAULT["cache_dir"]
    steps: Annotated[Int, Field(ge=1)] = _DEFAULT["steps"]
    pitches: Annotated[Int, Field(ge=1, le=128)] = _DEFAULT["pitches"]
    tracks: Annotated[Int, Field(ge=1)] = _DEFAULT["tracks"]
    steps_per_beat: Annotated[Int, Field(ge=1)] = _DEFAULT["steps_per_beat"]
    beats_per_bar: Annotated[Int, Field(ge=1)] = _DEFAULT["beats_per_bar"]
    hop_bars: Annotated[Int, Field(ge=1)] = _DEFAULT["hop_bars"]
    transpose: Annotated[Int, Field(ge=-48, le=48)] = _DEFAULT["transpose"]
    empty_voice: Literal["drop", "keep"] = _DEFAULT["empty_voice"]
    holdout_fraction: Annotated[Num, Field(ge=0.0, le=0.9)] = _DEFAULT["holdout_fraction"]
    max_pieces: Annotated[Int, Field(ge=1)] | None = _DEFAULT["max_pieces"]
    seed: Int = _DEFAULT["seed"]
    # pypianoroll only: K track indices or names that become the voices (None: the first K non-empty non-drum)
    track_map: list[Any] | None = _DEFAULT["track_map"]  # ints and names mixed; data.pianoroll_io checks them
    order_by_pitch: Bool = _DEFAULT["order_by_pitch"]  # pypianoroll only: sort each file's K tracks by mean pitch

    @property
    def steps_per_bar(self) -> int:
        return self.steps_per_beat * self.beats_per_bar
