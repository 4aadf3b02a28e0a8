"""The scaler: proposes each pool's unit count from its metrics.

`policy.decide()` is the pure decision (steady, panic and predictive modes),
`forecast` the pure demand forecaster it uses. The service module (not here
yet) only wires them to NATS and the store; what it must persist per pool is
the `PoolState` returned by `decide()` (`policy.state_to_bytes` /
`state_from_bytes`, msgpack), which includes the forecaster's state so a
restarted scaler keeps its forecast. On each `fleet.unit.<pool>.<unit>` event
that reaches `ready`, it should fold the unit's requested->ready seconds into
the state with `policy.learn_lead_time`.
"""
