"""The A2A methods: SendMessage, SendStreamingMessage, GetTask, ListTasks, CancelTask,
SubscribeToTask, as entries of the Dispatcher's method table.

A blocking SendMessage answers `{"task": ...}` once the task is terminal or
interrupted (or `blocking_timeout_s` passed). A stream answers the task first,
then each event. Sending a message with `taskId` of an INPUT_REQUIRED task
continues that task. A first message passes the server's Admission (a host
may refuse it, or hold it until it has room) before its task is created.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import msgspec

from contracts import subjects
from contracts.a2a import (
    CONTENT_TYPE_NOT_SUPPORTED,
    INVALID_PARAMS,
    TASK_NOT_CANCELABLE,
    TERMINAL_STATES,
    UNSUPPORTED_OPERATION,
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    SendMessageRequest,
    SendMessageResponse,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskState,
    TaskStatus,
    iso_now,
)
from services.a2a.context import ends_stream
from services.a2a.dispatch import Call, Dispatcher
from services.a2a.errors import RpcFailure
from services.a2a.runs import Run, TaskRunner
from services.a2a.tasks import new_task, trimmed


class Admission(Protocol):
    """What a host checks before a first message becomes a task (the runner's sessions
    and slots). Once `admit` returned, exactly one of `started` or `abandoned` follows."""

    async def admit(self, message: Message, tenant: str) -> Message:
        """The message to start the task with; raise Refused to refuse it."""
        ...

    def started(self, run: Run) -> None:
        """The task runs (`run.runner` ends when it does)."""
        ...

    def abandoned(self, message: Message) -> None:
        """The task was not started after all (refused further on, or failed to store)."""
        ...


class OpenAdmission:
    """Admits every message as it is: the binding's own tenant limits still apply."""

    async def admit(self, message: Message, tenant: str) -> Message:
        return message

    def started(self, run: Run) -> None:
        pass

    def abandoned(self, message: Message) -> None:
        pass


class A2AMethods:
    """The methods of one agent, over its runs and its task store."""

    def __init__(
        self,
        tasks: TaskRunner,
        admission: Admission,
        blocking_timeout_s: float,
        max_page_size: int,
        output_modes: Sequence[str] = ("text/plain", "application/json"),
    ) -> None:
        self.output_modes = tuple(output_modes)
        """What the agent answers in (its card's `defaultOutputModes`)."""
        self.tasks = tasks
        self.store = tasks.store
        self.progress = tasks.progress
        self.limits = tasks.limits
        self.admission = admission
        self.blocking_timeout_s = blocking_timeout_s
        self.max_page_size = max_page_size

    def register(self, dispatcher: Dispatcher) -> None:
        """Add every A2A method to `dispatcher`'s table, in the contract's order."""
        dispatcher.add("SendMessage", SendMessageRequest, self.send)
        dispatcher.add_streaming("SendStreamingMessage", SendMessageRequest, self.send_streaming)
        dispatcher.add("GetTask", GetTaskRequest, self.get)
        dispatcher.add("ListTasks", ListTasksRequest, self.list)
        dispatcher.add("CancelTask", CancelTaskRequest, self.cancel)
        dispatcher.add_streaming("SubscribeToTask", SubscribeToTaskRequest, self.subscribe)

    # -- unary methods ---------------------------------------------------------------------
    async def send(self, params: SendMessageRequest, call: Call) -> SendMessageResponse:
        config = params.configuration
        history = config.history_length if config else None
        if config is not None and config.return_immediately:
            run = await self._start(params, call)
            return SendMessageResponse(task=trimmed(run.task, history))
        queue: asyncio.Queue[StreamResponse | None] = asyncio.Queue()
        run = await self._start(params, call, store_now=False)
        run.listeners.append(queue)
        try:
            async with asyncio.timeout(self.blocking_timeout_s):
                while (item := await queue.get()) is not None:
                    update = item.status_update
                    if update is not None and ends_stream(update.status.state):
                        break
        except TimeoutError:
            # The caller learns the id of a task still running: it must be readable.
            await self.progress.write_now(run.task, call.tenant)
        return SendMessageResponse(task=trimmed(run.task, history))

    async def get(self, params: GetTaskRequest, call: Call) -> Task:
        task = await self._task(params.id, call.tenant)
        return trimmed(task, params.history_length)

    async def list(self, params: ListTasksRequest, call: Call) -> ListTasksResponse:
        size = params.page_size or 50
        if not 1 <= size <= self.max_page_size:
            raise RpcFailure(
                INVALID_PARAMS, f"pageSize must be 1..{self.max_page_size}, got {size}"
            )
        try:
            offset = int(params.page_token or 0)
        except ValueError:
            raise RpcFailure(INVALID_PARAMS, "pageToken is not one this agent gave") from None
        recs = await self.store.list(call.tenant)
        tasks = [
            r.task
            for r in recs
            if (params.context_id is None or r.task.context_id == params.context_id)
            and (params.status is None or r.task.status.state == params.status)
        ]
        page = tasks[offset : offset + size]
        more = offset + size < len(tasks)
        include = bool(params.include_artifacts)
        return ListTasksResponse(
            tasks=[trimmed(t, params.history_length, include) for t in page],
            next_page_token=str(offset + size) if more else "",
            page_size=len(page),
            total_size=len(tasks),
        )

    async def cancel(self, params: CancelTaskRequest, call: Call) -> Task:
        task = await self._task(params.id, call.tenant)
        if task.status.state in TERMINAL_STATES:
            raise RpcFailure(
                TASK_NOT_CANCELABLE,
                f"task {task.id} is {task.status.state.value}; it cannot be canceled",
                {"taskId": task.id, "state": task.status.state.value},
            )
        return await self.tasks.cancel(task, call.tenant)

    # -- streaming methods -------------------------------------------------------------------
    async def send_streaming(
        self, params: SendMessageRequest, call: Call
    ) -> AsyncIterator[StreamResponse]:
        async for item in _follow(await self._start(params, call)):
            yield item

    async def subscribe(
        self, params: SubscribeToTaskRequest, call: Call
    ) -> AsyncIterator[StreamResponse]:
        task_id, tenant = params.id, call.tenant
        task = await self._task(task_id, tenant)
        if task.status.state in TERMINAL_STATES:
            raise RpcFailure(
                UNSUPPORTED_OPERATION,
                f"task {task_id} is {task.status.state.value}; read it with GetTask",
            )
        run = self.tasks.runs.get(task_id)
        if run is not None:
            async for item in _follow(run):
                yield item
            return
        # Another process runs it: follow its events on the task subject.
        nc = self.tasks.service.nc
        sub = await nc.subscribe(subjects.a2a_task(self.tasks.agent, task_id))
        try:
            latest = await self._task(task_id, tenant)
            yield StreamResponse(task=latest)
            if ends_stream(latest.status.state):
                return
            while True:
                event = await sub.next_msg(timeout=self.blocking_timeout_s)
                item = msgspec.json.decode(event.data, type=StreamResponse)
                yield item
                if item.status_update and ends_stream(item.status_update.status.state):
                    return
        finally:
            await sub.unsubscribe()

    # -- tasks -------------------------------------------------------------------------------
    async def _task(self, task_id: str, tenant: str) -> Task:
        run = self.tasks.runs.get(task_id)
        if run is not None and run.tenant == tenant:
            return run.task  # running here: fresher than the store
        task = await self.store.get(task_id, tenant)
        if task is None:
            raise RpcFailure.not_found(task_id)
        return task

    async def _start(
        self, params: SendMessageRequest, call: Call, *, store_now: bool = True
    ) -> Run:
        """Create (or continue) the task and start it. With `store_now` the task is stored
        before this returns, because the caller is about to hand out its id; a blocking
        call hands it out only with the result, so its task is stored with its progress
        (after `progress_write_s`) or its end, whichever comes first."""
        message = params.message
        if not message.parts:
            raise RpcFailure(INVALID_PARAMS, "message.parts must not be empty")
        accepted = params.configuration.accepted_output_modes if params.configuration else []
        if accepted and not any(accepts(a, mode) for a in accepted for mode in self.output_modes):
            raise RpcFailure(
                CONTENT_TYPE_NOT_SUPPORTED,
                f"this agent answers in {', '.join(self.output_modes)}; the call accepts only "
                f"{', '.join(accepted)}",
            )
        if message.task_id:
            task, message = await self._continued(message, call.tenant)
            return await self._launch(task, message, call, store_now)
        message = await self.admission.admit(message, call.tenant)
        try:
            task, message = new_task(message)
            run = await self._launch(task, message, call, store_now)
        except BaseException:
            self.admission.abandoned(message)
            raise
        self.admission.started(run)
        return run

    async def _continued(self, message: Message, tenant: str) -> tuple[Task, Message]:
        """The INPUT_REQUIRED (or AUTH_REQUIRED) task `message` continues, with it added."""
        assert message.task_id is not None
        task = await self._task(message.task_id, tenant)
        state = task.status.state
        if message.task_id in self.tasks.runs or state not in (
            TaskState.INPUT_REQUIRED,
            TaskState.AUTH_REQUIRED,
        ):
            raise RpcFailure(
                UNSUPPORTED_OPERATION,
                f"task {task.id} is {state.value}; only a task waiting for input takes a "
                "further message (send without taskId to start a new task)",
            )
        message = msgspec.structs.replace(message, context_id=task.context_id)
        task = msgspec.structs.replace(
            task,
            history=[*task.history, message],
            status=TaskStatus(state=TaskState.SUBMITTED, timestamp=iso_now()),
        )
        return task, message

    async def _launch(self, task: Task, message: Message, call: Call, store_now: bool) -> Run:
        tenant = call.tenant
        self.limits.start(tenant)
        if not store_now:
            self.progress.mark(task, tenant)
            return self.tasks.begin(task, message, tenant, call.headers)
        try:
            await self.store.put(task, tenant)
        except Exception:
            self.limits.finish(tenant)
            raise
        return self.tasks.begin(task, message, tenant, call.headers)


async def _follow(run: Run) -> AsyncIterator[StreamResponse]:
    """The run's task as it is now, then its events until it ends or waits for input."""
    queue: asyncio.Queue[StreamResponse | None] = asyncio.Queue()
    run.listeners.append(queue)
    yield StreamResponse(task=run.task)
    while (item := await queue.get()) is not None:
        yield item
        if item.status_update and ends_stream(item.status_update.status.state):
            return


def accepts(accepted: str, mode: str) -> bool:
    """Whether media range `accepted` (`text/plain`, `text/*`, `*/*`; parameters ignored)
    takes media type `mode`."""
    want = accepted.split(";")[0].strip().lower()
    kind, _, sub = want.partition("/")
    have_kind, _, have_sub = mode.lower().partition("/")
    return (kind in ("*", have_kind)) and (sub in ("*", have_sub))
