"""The gateway's batch desk: `fleet.api.batch.plan`, `batch.run` and `batch.status`.

A plan reads the provisioner's live offers (the cheapest per model), the
scaler's learned lead time per pool (else the pool's `lead_time_s`) and the
pool's billing period, and hands them to the pure planner
(`contracts.batchplan`). A run provisions the chosen option (a pinned
provision request; the cost-guard's verdict is the answer's), then carries the
batch out in the background (`batchrun.BatchRun`), publishing each step on
`fleet.batch.<id>`.

Runs are kept in JetStream (services.gateway.batchbook), not in this process:
the gateway that starts a run holds its driver lease and renews it while it
drives the run; every gateway looks every few seconds for unfinished runs
whose lease has lapsed (their gateway died, or stopped) and takes them over.
`batch.status` answers from the kept records, whichever gateway runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from contracts import subjects
from contracts.api.replies import CommandAnswer
from contracts.batch import (
    BatchesReply,
    BatchPlan,
    BatchQuery,
    BatchRecord,
    BatchRunReply,
    BatchStatus,
    PlanBatchCall,
    RunBatchCall,
)
from contracts.batchplan import ModelTerms, cheapest_offers, describe, plan_batch, price_per_gpu
from contracts.buckets import BATCH_DRIVERS
from contracts.commands import ProvisionRequest
from contracts.streams import FLEET_BATCHES
from services.gateway import guide
from services.gateway.batchbook import BatchBook, RunLost
from services.gateway.batchrun import BatchRun
from services.gateway.jobdesk import Host as JobHost
from services.kit.lease import Lease
from services.kit.pools import PoolConfig
from services.kit.service import Delivery, RequestError

_STATUS = msgspec.json.Decoder(BatchStatus)
log = logging.getLogger("fleet.gateway.batch")
SWEEP_S = BATCH_DRIVERS.ttl_s / 3
"""How often a gateway looks for runs nobody drives: a dead driver's runs are taken over
at most the lease's TTL and this long after it died."""


class Host(JobHost, Protocol):
    """What the desk uses of the gateway service: the job desk's, and publishing."""

    instance: str

    @property
    def spawn(self) -> Callable[..., asyncio.Task[Any]]: ...

    async def command(self, cmd: ProvisionRequest, wait_s: float) -> CommandAnswer:
        """Publish a command; the cost-guard's verdict on it (or `pending`)."""
        ...

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
        """The runs this gateway drives now."""
        self.book: BatchBook

    async def setup(self, replicas: int = 1) -> None:
        self.book = await BatchBook.open(self.svc.js, self.svc.instance, replicas)
        await self.svc.api_endpoint("batch.plan", PlanBatchCall, self.on_plan)
        await self.svc.api_endpoint("batch.run", RunBatchCall, self.on_run)
        await self.svc.api_endpoint("batch.status", BatchQuery, self.on_status)
        self.svc.every(SWEEP_S, self.sweep, "batch-takeover")

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
        earlier = await self.known(batch_id)
        if earlier is not None:  # the same id twice: one run
            return self._exists(batch_id, earlier)
        plan = await self._plan_of(call)
        if plan.chosen is None or plan.pool is None:
            return BatchRunReply(
                ok=False,
                id=batch_id,
                subject=subject,
                plan=plan,
                reason=f"nothing rented: {plan.reason}",
            )
        option, pool = plan.chosen, plan.pool
        lease = self.book.driver(batch_id)
        now = time.time()
        record = BatchRecord(
            id=batch_id,
            call=call,
            option=option,
            pool=pool,
            provision_id=f"prov-{batch_id}",
            opened_ts=now,
            started_ts=now,
        )
        revision = await self.book.create(record) if await lease.try_acquire() else None
        if revision is None:  # another request with this id got there first
            await lease.release()
            return self._exists(batch_id, await self.known(batch_id))
        run = BatchRun(self.svc.js, self._call, self._publish, self.book, record, revision)
        self.add_pool(pool, {"gpu_model": option.gpu_model, "providers": [option.provider]})
        await run.listen(catch_up=False)  # before the provision: no unit event may be missed
        request = run.provision_request()
        try:
            verdict = await self.svc.command(request, call.wait_s)
        except Exception as exc:
            await run.close()
            with contextlib.suppress(Exception):
                await run.end("failed", f"could not ask for the GPUs: {exc}")
            await lease.release()
            raise RequestError(f"could not provision the batch's GPUs: {exc}", 503) from None
        if verdict.decision == "denied":
            await run.close()
            status = await run.end("refused", f"the cost-guard denied the GPUs: {verdict.reason}")
            await lease.release()
            return BatchRunReply(
                ok=False,
                id=batch_id,
                subject=subject,
                plan=plan,
                status=status,
                reason=f"nothing rented: the cost-guard denied {describe(option)}: "
                f"{verdict.reason}",
            )
        if verdict.decision == "approved":
            run.approved = True
            await run.emit("provisioning", f"approved: {describe(option)} ({run.provision_id})")
            said = f"running {describe(option)}; follow {subject}"
        else:  # held: the cost-guard's reason already says how to decide it
            await run.emit(
                "waiting",
                f"the provision {run.provision_id} is {verdict.decision}: {verdict.reason}",
            )
            said = (
                f"waiting for `fleet approve {run.provision_id}` to run {describe(option)}; "
                f"follow {subject}"
            )
        self._drive_later(run, lease, resumed_by="")
        return BatchRunReply(
            ok=True, id=batch_id, subject=subject, plan=plan, status=run.last, reason=said
        )

    async def _plan_of(self, call: RunBatchCall) -> BatchPlan:
        """The plan to run: the option the caller chose, else a fresh plan."""
        if call.option is None:
            return await self.plan(call)
        return BatchPlan(
            ok=True,
            reason=f"as planned: {describe(call.option)}",
            items=call.items,
            per_item_s=call.per_item_s,
            ref_gpu=call.ref_gpu or call.option.gpu_model,
            options=[call.option],
            chosen=call.option,
            pool=guide.pool_for(call.option.gpu_model, call.provider, self.pools),
            max_usd=call.max_usd,
            deadline_s=call.deadline_s,
        )

    def _exists(self, batch_id: str, status: BatchStatus | None) -> BatchRunReply:
        state = status.state if status is not None else "starting"
        return BatchRunReply(
            ok=status is not None,
            id=batch_id,
            subject=subjects.batch(batch_id),
            status=status,
            reason=f"batch {batch_id} already exists ({state})",
        )

    def _drive_later(self, run: BatchRun, lease: Lease, resumed_by: str) -> None:
        self.runs[run.id] = run
        self.svc.spawn(self._drive(run, lease, resumed_by), f"batch:{run.id}")

    async def _drive(self, run: BatchRun, lease: Lease, resumed_by: str) -> None:
        """Carry the run out while renewing its lease; a lost lease stops it here (the new
        driver carries on), and a stop of this gateway hands it back at once."""
        stop = asyncio.Event()
        keeper = asyncio.ensure_future(lease.keep(stop))
        work = asyncio.ensure_future(self._carry_out(run, resumed_by))
        try:
            await asyncio.wait({keeper, work}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                log.error("batch %s: lost its driver lease; another gateway carries it on", run.id)
                work.cancel()
            try:
                await work
            except (asyncio.CancelledError, RunLost) as exc:
                log.warning("batch %s: no longer driven here: %s", run.id, exc or "stopped")
            except Exception:
                log.exception("batch %s: failed; a gateway will take it over", run.id)
        finally:
            stop.set()
            for task in (keeper, work):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            self.runs.pop(run.id, None)
            await run.close()
            await lease.release()

    async def _carry_out(self, run: BatchRun, resumed_by: str) -> None:
        if not run.approved and resumed_by:
            # The last driver may have died between writing the record and sending the
            # request: send it again. The same id is judged once (the stream drops the
            # duplicate, the cost-guard keeps its first verdict), and `verdict()` reads
            # one given before from the stream.
            await self.svc.publish(
                subjects.PROVISION_REQUESTED, run.provision_request(), msg_id=run.provision_id
            )
        if not run.approved and not await run.verdict():
            await run.close()
            await run.end("refused", "the provision was not approved")
            return
        await run.run(resumed_by=resumed_by)

    # -- taking runs over ----------------------------------------------------------------
    async def sweep(self) -> None:
        """Take over every unfinished run whose driver's lease has lapsed."""
        for record, _ in await self.book.all():
            if record.finished or record.id in self.runs:
                continue
            lease = self.book.driver(record.id)
            if not await lease.try_acquire():
                continue
            try:
                await self._take_over(record.id, lease)
            except Exception:
                log.exception("batch %s: could not take it over", record.id)
                await lease.release()

    async def _take_over(self, batch_id: str, lease: Lease) -> None:
        """Drive run `batch_id` from its record as its last driver left it."""
        record, revision = await self.book.get(batch_id)
        if record is None or record.finished:  # it ended while we took the lease
            await lease.release()
            return
        log.warning("batch %s: taking it over (%s)", batch_id, self.svc.instance)
        run = BatchRun(self.svc.js, self._call, self._publish, self.book, record, revision)
        self.add_pool(
            record.pool,
            {"gpu_model": record.option.gpu_model, "providers": [record.option.provider]},
        )
        await run.listen(catch_up=True)
        self._drive_later(run, lease, resumed_by=f"gateway {self.svc.instance}")

    async def _call(self, op: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        reply = await self.svc.nc.request(
            subjects.api(op), msgspec.json.encode(body), timeout=timeout_s
        )
        answer: dict[str, Any] = msgspec.json.decode(reply.data)
        if "error" in answer:
            raise RuntimeError(f"fleet.api.{op}: {answer['error'].get('message')}")
        return answer

    async def _publish(self, status: BatchStatus, msg_id: str) -> None:
        await self.svc.publish(subjects.batch(status.id), status, msg_id=msg_id)

    # -- status --------------------------------------------------------------------------
    async def known(self, batch_id: str) -> BatchStatus | None:
        """A run's latest step: from its record, else from the stream (a run kept from
        before the records were)."""
        record, _ = await self.book.get(batch_id)
        if record is not None:
            return record.status
        try:
            msg = await self.svc.js.get_last_msg(FLEET_BATCHES.name, subjects.batch(batch_id))
            return _STATUS.decode(msg.data or b"")
        except Exception:
            return None

    def live(self, batch_id: str) -> BatchStatus | None:
        """The up-to-the-moment status of a run driven here, else None."""
        run = self.runs.get(batch_id)
        if run is None or run.last is None or run.last.finished:
            return None
        return run.status(run.last.state, run.last.reason)

    async def on_status(self, q: BatchQuery, _d: Delivery) -> BatchesReply:
        """`batch.status`: one run by id; else the latest runs kept, whichever gateway
        drives them, newest first."""
        if q.id is not None:
            status = self.live(q.id) or await self.known(q.id)
            if status is None:
                raise RequestError(f"no batch {q.id!r}; `fleet batch status` lists the latest", 404)
            return BatchesReply(runs=[status])
        rows = [
            self.live(record.id) or record.status
            for record, _ in await self.book.all()
            if record.status is not None
        ]
        kept = [s for s in rows if s is not None]
        kept.sort(key=lambda s: s.started_ts, reverse=True)
        return BatchesReply(runs=kept[: q.limit])


__all__ = ["BatchDesk"]
