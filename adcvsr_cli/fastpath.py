"""Fast-path options for running the network, switchable one by one so they can be measured.

A :class:`FastPath` names a set of options, written as tokens joined by ``+`` (``"eager"``,
``"channels_last+compile"``, ``"autocast+graphs"``...):

- ``eager``: weights cast to the run's dtype, contiguous tensors, no compiler (the baseline);
- ``pipeline``: the network exactly as :func:`adcvsr_cli.pipeline.load_model` sets it up today
  (:class:`~adcvsr_cli.pipeline.Upscaler`'s own forward); the benchmark treats it specially;
- ``channels_last`` (``cl``): weights and inputs in channels-last memory format;
- ``autocast``: float32 weights under ``torch.autocast(dtype)`` instead of cast weights (norms
  and softmax then run in float32: slower, more accurate);
- ``compile``: ``torch.compile`` with static shapes (one graph per input shape), falling back to
  eager, with a recorded reason, when compilation fails;
- ``dynamic``: with ``compile``, ``dynamic=True`` (what the pipeline asks for today);
- ``max_autotune``: with ``compile``, mode ``max-autotune-no-cudagraphs``;
- ``graphs``: CUDA graphs where shapes are static. Alone: one captured graph per input shape
  (at most :attr:`FastForward.max_graphs`, then eager); with ``compile``: mode
  ``reduce-overhead``. Ignored on the CPU;
- ``cudnn_benchmark``: ``torch.backends.cudnn.benchmark = True`` while the variant runs.

:class:`FastForward` is a callable ``(x, frames) -> y`` with the signature of the pipeline's
``Upscaler._forward``: (B*T, 3, h, w) float in [-1, 1] -> (B*T, 3, 4h, 4w), float32 by default.
Nothing here prints; notices go to an ``on_event`` callback.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import torch
from torch import nn

from .errors import UsageError

Event = dict[str, Any]
M = TypeVar("M", bound=nn.Module)

_ALIASES = {"cl": "channels_last", "channels-last": "channels_last", "cuda_graphs": "graphs"}
TOKENS = (
    "eager",
    "pipeline",
    "channels_last",
    "autocast",
    "compile",
    "dynamic",
    "max_autotune",
    "graphs",
    "cudnn_benchmark",
)


@dataclass(frozen=True)
class FastPath:
    """One combination of fast-path options (see the module docstring for each)."""

    pipeline: bool = False
    channels_last: bool = False
    autocast: bool = False
    compile: bool = False
    dynamic: bool = False
    max_autotune: bool = False
    graphs: bool = False
    cudnn_benchmark: bool = False

    @classmethod
    def parse(cls, spec: str) -> FastPath:
        """``"channels_last+compile"`` -> FastPath. Raises :class:`UsageError` on a bad token."""
        if not isinstance(spec, str) or not spec.strip():
            raise UsageError(f"variant {spec!r} is empty (use e.g. eager, channels_last+compile)")
        flags: dict[str, bool] = {}
        for raw in spec.strip().lower().split("+"):
            tok = _ALIASES.get(raw.strip(), raw.strip())
            if tok not in TOKENS:
                raise UsageError(
                    f"variant {spec!r}: unknown option {raw!r} (options: {', '.join(TOKENS)})"
                )
            if tok != "eager":
                flags[tok] = True
        fp = cls(**flags)
        if fp.pipeline and len(flags) > 1:
            raise UsageError(f"variant {spec!r}: 'pipeline' cannot be combined with other options")
        if (fp.dynamic or fp.max_autotune) and not fp.compile:
            raise UsageError(f"variant {spec!r}: 'dynamic' and 'max_autotune' need 'compile'")
        return fp

    @property
    def name(self) -> str:
        on = [f.name for f in fields(self) if getattr(self, f.name)]
        return "+".join(on) if on else "eager"


def parse_variants(specs: str | Sequence[str]) -> list[FastPath]:
    """``"eager,channels_last,compile"`` (or a list of such) -> FastPaths, duplicates dropped."""
    items = specs.split(",") if isinstance(specs, str) else list(specs)
    out: list[FastPath] = []
    for s in items:
        if isinstance(s, str) and not s.strip():
            continue
        fp = FastPath.parse(s)
        if fp not in out:
            out.append(fp)
    if not out:
        raise UsageError("no variant given (use e.g. --variants eager,channels_last,compile)")
    return out


@contextlib.contextmanager
def backend_flags(fp: FastPath, device: torch.device) -> Iterator[None]:
    """Set the global backend switches a variant needs, and restore them afterwards."""
    old = torch.backends.cudnn.benchmark
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = fp.cudnn_benchmark
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


@contextlib.contextmanager
def strict_fp32(device: torch.device) -> Iterator[None]:
    """Full float32 arithmetic (no TF32) for reference runs on a CUDA card."""
    if device.type != "cuda":
        yield
        return
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def prepare_model(model: M, dtype: torch.dtype, fp: FastPath, *, copy_model: bool = True) -> M:
    """The network as ``fp`` runs it: weights in ``dtype`` (float32 for ``autocast``), in
    channels-last format for ``channels_last`` (and for ``pipeline`` on a CUDA card, as
    ``load_model`` does). ``copy_model``: leave ``model`` itself untouched."""
    m = copy.deepcopy(model) if copy_model else model
    m = m.to(torch.float32 if fp.autocast else dtype)
    on_cuda = next(iter(m.parameters())).device.type == "cuda"
    if fp.channels_last or (fp.pipeline and on_cuda):
        m = m.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return m.eval().requires_grad_(False)


class FastForward:
    """``(x, frames) -> y`` through ``model`` with the options of ``fp``.

    ``x``: (B*T, 3, h, w) in [-1, 1] (any float dtype, on the model's device); ``frames``: the
    clip length T. Returns (B*T, 3, 4h, 4w), float32 when ``float_output`` (as the pipeline
    expects), else the network's dtype. Outputs of CUDA graph replays are cloned unless
    ``clone_output`` is False (the caller must then consume them before the next call).

    ``info`` says what actually ran: ``compiled`` (a compiled graph ran), ``compile_fallback``
    (why compilation was abandoned), ``graphs`` (CUDA graphs captured), ``graphs_fallback`` (why
    capture was abandoned), ``first_call_s`` per input shape.
    """

    max_graphs = 4

    def __init__(
        self,
        model: nn.Module,
        *,
        device: torch.device,
        dtype: torch.dtype,
        fastpath: FastPath,
        float_output: bool = True,
        clone_output: bool = True,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        if fastpath.pipeline:
            raise ValueError("FastForward does not run the 'pipeline' variant (use the Upscaler)")
        self.model = model
        self.device = device
        self.dtype = dtype
        self.fp = fastpath
        self.float_output = float_output
        self.clone_output = clone_output
        self.emit = on_event or (lambda _e: None)
        self.on_cuda = device.type == "cuda"
        self._graphs: dict[tuple, tuple[Any, torch.Tensor, torch.Tensor]] = {}
        self._seen: set[tuple] = set()
        self.info: dict[str, Any] = {
            "variant": fastpath.name,
            "compiled": False,
            "compile_fallback": None,
            "graphs": 0,
            "graphs_fallback": None,
            "first_call_s": {},
        }
        self._compiled: Callable[[torch.Tensor, int], torch.Tensor] | None = None
        if fastpath.compile:
            self._compiled = self._make_compiled()

    # -- the network call ---------------------------------------------------------------------
    def _core(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        x = x.to(torch.float32 if self.fp.autocast else self.dtype)
        if self.fp.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.fp.autocast and self.dtype != torch.float32:
            with torch.autocast(self.device.type, dtype=self.dtype):
                y = self.model(x, frames)
        else:
            y = self.model(x, frames)
        return y.float() if self.float_output else y

    def _make_compiled(self) -> Callable[[torch.Tensor, int], torch.Tensor] | None:
        mode = None
        if self.fp.graphs and self.on_cuda:
            mode = "reduce-overhead"
        elif self.fp.max_autotune:
            mode = "max-autotune-no-cudagraphs"
        try:
            return torch.compile(self._core, dynamic=self.fp.dynamic, mode=mode)
        except Exception as e:  # no compiler backend at all
            self._fallback(e)
            return None

    def _fallback(self, e: BaseException) -> None:
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip()
        self.info["compile_fallback"] = reason[:500]
        self._compiled = None
        self.emit(
            {
                "type": "warning",
                "message": f"torch.compile failed ({reason[:200]}); running eager instead",
            }
        )

    def _graph_call(self, x: torch.Tensor, frames: int) -> torch.Tensor | None:
        key = (tuple(x.shape), x.dtype, frames)
        entry = self._graphs.get(key)
        if entry is None:
            if len(self._graphs) >= self.max_graphs:
                return None
            if self.info.get("graphs_fallback"):
                return None
            static_in = x.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):  # warm up (cuDNN choices, allocator) outside the capture
                    self._core(static_in, frames)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):
                    static_out = self._core(static_in, frames)
            except Exception as e:
                if _is_oom(e):
                    raise
                reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                self.info["graphs_fallback"] = reason[:500]
                self.emit(
                    {
                        "type": "warning",
                        "message": f"CUDA graph capture failed ({reason[:200]}); running eager",
                    }
                )
                return None
            entry = (graph, static_in, static_out)
            self._graphs[key] = entry
            self.info["graphs"] = len(self._graphs)
        graph, static_in, static_out = entry
        static_in.copy_(x)
        graph.replay()
        return static_out.clone() if self.clone_output else static_out

    def __call__(self, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
        key = (tuple(x.shape), frames)
        first = key not in self._seen
        t0 = time.perf_counter()
        with torch.inference_mode():
            y = self._dispatch(x, frames)
        if first:
            if self.on_cuda:
                torch.cuda.synchronize(self.device)
            self._seen.add(key)
            self.info["first_call_s"][f"{tuple(x.shape)}x{frames}"] = round(
                time.perf_counter() - t0, 3
            )
        return y

    def _dispatch(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        if self._compiled is not None:
            try:
                if self.fp.graphs and self.on_cuda:
                    torch.compiler.cudagraph_mark_step_begin()
                    y = self._compiled(x, frames)
                    y = y.clone() if self.clone_output else y
                else:
                    y = self._compiled(x, frames)
                self.info["compiled"] = True
                return y
            except Exception as e:
                if _is_oom(e):
                    raise
                self._fallback(e)
        if self.fp.graphs and self.on_cuda:
            replayed = self._graph_call(x, frames)
            if replayed is not None:
                return replayed
        return self._core(x, frames)


def _is_oom(e: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None)
    return (oom is not None and isinstance(e, oom)) or "out of memory" in str(e).lower()


__all__ = [
    "TOKENS",
    "FastForward",
    "FastPath",
    "backend_flags",
    "parse_variants",
    "prepare_model",
    "strict_fp32",
]
