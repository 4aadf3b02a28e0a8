"""The fleet's history as a report: pure builders over what the streams kept (spend from
unit events, load and idle capacity from the rollup, job cost, budget refusals, failures)
and the recommendations drawn from them; `reader` wires them to the streams."""
