"""interleaf.runtime.simulate: workloads as data (trace files, generators) and a virtual-time simulation of
the whole serving path — the production engine and client classes driven by a discrete-event clock."""

from __future__ import annotations

from interleaf.lazy_exports import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        ["CapacityPlan", "CapacityProbe", "plan_capacity", "render_plan"], "interleaf.runtime.simulate.capacity"
    ),
    **dict.fromkeys(["KVFloor", "kv_floor"], "interleaf.runtime.simulate.floor"),
    **dict.fromkeys(["SimulationReport", "render"], "interleaf.runtime.simulate.report"),
    **dict.fromkeys(
        ["EXTRA_POLICIES", "PolicyResult", "SimulationSetup", "check_policy", "simulate_policies",
         "simulate_policy"],
        "interleaf.runtime.simulate.simulation",
    ),
    **dict.fromkeys(
        ["SessionScript", "TraceError", "TraceTurn", "dump_trace", "fit_context", "load_trace", "parse_trace",
         "sessions", "trace_from_trajectories"],
        "interleaf.runtime.simulate.trace",
    ),
    **dict.fromkeys(["SimulationStuck", "VirtualTimeLoop", "run_virtual"], "interleaf.runtime.simulate.virtual_loop"),
    **dict.fromkeys(["SHAPES", "WorkloadShape", "generate"], "interleaf.runtime.simulate.workloads"),
}  # fmt: skip
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
