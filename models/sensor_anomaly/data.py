"""Seeded synthetic sensor data for a motor-driven piston pump, healthy and faulty.

One window is ``length`` consecutive readings (one per second) of four
channels, in the order of ``CHANNELS``:

* vibration, mm/s: oscillation at the pump's stroke rate plus a second
  harmonic, with an amplitude that grows with load, and sensor noise;
* temperature, deg C: motor winding, around 60, set by load and ambient,
  drifting slowly;
* current, A: motor current proportional to load, pulsing with each stroke;
* pressure, bar: discharge pressure set by load, pulsing with each stroke.

Every window draws its own operating point (load, stroke rate and phase,
ambient temperature), so a detector has to learn how the channels move
together rather than memorise one trace. This module depends on numpy only.
"""

import numpy as np

CHANNELS = ("vibration", "temperature", "current", "pressure")
FAULTS = ("spike", "drift", "stuck", "vibration_rise")

VIBRATION, TEMPERATURE, CURRENT, PRESSURE = range(len(CHANNELS))

# Sensor noise (one standard deviation), in each channel's unit.
NOISE = np.array([0.15, 0.05, 0.08, 0.02])

# Fault sizes, [low, high) per channel in the channel's unit, chosen to be a
# few times the noise or the normal within-window variation: visible to a
# model that knows how the channels move together, not glaringly off-scale.
SPIKE_SIZE = np.array([[1.0, 2.5], [0.8, 2.0], [0.6, 1.5], [0.12, 0.3]])
DRIFT_SIZE = np.array([[1.0, 2.0], [2.0, 4.0], [0.5, 1.5], [0.15, 0.35]])
# Growth of the vibration amplitude by the end of the window (x1.3 to x1.8).
RISE_GAIN = (0.3, 0.8)


def healthy_windows(n: int, length: int = 64, seed: int = 0) -> np.ndarray:
    """Generates windows of a healthy machine at random operating points.

    Args:
        n: Number of windows.
        length: Time steps per window (one reading per second).
        seed: Seed of the generator; equal seeds give identical windows.

    Returns:
        float32 array ``[n, length, 4]`` in the order of ``CHANNELS``.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=np.float64)[None, :]

    def per_window(low: float, high: float) -> np.ndarray:
        return rng.uniform(low, high, size=(n, 1))

    # Load (fraction of rated) wanders slowly inside a window: a process
    # that changes over minutes, so one window sees part of one swing.
    base_load = per_window(0.3, 0.95)
    swing = 0.05 * np.sin(2 * np.pi * t / per_window(80, 240) + per_window(0, 2 * np.pi))
    load = base_load + swing

    # One stroke of the pump (4 to 8 a minute) paces three channels: the
    # structure vibrates with it, the motor labours on the upstroke and the
    # discharge pressure pulses, each at its own fixed phase lag.
    stroke = 2 * np.pi * per_window(0.07, 0.13) * t + per_window(0, 2 * np.pi)
    vibration = (0.8 + 2.2 * load) * (np.sin(stroke) + 0.25 * np.sin(2 * stroke + 0.7))
    current = (2.0 + 14.0 * load) * (1.0 + 0.08 * np.sin(stroke - 0.6))
    pressure = 2.0 + 2.5 * load + (0.05 + 0.15 * load) * np.sin(stroke - 1.2)

    # Temperature follows the window's mean load plus the ambient; the
    # winding's thermal time constant (minutes) turns load swings into a
    # slow drift rather than a copy of the load curve.
    ambient = per_window(-2.0, 2.0)
    drift = per_window(-0.015, 0.015) * t + 4.0 * np.cumsum(swing, axis=1) / 60
    temperature = 52.0 + 12.0 * base_load + ambient + drift

    clean = np.stack([vibration, temperature, current, pressure], axis=-1)
    noisy = clean + NOISE * rng.standard_normal(clean.shape)
    return noisy.astype(np.float32)


def inject_fault(window: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Returns a copy of one healthy window with a fault of the given kind.

    The fault starts at a random step in the first three quarters of the
    window, so it covers at least its last quarter; spikes fall anywhere.

    Args:
        window: float array ``[length, 4]`` in the order of ``CHANNELS``.
        kind: One of ``FAULTS``:
            ``spike``: one to three one- or two-sample spikes on one channel
            (electrical interference, impacts);
            ``drift``: an offset growing linearly on temperature, current or
            pressure (sensor calibration drift);
            ``stuck``: vibration, current or pressure frozen at the value it
            had when the fault began (a dead sensor or transmitter);
            ``vibration_rise``: vibration amplitude growing steadily (a
            bearing starting to wear).
        rng: Source of the fault's channel, onset and size.

    Returns:
        float32 array of the same shape as ``window``.

    Raises:
        ValueError: If ``kind`` is unknown or the window has the wrong shape.
    """
    if window.ndim != 2 or window.shape[1] != len(CHANNELS):
        raise ValueError(f"window must be [length, {len(CHANNELS)}], got {window.shape}")
    out = np.array(window, dtype=np.float64)
    length = out.shape[0]
    onset = int(rng.integers(0, 3 * length // 4))
    # 0 before the onset, rising linearly to 1 at the last step.
    ramp = np.clip((np.arange(length) - onset) / max(length - 1 - onset, 1), 0, 1)

    if kind == "spike":
        channel = int(rng.integers(len(CHANNELS)))
        for _ in range(int(rng.integers(1, 4))):
            start = int(rng.integers(0, length - 1))
            size = rng.uniform(*SPIKE_SIZE[channel]) * rng.choice([-1.0, 1.0])
            out[start : start + int(rng.integers(1, 3)), channel] += size
    elif kind == "drift":
        # A vibration sensor is AC-coupled, so an offset drift never shows there.
        channel = int(rng.choice([TEMPERATURE, CURRENT, PRESSURE]))
        size = rng.uniform(*DRIFT_SIZE[channel]) * rng.choice([-1.0, 1.0])
        out[:, channel] += size * ramp
    elif kind == "stuck":
        # Temperature is left out: a frozen reading of a quantity that barely
        # moves within a minute is not a fault one window can reveal.
        channel = int(rng.choice([VIBRATION, CURRENT, PRESSURE]))
        out[onset:, channel] = out[onset, channel]
    elif kind == "vibration_rise":
        # Scale around the window's mean: wear grows the oscillation, not the
        # mean reading (the noise grows too, but it is a tenth of the signal).
        centre = out[:, VIBRATION].mean()
        gain = 1.0 + rng.uniform(*RISE_GAIN) * ramp
        out[:, VIBRATION] = centre + gain * (out[:, VIBRATION] - centre)
    else:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULTS}")
    return out.astype(np.float32)
