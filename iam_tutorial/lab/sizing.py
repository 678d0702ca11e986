"""How many epochs fit: measured step times -> one epoch count for every cell, inside a budget.

Each kind of cell (plan and item input) is timed for a few seconds while the others are timed
too, so its step time includes their contention for the one GPU. The cells then run as a list
schedule on a number of lanes (worker processes), longest first: the count chosen is the largest
that lets that schedule end inside the budget. full.py measures; this module only does arithmetic.
"""

from dataclasses import asdict, dataclass

SETUP_SECONDS = 3.0  # per cell: model build, the epoch count's window draw, writing the JSON
MEMORY_SHARE = 0.8  # of the GPU's memory the lanes may plan to use (batches vary in width)


@dataclass(frozen=True)
class Timing:
    """One kind of cell, measured under contention."""

    step_seconds: float  # mean optimizer step over a random sample of an epoch's batches
    eval_seconds: float  # one validation pass (every user)
    steps_per_epoch: int
    peak_mib: float = 0.0  # the process's peak GPU memory (0 on CPU)
    device_mib: float = 0.0  # the GPU's whole memory (0 on CPU)

    def epoch_seconds(self) -> float:
        """One epoch: its steps, then its validation."""
        return self.steps_per_epoch * self.step_seconds + self.eval_seconds

    def final_seconds(self) -> float:
        """After the last epoch: ranks on validation and test, and the cell's setup."""
        return 2 * self.eval_seconds + SETUP_SECONDS

    def cell_seconds(self, epochs: int) -> float:
        return epochs * self.epoch_seconds() + self.final_seconds()

    def as_dict(self) -> dict:
        return {**asdict(self), "epoch_seconds": round(self.epoch_seconds(), 3)}


def makespan(durations: list[float], lanes: int) -> float:
    """When the last of `durations` ends if each, in order, starts on the lane free first (as
    workers pulling from one queue do)."""
    loads = [0.0] * max(1, lanes)
    for d in durations:
        loads[loads.index(min(loads))] += d
    return max(loads)


def longest_first(kinds: list[str], timings: dict[str, Timing]) -> list[int]:
    """The order that keeps the list schedule short: the longest epochs first (stable)."""
    return sorted(range(len(kinds)), key=lambda i: -timings[kinds[i]].epoch_seconds())


def size_epochs(kinds: list[str], timings: dict, lanes: int, seconds: float, most: int) -> int:
    """The most epochs (<= `most`) every cell can get with the schedule ending within `seconds`;
    0 if not even one fits. `kinds[i]` is cell i's kind."""
    order = longest_first(kinds, timings)

    def fits(epochs: int) -> bool:
        return makespan([timings[kinds[i]].cell_seconds(epochs) for i in order], lanes) <= seconds

    if not fits(1):
        return 0
    low, high = 1, most  # fits(low) holds; bisect, as the makespan grows with the epochs
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    return low


def choose(
    groups: list[list[str]], timings: dict, lanes: int, seconds: float, most: int, least: int
) -> tuple[int, int]:
    """(groups kept, epochs): drop the last optional group while fewer than `least` epochs fit;
    the first group is always kept, with at least one epoch (the time cap then ends it)."""
    for kept in range(len(groups), 0, -1):
        kinds = [k for group in groups[:kept] for k in group]
        epochs = size_epochs(kinds, timings, lanes, seconds, most)
        if epochs >= least or kept == 1:
            return kept, max(1, epochs)
    raise ValueError("choose needs at least one group of cells.")


def lanes_that_fit(kinds: list[str], timings: dict, lanes: int) -> int:
    """The most lanes whose largest cells fit the GPU's memory together (all of them on a CPU)."""
    peaks = sorted((timings[k].peak_mib for k in kinds), reverse=True)
    device = max((t.device_mib for t in timings.values()), default=0.0)
    if not device:
        return lanes
    fit = 1
    while fit < lanes and sum(peaks[: fit + 1]) <= MEMORY_SHARE * device:
        fit += 1
    return fit
