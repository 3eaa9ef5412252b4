"""The ``clock`` family: the relay graph on use_sim_time, the probe publishing /clock, which jumps."""
from __future__ import annotations

from .common import Trial, scenario
from .probe_driven import Bench


def _clock_jump(seconds: float):
    def run(b: Bench, res: Trial) -> None:
        b.wait_nominal()
        m = b.mark()
        b.sim_t += seconds
        p = b.probe
        # Stamps on a clock that jumped are ambiguous: judge by the probe's wall receive times.
        b.run_until(lambda: any(t >= m["wall"] and not x.startswith("nominal") for t, _, x in p.rec.modes),
                    20.0, "a fallback after the clock jump")
        res.notes["reason"] = next((x for t, _, x in p.rec.modes if t >= m["wall"] and not x.startswith("nom")), "")
        b.recovery(res, m["wall"])
    return run


scenario("clock_jump_back", "clock", "use_sim_time, /clock jumps 5 s backwards: the mixer forgets its receipt "
         "times, falls back, ramped recovery")(_clock_jump(-5.0))
scenario("clock_jump_forward", "clock", "use_sim_time, /clock jumps 5 s forwards: every input stale, safe "
         "fallback, ramped recovery")(_clock_jump(5.0))
