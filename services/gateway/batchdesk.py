"""The gateway's batch desk: `fleet.api.batch.plan`, `batch.run` and `batch.status`.

A plan reads the provisioner's live offers (the cheapest per model), the
scaler's learned lead time per pool (else the pool's `lead_time_s`) and the
pool's billing period, and hands them to the pure planner
(`contracts.batchplan`). A run provisions the chosen option through
`gpu.provision` (the cost-guard's verdict is the answer's), then carries the
batch out in the background (`batchrun.BatchRun`), publishing each step on
`fleet.batch.<id>`.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from contracts import subjects
from contracts.batch import (
    BatchesReply,
    BatchPlan,
    BatchQuery,
    BatchRunReply,
    BatchStatus,
    PlanBatchCall,
    RunBatchCall,
)
from contracts.batchplan import ModelTerms, cheapest_offers, describe, plan_batch, price_per_gpu
from contracts.streams import FLEET_BATCHES
from services.gateway import guide
from services.gateway.batchrun import BatchRun
from services.gateway.jobdesk import Host as JobHost
from services.kit.pools import PoolConfig
from services.kit.service import Delivery, RequestError

_STATUS = msgspec.json.Decoder(BatchStatus)


class Host(JobHost, Protocol):
    """What the desk uses of the gateway service: the job desk's, and publishing."""

    @property
    def spawn(self) -> Callable[..., asyncio.Task[Any]]: ...

    async def publish(self, subject: str, msg: Any, *, msg_id: str | None = None) -> None:
        """Publish to the stream that keeps `subject`."""
        ...


class BatchDesk:
    """The `fleet.api.batch.*` operations of the gateway `svc`."""

    def __init__(
        self,
        svc: Host,
        pools: dict[str, PoolConfig],
        add_pool: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self.svc = svc
        self.pools = pools
        self.add_pool = add_pool
        """Lets the job desk route the batch's jobs to its (maybe ad-hoc) pool."""
        self.runs: dict[str, BatchRun] = {}

    async def setup(self) -> None:
        await self.svc.api_endpoint("batch.plan", PlanBatchCall, self.on_plan)
        await self.svc.api_endpoint("batch.run", RunBatchCall, self.on_run)
        await self.svc.api_endpoint("batch.status", BatchQuery, self.on_status)

    # -- planning ------------------------------------------------------------------------
    async def terms(self, call: PlanBatchCall) -> list[ModelTerms]:
        """Each allowed model's cheapest live offer, with its pool's lead time and billing."""
        where = {"provider": call.provider} if call.provider else {}
        offers = await self.svc.ask("gpus.available", where)
        scaling = await self.svc.ask("scaling", {}, required=False)
        learned = scaling.get("pools", {}) if "error" not in scaling else {}
        allowed = {m.lower() for m in call.gpu_models}
        out: list[ModelTerms] = []
        for model, offer in sorted(cheapest_offers(offers.get("offers", [])).items()):
            if allowed and model.lower() not in allowed:
                continue
            pool = guide.pool_for(model, call.provider, self.pools)
            cfg = self.pools.get(pool, PoolConfig())
            lead = call.lead_time_s
            if lead is None:
                lead = float(learned.get(pool, {}).get("lead_time_s") or cfg.lead_time_s)
            per_gpu = price_per_gpu(offer)
            out.append(
                ModelTerms(
                    gpu_model=model,
                    provider=str(offer.get("provider") or ""),
                    usd_per_hour=round(per_gpu, 6),
                    available=offer.get("available"),
                    lead_time_s=lead,
                    billing_s=cfg.billing_s,
                )
            )
        return out

    async def plan(self, call: PlanBatchCall) -> BatchPlan:
        plan = plan_batch(call, await self.terms(call))
        if plan.chosen is None:
            return plan
        pool = guide.pool_for(plan.chosen.gpu_model, call.provider, self.pools)
        return msgspec.structs.replace(plan, pool=pool)

    async def on_plan(self, call: PlanBatchCall, _d: Delivery) -> BatchPlan:
        """`batch.plan`: the options and the chosen one; rents nothing."""
        return await self.plan(call)

    # -- running -------------------------------------------------------------------------
    async def on_run(self, call: RunBatchCall, _d: Delivery) -> BatchRunReply:
        """`batch.run`: plan, provision through the cost-guard, then run in the background."""
        batch_id = call.id or f"batch-{uuid.uuid4().hex[:12]}"
        subject = subjects.batch(batch_id)
        known = self.runs.get(batch_id)
        earlier = known.last if known is not None else await self.last_status(batch_id)
        if earlier is not None:  # the same id twice: one run
            return BatchRunReply(
                ok=True,
                id=batch_id,
                subject=subject,
                status=earlier,
                reason=f"batch {batch_id} already exists ({earlier.state})",
            )
        if call.option is not None:
            pool = guide.pool_for(call.option.gpu_model, call.provider, self.pools)
            plan = BatchPlan(
                ok=True,
                reason=f"as planned: {describe(call.option)}",
                items=call.items,
                per_item_s=call.per_item_s,
                ref_gpu=call.ref_gpu or call.option.gpu_model,
                options=[call.option],
                chosen=call.option,
                pool=pool,
                max_usd=call.max_usd,
                deadline_s=call.deadline_s,
            )
        else:
            plan = await self.plan(call)
        if plan.chosen is None or plan.pool is None:
            return BatchRunReply(
                ok=False,
                id=batch_id,
                subject=subject,
                plan=plan,
                reason=f"nothing rented: {plan.reason}",
            )
        option, pool = plan.chosen, plan.pool
        run = BatchRun(
            self.svc.nc,
            self._call,
            self._publish,
            batch_id=batch_id,
            req=call,
            option=option,
            pool=pool,
            provision_id="",
            started_ts=time.time(),
        )
        self.add_pool(pool, {"gpu_model": option.gpu_model, "providers": [option.provider]})
        await run.listen()  # before the provision: no unit event may be missed
        provision = {
            "gpu_model": option.gpu_model,
            "count": option.count,
            "provider": option.provider,
            "duration": math.ceil(run.pin_s()),
            "max_usd_per_hour": round(option.usd_per_hour * 1.1 + 1e-4, 4),
            "reason": f"batch {batch_id}: {call.items} items, {describe(option)}",
            "requester": call.requester,
            "wait_s": call.wait_s,
        }
        try:
            verdict = await self._call("gpu.provision", provision, call.wait_s + 5.0)
        except Exception as exc:
            await run.close()
            raise RequestError(f"could not provision the batch's GPUs: {exc}", 503) from None
        run.provisioned(str(verdict.get("id", "")))
        decision = verdict.get("decision")
        if decision == "denied":
            await run.close()
            await run.emit(
                "refused", f"the cost-guard denied the GPUs: {verdict.get('reason')}", finished=True
            )
            return BatchRunReply(
                ok=False,
                id=batch_id,
                subject=subject,
                plan=plan,
                status=run.last,
                reason=f"nothing rented: the cost-guard "
                f"denied {describe(option)}: {verdict.get('reason')}",
            )
        self.runs[batch_id] = run
        if decision == "approved":
            await run.emit("provisioning", f"approved: {describe(option)} ({run.provision_id})")
        else:
            await run.emit(
                "waiting",
                f"the provision {run.provision_id} is {decision}: "
                f"{verdict.get('reason')}; `fleet approve {run.provision_id}` lets it "
                "run",
            )
        self.svc.spawn(self._carry_out(run, decision == "approved"), f"batch:{batch_id}")
        return BatchRunReply(
            ok=True,
            id=batch_id,
            subject=subject,
            plan=plan,
            status=run.last,
            reason=f"running {describe(option)}; follow {subject}",
        )

    async def _carry_out(self, run: BatchRun, approved: bool) -> None:
        if not approved:
            if not await self._approval(run):
                await run.close()
                await run.emit("refused", "the provision was not approved", finished=True)
                return
            run.started_ts = time.time()  # the plan's clock starts with the approval
        await run.run()

    async def _approval(self, run: BatchRun) -> bool:
        """Wait for a held (or pending) provision's final verdict, as long as the run could last."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        async def on_verdict(msg: Any) -> None:
            body = msgspec.json.decode(msg.data)
            if body.get("id") == run.provision_id and not fut.done():
                fut.set_result(msg.subject == subjects.BUDGET_APPROVED)

        subs = [
            await self.svc.nc.subscribe(s, cb=on_verdict)
            for s in (subjects.BUDGET_APPROVED, subjects.BUDGET_DENIED)
        ]
        try:
            return await asyncio.wait_for(fut, run.pin_s())
        except TimeoutError:
            return False
        finally:
            for sub in subs:
                await sub.unsubscribe()

    async def _call(self, op: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        reply = await self.svc.nc.request(
            subjects.api(op), msgspec.json.encode(body), timeout=timeout_s
        )
        answer: dict[str, Any] = msgspec.json.decode(reply.data)
        if "error" in answer:
            raise RuntimeError(f"fleet.api.{op}: {answer['error'].get('message')}")
        return answer

    async def _publish(self, status: BatchStatus) -> None:
        msg_id = f"{status.id}:{status.state}:{status.ts:.6f}"
        await self.svc.publish(subjects.batch(status.id), status, msg_id=msg_id)

    # -- status --------------------------------------------------------------------------
    async def last_status(self, batch_id: str) -> BatchStatus | None:
        """The latest event of a run, from the stream (any gateway may have run it)."""
        try:
            msg = await self.svc.js.get_last_msg(FLEET_BATCHES.name, subjects.batch(batch_id))
        except Exception:
            return None
        try:
            return _STATUS.decode(msg.data or b"")
        except msgspec.DecodeError:
            return None

    async def on_status(self, q: BatchQuery, _d: Delivery) -> BatchesReply:
        """`batch.status`: one run by id; else the runs this gateway started, newest first."""
        if q.id is not None:
            run = self.runs.get(q.id)
            status = run.last if run is not None else await self.last_status(q.id)
            if status is None:
                raise RequestError(f"no batch {q.id!r}; `fleet batch status` lists the latest", 404)
            if run is not None and not status.finished:
                status = run.status(status.state, status.reason)
            return BatchesReply(runs=[status])
        rows = [r.last for r in self.runs.values() if r.last is not None]
        rows.sort(key=lambda s: s.started_ts, reverse=True)
        return BatchesReply(runs=rows[: q.limit])


__all__ = ["BatchDesk"]
