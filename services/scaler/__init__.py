"""The scaler: proposes each pool's unit count from its metrics.

`policy.decide()` is the pure decision (steady, panic and predictive modes),
`forecast` the pure demand forecaster it uses, `service` wires them to NATS
and the store. Per pool it stores the `PoolState` returned by `decide()`, which
includes the forecaster's state so a restarted scaler keeps its forecast, as
two msgpack records (`policy.state_parts` / `state_from_parts`): the part that
changes at every decision, and the forecaster's slow part (daily profile, kept
errors), written only when it changes. On each `fleet.unit.<pool>.<unit>`
event that reaches `ready`, it folds the unit's requested->ready seconds into
the state with `policy.learn_lead_time`.
"""
