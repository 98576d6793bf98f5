"""RollCodec: the one place that converts rolls and places the melody.

User rolls (what MIDI, metrics, evaluation and `chorus generate` see) are (N, T, 128 pitches, K) in {-1, 1}, with
the melody in track 0 (RollCodec.MELODY_TRACK). A model computes over its pitch window, and with the categorical
head in {0, 1}; RollCodec maps between the two, so nothing else needs to know the window or the head.

No TensorFlow here: evaluation and the CLI's input checks use it before TensorFlow is imported (the key rule's
functions come from data.pipeline, which imports it, so they are imported only when key normalization is on).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np


@dataclass(frozen=True)
class RollCodec:
    """User rolls (N, T, pitches, K) in {-1, 1} <-> model tensors (N, T, window, K)."""
    MELODY_TRACK: ClassVar[int] = 0  # the conditioning melody is track 0 of every roll (voices top to bottom)

    head: str
    pitch_low: int
    pitch_window: int
    pitches: int
    key_normalize: bool = False

    @staticmethod
    def user_rolls(on: np.ndarray) -> np.ndarray:
        """{0, 1} (or bool) rolls, as datasets and MIDI give them -> user rolls in {-1, 1}, float32."""
        return np.asarray(on).astype(np.float32) * 2.0 - 1.0

    @staticmethod
    def notes(outputs: np.ndarray, threshold: float) -> np.ndarray:
        """Decoded outputs (or user rolls) -> bool rolls: on where above threshold (the lab's sample.threshold)."""
        return np.asarray(outputs) > threshold

    @classmethod
    def melody(cls, rolls):
        """The melody track of rolls (N, T, P, K), kept as a track: (N, T, P, 1) (arrays and tensors alike)."""
        return rolls[..., cls.MELODY_TRACK:cls.MELODY_TRACK + 1]

    @classmethod
    def with_melody(cls, rolls: np.ndarray, melody: np.ndarray) -> np.ndarray:
        """Bool rolls (N, T, P, K) whose melody track becomes the given melody (N, T, P, 1) (> 0: on), in place:
        what is written and scored is the melody the user gave, whatever the generator made of it."""
        rolls[..., cls.MELODY_TRACK] = melody[..., 0] > 0
        return rolls

    @property
    def binary(self) -> bool:
        """Model tensors are {0, 1} (categorical: one-hot) rather than {-1, 1} (tanh)."""
        return self.head == "categorical"

    def encode(self, rolls: np.ndarray) -> np.ndarray:
        """{-1, 1} (or bool) user rolls -> model inputs: cropped to the window, {0, 1} for the categorical head."""
        x = np.asarray(rolls)[:, :, self.pitch_low:self.pitch_low + self.pitch_window, :]
        on = x > 0
        return on.astype(np.float32) if self.binary else np.where(on, 1.0, -1.0).astype(np.float32)

    def decode(self, outputs: np.ndarray) -> np.ndarray:
        """Model outputs -> user rolls (N, T, pitches, K) float32 where > 0 means on (tanh values pass through)."""
        outputs = np.asarray(outputs, np.float32)
        if self.binary:
            rest = 1.0 - outputs.sum(axis=2, keepdims=True)
            best = outputs.argmax(axis=2)[:, :, None, :]
            top = np.take_along_axis(outputs, best, axis=2)
            on = (np.arange(outputs.shape[2])[None, None, :, None] == best) & (top > rest)
            outputs = np.where(on, 1.0, -1.0).astype(np.float32)
        n, t, _, k = outputs.shape
        full = np.full((n, t, self.pitches, k), -1.0, np.float32)
        full[:, :, self.pitch_low:self.pitch_low + self.pitch_window, :] = outputs
        return full

    def to_key(self, melody: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Encoded melodies -> (the melodies moved to C, their shifts): the rule the training data went through
        (data.pipeline.key_shifts); zeros when key normalization is off."""
        if not self.key_normalize:
            return melody, np.zeros(len(melody), np.int64)
        from chorus.data.pipeline import key_shifts, shift_pitches

        shifts, fits = key_shifts(melody, self.pitch_low)
        shifts = np.where(fits, shifts, 0)  # a melody wider than the window minus 11 pitches stays where it is
        return shift_pitches(melody, shifts, 0.0 if self.binary else -1.0), shifts

    def from_key(self, rolls: np.ndarray, shifts: np.ndarray) -> np.ndarray:
        """Decoded user rolls (N, T, pitches, K) moved back from C by the shifts to_key applied."""
        if not self.key_normalize:
            return rolls
        from chorus.data.pipeline import shift_pitches

        return shift_pitches(rolls, -shifts, -1.0)
