"""`residual-control faults`: the fault-injection matrix.

Every scenario runs the real node processes over DDS and checks EVERY command
the actuator side receives (``commands`` as recorded by a probe):

* finite and within [command_min, command_max];
* |a - a_base| <= residual_gain * residual_limit against a base action
  received within 0.1 s of it (the independent check of
  :func:`residual_control.harness.closed_loop.check_commands`); a command with
  no base action near it is only allowed where ``base_stale_behavior``
  documents one (``zero``: clip(0); ``hold``: the previous command repeated;
  ``stop``: none at all);
* the fallback happens within its bound (residual_timeout + one control
  period, plus one more period for the quantisation of the clock: the
  simulated clock moves in whole control periods, so a fault is only seen at
  the next tick), measured on the simulated clock for the MuJoCo scenarios;
* the recovery is ramped: the mixer reports ``recovering`` and the applied
  residual rises monotonically through intermediate values up to g * da.
  The MuJoCo loop and the probe act as a policy whose residual is a known
  constant (a synthetic constant ONNX model / the probe), so the gain is
  observable as applied / da.

Three kinds of harness (per scenario, see ``SCENARIOS``):

``loop``   MuJoCo plant (lockstep on /clock, capped at real time) + reference +
           perception + base_controller + residual_policy + residual_mixer.
``relay``  base_controller + residual_mixer driven by the probe, which plays
           the robot (joint_states, reference) and the residual policy
           (a valid constant residual on each base action, or the fault).
``policy`` as ``relay`` plus residual_policy (a synthetic model); the probe
           also publishes perception. Model updates and parameter changes.
``clock``  as ``relay`` on use_sim_time, the probe publishing /clock.
``spawn``  single processes started with a bad configuration.
``external`` residual_policy + residual_mixer on top of a base controller outside the package (a
           separate process publishing unstamped std_msgs/Float64MultiArray), driven as ``policy``.

On any robot (``--robot DIR``, default the built-in arm): its params file, joints, home (the start
pose), demo plant and model; the constant residuals and rogue values are derived from its joints and
residual limits (``common.constant_residual``, ``relay``, ``policy.invalid_parameters``). A scenario
that needs what the robot lacks (out_of_envelope: the robot's trained model) is reported not
applicable (``passed`` null).

Writes ``{"scenarios": [{"name", "trials", "violations", "fallback_latency_s",
"recovered", "passed", "detail"}]}`` with ``--json`` and prints a table.

One module per scenario family (``loop``, ``relay``, ``clock``, ``policy``; ``spawn`` holds the
start-up refusals the ``policy`` model scenarios begin with), ``probe_driven`` the graph the
probe-driven families share, ``common`` the results, registry and checks, ``matrix`` the runner and
the command line. Importing the package registers the scenarios in matrix order.
"""
from __future__ import annotations

from . import loop, relay, clock, policy, external  # registers the scenarios: this order is the matrix order
from .common import (RELAY_RATE_HZ, SCENARIOS, WALL_SLACK, Context, NotApplicable, Scenario, Trial,
                     constant_residual, envelope_fault_payload, modes_since, ramp_check, residual_pattern,
                     scenario, second_residual, unknown_joint)
from .loop import INJECT_ATTEMPTS, _envelope_loop_model
from .matrix import LOOP_ATTEMPTS, add_arguments, format_table, run, run_matrix, select
from .policy import INVALID_NODES, invalid_parameters
from .probe_driven import Bench, reference_near, step_bound
from .spawn import BAD_MODELS

__all__ = [
    "BAD_MODELS", "INJECT_ATTEMPTS", "INVALID_NODES", "LOOP_ATTEMPTS", "RELAY_RATE_HZ", "SCENARIOS", "WALL_SLACK",
    "Bench", "Context", "NotApplicable", "Scenario", "Trial", "_envelope_loop_model", "add_arguments",
    "constant_residual", "envelope_fault_payload", "format_table", "invalid_parameters", "modes_since", "ramp_check",
    "reference_near", "residual_pattern", "run", "run_matrix", "scenario", "second_residual", "select",
    "step_bound", "unknown_joint", "loop", "relay", "clock", "policy", "external",
]
