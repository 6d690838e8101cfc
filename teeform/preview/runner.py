"""The program runner: the only module of teeform that touches ``pulumi.runtime`` internals.

It hands stack config to the SDK with ``pulumi.runtime.set_all_config``, installs
:class:`~teeform.preview.mocks.PreviewMocks` with ``pulumi.runtime.set_mocks(preview=False)``,
resets the root stack (``pulumi.runtime.settings.ROOT``) so no exports leak from an earlier run, and
runs ``<project>/__main__.py`` under ``@pulumi.runtime.test`` (shared/reference/pulumi.md §2.2-§2.6;
pulumi/pulumi ``sdk/python/lib/pulumi/runtime/mocks.py``, ``settings.py``, ``config.py``).

Errors raised inside the program (a :class:`~teeform.errors.TeeformError`, e.g. a missing manifest
or an instance type that is too small) are unwrapped from Pulumi's wrappers and re-raised as is, so
the CLI prints one line.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import runpy
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from teeform.errors import TeeformError
from teeform.fsutil import hash_cache
from teeform.preview.mocks import PreviewMocks
from teeform.stack import PROJECT


def _mocks_class() -> type:
    import pulumi.runtime

    class _Mocks(PreviewMocks, pulumi.runtime.Mocks):
        pass

    return _Mocks


def make_mocks(default_region: str = "us-east-1") -> PreviewMocks:
    """A :class:`PreviewMocks` that is also a ``pulumi.runtime.Mocks`` (what ``set_mocks`` wants)."""
    mocks: PreviewMocks = _mocks_class()(default_region)
    return mocks


def _recording_monitor(mocks: PreviewMocks) -> Any:
    """A ``pulumi.runtime.mocks.MockMonitor`` that also records, per registration, what the engine
    would hand a stack policy and ``MockResourceArgs`` leaves out: the URNs of the parent, the
    dependencies and the property dependencies (``RegisterResourceRequest.parent``, ``dependencies``,
    ``propertyDependencies``; pulumi/pulumi ``proto/pulumi/resource.proto``), the id and the state
    (:meth:`PreviewMocks.record_registration`)."""
    from pulumi.runtime.mocks import MockMonitor

    from teeform.preview.model import STACK_TYPE, Registration

    class _RecordingMonitor(MockMonitor):
        def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - the gRPC method name
            response = super().RegisterResource(request)
            if request.type != STACK_TYPE:
                reg = self.resources.get(response.urn)
                mocks.record_registration(request.type, request.name, Registration(
                    urn=response.urn, parent=request.parent, dependencies=tuple(request.dependencies),
                    property_dependencies={k: tuple(v.urns) for k, v in request.propertyDependencies.items()},
                    id=response.id or None, state=dict(reg.state) if reg is not None and reg.state else {},
                ))
            return response

    return _RecordingMonitor(mocks)  # type: ignore[arg-type]  # a PreviewMocks is made a Mocks by _mocks_class


def install_mocks(mocks: PreviewMocks, *, project: str, stack: str) -> None:
    """Reset the root stack and install ``mocks`` (``preview=False``) for ``project``/``stack``,
    behind a monitor that records dependencies and state (:func:`_recording_monitor`).

    For tests that register resources directly instead of running a program.
    """
    import pulumi.runtime
    from pulumi.runtime import settings

    settings.ROOT.set(None)  # a fresh root Stack: no exports leak from an earlier run (pulumi.md §2.2 item 6)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False,  # type: ignore[arg-type]
                             monitor=_recording_monitor(mocks))


def find_teeform_error(exc: BaseException) -> TeeformError | None:
    """The TeeformError inside ``exc`` (itself, its cause/context chain, or a wrapper's args)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, TeeformError):
            return e
        todo.extend(x for x in (e.__cause__, e.__context__) if x is not None)
        todo.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
        todo.extend(getattr(e, "exceptions", ()) or ())
    return None


@contextlib.contextmanager
def _env(name: str, value: str | None) -> Iterator[None]:
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


@contextlib.contextmanager
def sys_path(path: Path) -> Iterator[None]:
    """``path`` first on ``sys.path`` for the duration (removed afterwards)."""
    p = str(path)
    sys.path.insert(0, p)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(p)


_GC_DEPTH = 0


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """Fewer and smaller collections while a preview runs (reentrant; the outermost block restores).

    The SDK allocates millions of small objects that live until the run ends (futures, outputs,
    tasks: about 240 event-loop handles per resource), and the collector rescanned them over and
    over: 2-3 s of a 100-target preview (measured with ``gc.callbacks``). So the block freezes what
    exists (``gc.freeze``: moved to the permanent generation, never scanned), raises the
    generation-0 threshold, and :func:`gc_checkpoint` freezes again at each settle of the mock
    engine, so a collection scans only what was allocated since (gc time of that preview 3.0 s ->
    2.1 s). The price: cyclic garbage frozen on the way is only collectable again when the block
    ends (``gc.unfreeze``), +14 MiB of peak RSS at 100 targets (228 -> 242 MiB, under the 256 MiB
    bound of issue 7). Larger generation-0 thresholds cut more collector time but cost more memory
    (200,000: 0.3 s, 276 MiB).
    """
    global _GC_DEPTH
    _GC_DEPTH += 1
    if _GC_DEPTH > 1:
        try:
            yield
        finally:
            _GC_DEPTH -= 1
        return
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    try:
        yield
    finally:
        _GC_DEPTH -= 1
        gc.set_threshold(*old)
        gc.unfreeze()


def gc_checkpoint() -> None:
    """Inside :func:`quiet_gc`: freeze every object that exists now (no-op outside it)."""
    if _GC_DEPTH:
        gc.freeze()


@contextlib.contextmanager
def _no_source_positions() -> Iterator[None]:
    """Skip the SDK's per-registration source-position capture while the program runs.

    ``pulumi.runtime.resource._get_stack_trace`` walks the whole Python stack with
    ``traceback.extract_stack`` (reading every source file through ``linecache``) for each resource,
    to send the engine the user-code position; the mock monitor discards it. Under the mocks it is
    a quarter of the registration cost and a few MiB per thousand resources, so it returns an empty
    ``StackTrace`` here (pulumi/pulumi ``sdk/python/lib/pulumi/runtime/resource.py``; the SDK itself
    returns an empty one when no user frame is found). Left alone if the SDK has no such function.
    """
    from pulumi.runtime import resource as sdk_resource

    original = getattr(sdk_resource, "_get_stack_trace", None)
    if original is None:
        yield
        return
    from pulumi.runtime.proto import source_pb2

    sdk_resource._get_stack_trace = source_pb2.StackTrace
    try:
        yield
    finally:
        sdk_resource._get_stack_trace = original


#: Registrations between two settling points (see :func:`_settle_registrations`).
SETTLE_EVERY = 200
#: The mock engine counts as idle after this many ticks of :data:`SETTLE_TICK_S` without progress.
SETTLE_IDLE_TICKS = 2
SETTLE_TICK_S = 0.005


@contextlib.contextmanager
def _settle_registrations(mocks: PreviewMocks, every: int | None = None) -> Iterator[None]:
    """Let the mock engine work off queued registrations while the program body is still running.

    The SDK only queues a registration when a resource is constructed; under the mocks nothing runs
    until the program body returns, so a program with many targets holds every resource's pending
    registration at once (per output property four futures, a task and an ``Output``; pulumi/pulumi
    ``sdk/python/lib/pulumi/runtime/rpc.py`` ``transfer_properties``, ``output.py``): ~2 MiB of peak
    memory per target. After every ``every`` (default :data:`SETTLE_EVERY`) registrations this pumps the event loop the way the
    SDK's own synchronous invokes do (``pulumi.runtime.sync_await._sync_await``) until the mock
    engine has been idle (no new registration or invoke, nothing runnable) for
    :data:`SETTLE_IDLE_TICKS` ticks. Resources waiting for something the body creates later (a
    ``pulumi.deferred_output``) simply stay queued. Only scheduling changes: the same registrations
    happen with the same inputs. Registrations made while pumping (in ``apply`` callbacks) do not
    pump recursively.
    """
    import asyncio

    import pulumi.resource as sdk_resource
    from pulumi.runtime.sync_await import _sync_await

    original = getattr(sdk_resource, "register_resource", None)
    if original is None:
        yield
        return
    every = every or SETTLE_EVERY
    state = {"count": 0, "busy": False, "settles": 0}

    def progress() -> int:
        return len(mocks.resources) + len(mocks.calls)

    def settle() -> None:
        loop = asyncio.get_event_loop()
        done: asyncio.Future[None] = loop.create_future()
        seen = {"progress": progress(), "idle": 0}

        def tick() -> None:
            now = progress()
            busy = now != seen["progress"] or bool(getattr(loop, "_ready", None))
            seen["progress"], seen["idle"] = now, 0 if busy else seen["idle"] + 1
            if seen["idle"] >= SETTLE_IDLE_TICKS:
                done.set_result(None)
            else:
                loop.call_later(SETTLE_TICK_S, tick)

        loop.call_later(SETTLE_TICK_S, tick)
        _sync_await(done)
        gc_checkpoint()  # what the engine built so far is not rescanned by later collections

    def register(res: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(res, *args, **kwargs)
        state["count"] += 1
        if state["count"] % every == 0 and not state["busy"]:
            state["busy"] = True
            state["settles"] += 1
            try:
                settle()
            finally:
                state["busy"] = False
        return result

    sdk_resource.register_resource = register
    try:
        yield
    finally:
        sdk_resource.register_resource = original
        mocks.settles = state["settles"]


def config_strings(values: Mapping[str, Any]) -> dict[str, str]:
    """Config for ``set_all_config``: strings as is, structured values as JSON; ``secure:`` values
    (encrypted in the stack file) are left out -- the program must not need them offline."""
    out = {}
    for k, v in values.items():
        if isinstance(v, Mapping) and "secure" in v:
            continue
        out[k] = v if isinstance(v, str) else json.dumps(v, default=_yaml_date)
    return out


def _yaml_date(v: Any) -> str:
    """JSON for the YAML timestamps PyYAML's SafeLoader returns (``until: 2026-12-31``): the ISO text,
    as the Pulumi CLI passes them (its YAML decoder keeps a timestamp decoded into an untyped value as
    the string it was written as, go-yaml v3 ``decode.go``)."""
    import datetime as dt

    if isinstance(v, dt.date):
        return v.isoformat()
    raise TypeError(f"Object of type {type(v).__name__} is not JSON serializable")


def run_program(
    project_dir: Path, stack: str, values: Mapping[str, Any], *, stack_file: str | None = None, project: str = PROJECT
) -> tuple[PreviewMocks, dict[str, Any]]:
    """Run ``<project_dir>/__main__.py`` under mocks with config ``values`` (``{"ns:key": value}``).

    While it runs, every file is hashed at most once (:func:`teeform.fsutil.hash_cache`: many
    targets sharing one EIF cost one hash pass), the collector runs less often (:func:`quiet_gc`)
    and the SDK skips source positions (:func:`_no_source_positions`).

    Returns:
        (the mocks, holding every registration and invoke; the stack outputs in export order).

    Raises:
        TeeformError: raised by the program (unwrapped), or wrapping any other program failure.
    """
    import pulumi
    import pulumi.runtime
    from pulumi.runtime import settings
    from pulumi.runtime.sync_await import _sync_await

    program = project_dir / "__main__.py"
    if not program.is_file():
        raise TeeformError("no Pulumi program here", path=program, hint="use --project-dir with the teeform project")
    region = str(values.get("aws:region") or "us-east-1")
    mocks = make_mocks(region)
    install_mocks(mocks, project=project, stack=stack)
    pulumi.runtime.set_all_config(config_strings(values))

    @pulumi.runtime.test
    def _run() -> None:
        runpy.run_path(str(program), run_name="__main__")

    try:
        with sys_path(project_dir), _env("TEEFORM_STACK_FILE", stack_file), quiet_gc(), _no_source_positions(), \
                _settle_registrations(mocks), hash_cache():
            _run()
            root = settings.get_root_resource()
            outputs = {k: _sync_await(pulumi.Output.from_input(v).future()) for k, v in (root.outputs if root else {}).items()}  # type: ignore[attr-defined]
    except Exception as exc:
        found = find_teeform_error(exc)
        if found is not None:
            raise found from None
        raise TeeformError(
            f"the Pulumi program failed: {type(exc).__name__}: {exc}".splitlines()[0],
            path=program, hint="rerun with --debug for the traceback",
        ) from exc
    return mocks, outputs
