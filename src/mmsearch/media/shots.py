"""Split a stream of sampled frames into shots, with bounded memory, so a video is indexed one keyframe per shot.

The difference between two consecutive samples (0 = same, about 1 = unrelated) has to see cuts but not the two
things that also change pixels between samples taken 0.5 s apart: camera motion and fades. No single measure
does, so three are combined (measured on generated pans, fades, hard cuts and equal-brightness hue cuts):

- structure: the grey 64x36 frames, each normalised to zero mean and unit variance, mean absolute difference.
  Blind to a fade (a change of gain and offset) but fires on any motion. 0 when either frame is flat.
- distribution: half-L1 distance of the histograms (16 grey levels; 4x4x4 colours of the 16x9 signature).
  Blind to motion (what moves stays in the frame) but fires on fades (the mass shifts bin by bin).
- mean colour: the distance between the frames' mean Y, Cb, Cr. Moves a little per sample in a fade or a pan,
  a lot on a cut between different colours, and is the only one that sees a cut between two flat pictures of
  different hue but equal brightness.

    difference = max(min(structure, distribution), mean colour)

A cut is a difference over `threshold`, or a spike over still footage (see SPIKE). A cut needs the picture
to change in a way neither a fade nor motion explains (both of the first two), or the
overall colour to jump. Measured at 2 samples/s: cuts 0.31-0.57, a 200 px/s pan at 640 px wide 0.16-0.22, a
3 s crossfade 0.13 per sample. Cuts it misses: between two shots of the same palette and layout (shot /
reverse-shot in one room); the `max_gap` split still samples those every few seconds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from mmsearch.media.video import SampledFrame

# A difference under `threshold` is still a cut when it spikes over still footage: SPIKE times the mean of the
# last WINDOW differences (CALM at least) and above MIN_SPIKE. A pan or a fade moves every sample (its mean is
# high, so it never spikes); a cut between two similar palettes in still footage scores 0.15-0.3.
WINDOW = 4
SPIKE = 5.0
MIN_SPIKE = 0.12
CALM = 0.02
FLAT_STD = 8.0  # grey levels: below this a frame has no structure worth comparing (a flat colour, black)
_YCC = np.array([[0.299, 0.587, 0.114], [-0.169, -0.331, 0.5], [0.5, -0.419, -0.081]])


@dataclass
class Shot:
    """A stretch of video between two cuts (or split at `max_gap`), represented by one frame."""

    start: float
    end: float
    keyframe: SampledFrame  # the frame nearest the shot's middle
    frames: int  # sampled frames in the shot


@dataclass
class _Look:
    """What `difference` compares, computed once per frame."""

    z: np.ndarray | None  # normalised grey frame; None when flat
    hist: np.ndarray  # 16 grey bins, then 64 colour bins, each group summing to 1
    mean: np.ndarray  # mean Y, Cb, Cr (0-255 scale)


def _look(frame: SampledFrame) -> _Look:
    grey = frame.small.astype(np.float32)
    std = float(grey.std())
    z = (grey - grey.mean()) / std if std >= FLAT_STD else None
    color = np.asarray(frame.color).reshape(-1, 3).astype(np.int32)
    q = color * 4 // 256
    grey_hist = np.bincount((frame.small.astype(np.int32) * 16 // 256).ravel(), minlength=16) / grey.size
    color_hist = np.bincount(q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2], minlength=64) / len(color)
    return _Look(z, np.concatenate([grey_hist, color_hist]), (color @ _YCC.T).mean(axis=0))


def _difference(a: _Look, b: _Look) -> float:
    structure = float(np.abs(a.z - b.z).mean()) / 2.256 if a.z is not None and b.z is not None else 0.0
    distribution = float(np.abs(a.hist - b.hist).sum()) / 4  # two half-L1 distances, averaged
    mean_color = float(np.linalg.norm(a.mean - b.mean)) / 255
    return max(min(structure, distribution), mean_color)


def difference(a: SampledFrame, b: SampledFrame) -> float:
    """How different two sampled frames look, 0 (same) to about 1; see the module docstring."""
    return _difference(_look(a), _look(b))


@dataclass
class _Open:
    """A shot being built: its frames (at most max_gap of them in time, plus merged short shots)."""

    start: float
    frames: list[SampledFrame] = field(default_factory=list)

    def close(self, end: float) -> Shot:
        middle = (self.start + end) / 2
        keyframe = min(self.frames, key=lambda f: abs(f.t - middle))
        return Shot(self.start, end, keyframe, len(self.frames))


def detect_shots(
    frames: Iterable[SampledFrame],
    threshold: float = 0.30,
    max_gap: float = 10.0,
    min_length: float = 0.5,
    end: float | None = None,
) -> Iterator[Shot]:
    """Shots from frames in time order (as `sample_frames` yields them), as they close. A cut is where
    `difference` between consecutive frames exceeds `threshold`, or spikes to SPIKE times the recent differences
    (still footage: a cut between similar palettes); a new shot starts at the first frame after it.
    A shot reaching `max_gap` seconds is split there, so long shots are still sampled. A shot shorter than
    `min_length` is merged into the previous one (the first one into the next), unless that would make it longer
    than max_gap + min_length. `end` (the video's duration) closes the last shot; without it the last shot ends
    one sample interval after its last frame. Memory: the frames of the open shot and of the one held back in
    case the next is short."""
    held: _Open | None = None  # closed, waiting to know whether the next shot is too short to stand alone
    held_end = 0.0
    current: _Open | None = None
    prev: _Look | None = None
    last_t = 0.0
    step = 0.0
    recent: deque[float] = deque(maxlen=WINDOW)  # the last differences: how much this footage moves
    for frame in frames:
        look = _look(frame)
        if current is None:
            current = _Open(frame.t, [frame])
            prev, last_t = look, frame.t
            continue
        if frame.t <= last_t:  # out of order or repeated: nothing to compare it with
            continue
        step = frame.t - last_t
        d = _difference(prev, look) if prev is not None else 0.0
        calm = max(float(np.mean(recent)) if recent else CALM, CALM)
        cut = d > threshold or (d > MIN_SPIKE and d > SPIKE * calm)
        recent.append(d)
        split = frame.t - current.start >= max_gap - 1e-6
        prev, last_t = look, frame.t
        if not (cut or split):
            current.frames.append(frame)
            continue
        length = frame.t - current.start
        if length < min_length:
            if held is None:  # a short first shot joins the next one: ignore this cut
                current.frames.append(frame)
                continue
            if held_end - held.start + length <= max_gap + min_length:
                held.frames.extend(current.frames)
                held_end = frame.t
                current = _Open(frame.t, [frame])
                continue
        if held is not None:
            yield held.close(held_end)
        held, held_end = current, frame.t
        current = _Open(frame.t, [frame])
    if current is None:
        return
    final = max(end, last_t) if end is not None else last_t + step
    if held is not None:
        if final - current.start < min_length and final - held.start <= max_gap + min_length:
            held.frames.extend(current.frames)
            yield held.close(final)
            return
        yield held.close(held_end)
    yield current.close(final)
