"""How the network runs: one configuration path for the CLI, the library and the benchmark.

:func:`configure` is the only place that sets a network up for a run: weights in the run's
dtype, the memory layout of each part (:class:`~adcvsr_cli.model.Layout`), ``torch.compile``,
CUDA graphs and the cuDNN autotuner. It returns a :class:`FastForward`, the callable
``(x, frames) -> y`` that :class:`~adcvsr_cli.pipeline.Upscaler` calls for every chunk and tile,
so ``adcvsr upscale`` and every benchmark variant run the same code.

A :class:`FastPath` names the options, written as tokens joined by ``+``:

- ``pipeline``: nothing asked, the defaults of ``adcvsr upscale`` (the measured layout of the
  device, no compiler);
- ``eager`` (or ``contiguous``): every part contiguous, no compiler (the baseline);
- ``channels_last`` (``cl``): every part channels-last; ``cl_unet``, ``cl_mid``, ``cl_up``:
  that part channels-last, the others contiguous (see :data:`DEFAULT_LAYOUTS`);
- ``autocast``: float32 weights under ``torch.autocast(dtype)`` instead of cast weights;
- ``compile``: ``torch.compile`` with static shapes (one graph per input shape); a failure, or
  PyTorch's recompile limit, falls back to eager with a warning and a recorded reason;
- ``dynamic``: with ``compile``, ``dynamic=True``; ``max_autotune``: mode
  ``max-autotune-no-cudagraphs``;
- ``graphs``: CUDA graphs where shapes are static: one captured graph per input shape (at most
  :attr:`FastForward.max_graphs`), all in one memory pool that an out-of-memory error releases;
  with ``compile``: mode ``reduce-overhead``. Ignored on the CPU;
- ``cudnn_benchmark``: ``torch.backends.cudnn.benchmark`` on during each network call (restored
  after it, so nothing leaks into the rest of the process).

Nothing here prints; notices go to an ``on_event`` callback.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import nn

from .engine.cpumem import keep_freed_memory
from .errors import UsageError
from .model import Layout

Event = dict[str, Any]

_ALIASES = {
    "cl": "channels_last",
    "channels-last": "channels_last",
    "cuda_graphs": "graphs",
    "eager": "contiguous",
}
_LAYOUT_TOKENS = {
    "contiguous": Layout(),
    "channels_last": Layout(True, True, True),
    "cl_unet": Layout(unet=True),
    "cl_mid": Layout(mid=True),
    "cl_up": Layout(up=True),
}
_FLAGS = ("autocast", "compile", "dynamic", "max_autotune", "graphs", "cudnn_benchmark")
TOKENS = ("pipeline", "eager", *_LAYOUT_TOKENS, *_FLAGS)

# The layout ``adcvsr upscale`` uses per device type, chosen by measurement (protocol L of the
# benchmark: every combination, interleaved, min of N).
# - cpu: the decoder (mid block and up blocks) channels-last, the UNet contiguous. AdcSR dims,
#   fp32, 2 threads, 2 frames 64x64 -> 256x256: see the project's issue notes for the table.
#   GroupNorm is slower channels-last on the CPU too, but oneDNN's channels-last convolutions at
#   64-256 channels and 128-256 px win more than that loses; the UNet's wide, small convolutions
#   do not.
# - cuda: contiguous everywhere. Not measured by this code yet (no GPU was at hand): on an H200
#   the reference network ran 219 ms fully channels-last against 194 ms contiguous (fp16 eager;
#   CUDA's channels-last GroupNorm is slow) and equal under torch.compile. Run protocol L on a
#   card and update this entry.
DEFAULT_LAYOUTS: dict[str, Layout] = {
    "cpu": Layout(mid=True, up=True),
    "cuda": Layout(),
}


def default_layout(device: torch.device) -> Layout:
    """The measured default layout of ``device``'s type (contiguous for unknown types)."""
    return DEFAULT_LAYOUTS.get(device.type, Layout())


@dataclass(frozen=True)
class FastPath:
    """One combination of options (see the module docstring). ``layout`` None: the device's
    default (:func:`default_layout`)."""

    layout: Layout | None = None
    autocast: bool = False
    compile: bool = False
    dynamic: bool = False
    max_autotune: bool = False
    graphs: bool = False
    cudnn_benchmark: bool = False

    @classmethod
    def parse(cls, spec: str) -> FastPath:
        """``"cl_up+compile"`` -> FastPath. Raises :class:`UsageError` on a bad token."""
        if not isinstance(spec, str) or not spec.strip():
            raise UsageError(f"variant {spec!r} is empty (use e.g. eager, channels_last+compile)")
        flags: dict[str, bool] = {}
        layout: Layout | None = None
        toks = [_ALIASES.get(t.strip(), t.strip()) for t in spec.strip().lower().split("+")]
        for raw, tok in zip(spec.strip().lower().split("+"), toks, strict=True):
            if tok == "pipeline":
                if len(toks) > 1:
                    raise UsageError(f"variant {spec!r}: 'pipeline' cannot be combined")
            elif tok in _LAYOUT_TOKENS:
                part = _LAYOUT_TOKENS[tok]
                base = layout or Layout()
                layout = Layout(base.unet or part.unet, base.mid or part.mid, base.up or part.up)
            elif tok in _FLAGS:
                flags[tok] = True
            else:
                raise UsageError(
                    f"variant {spec!r}: unknown option {raw.strip()!r} (options: {', '.join(TOKENS)})"
                )
        fp = cls(layout=layout, **flags)
        if (fp.dynamic or fp.max_autotune) and not fp.compile:
            raise UsageError(f"variant {spec!r}: 'dynamic' and 'max_autotune' need 'compile'")
        return fp

    @property
    def name(self) -> str:
        on = [f.name for f in fields(self) if f.name != "layout" and getattr(self, f.name)]
        if self.layout is not None:
            lay = self.layout
            if lay == Layout():
                on.insert(0, "eager" if not on else "contiguous")
            elif lay == Layout(True, True, True):
                on.insert(0, "channels_last")
            else:
                on[:0] = [f"cl_{p}" for p in ("unet", "mid", "up") if getattr(lay, p)]
        return "+".join(on) if on else "pipeline"


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


@contextlib.contextmanager
def _cudnn_benchmark(on: bool) -> Iterator[None]:
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = on
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


def configure(
    model: nn.Module,
    *,
    device: torch.device,
    dtype: torch.dtype,
    fastpath: FastPath | None = None,
    decode_group: int | None = None,
    compile_backend: str | Callable[..., Any] | None = None,
    copy_model: bool = False,
    on_event: Callable[[Event], None] | None = None,
) -> FastForward:
    """Set ``model`` up for a run and return its network call. The one configuration path.

    ``model``: an :class:`~adcvsr_cli.model.AdcVSR` (or a module with its ``dims``,
    ``set_layout`` and ``forward(x, frames, decode_group)``), already on ``device``. Its weights
    are cast to ``dtype`` (float32 for ``autocast``) and put in the layout of ``fastpath`` (the
    device's default when it names none). ``decode_group``: frames the decoder up blocks take at
    once (bounds memory). ``compile_backend``: torch.compile's backend (default inductor).
    ``copy_model``: configure a copy and leave ``model`` untouched.
    """
    fp = fastpath or FastPath()
    if device.type == "cpu":
        keep_freed_memory()  # frame-sized temporaries reused, not faulted in again per chunk
    m = copy.deepcopy(model) if copy_model else model
    m = m.to(torch.float32 if fp.autocast else dtype)
    layout = fp.layout if fp.layout is not None else default_layout(device)
    m.set_layout(layout)  # type: ignore[operator]
    m.eval().requires_grad_(False)
    return FastForward(
        m,
        device=device,
        dtype=dtype,
        fastpath=fp,
        layout=layout,
        decode_group=decode_group,
        compile_backend=compile_backend,
        on_event=on_event,
    )


class FastForward:
    """``(x, frames) -> y`` through a configured network (build it with :func:`configure`).

    ``x``: (B*T, 3, h, w) in [-1, 1] (any float dtype, on the model's device); ``frames``: the
    clip length T. Returns (B*T, 3, 4h, 4w), float32 when ``float_output``, else the network's
    dtype. Outputs of CUDA graph replays are cloned unless ``clone_output`` is False.

    ``info`` says what actually ran: ``layout``, ``compiled`` (a compiled graph ran),
    ``compiles`` (graphs built), ``compile_fallback`` (why compilation was abandoned),
    ``graphs`` (CUDA graphs captured), ``graphs_fallback``, ``first_call_s`` per input shape.
    """

    max_graphs = 4

    def __init__(
        self,
        model: nn.Module,
        *,
        device: torch.device,
        dtype: torch.dtype,
        fastpath: FastPath,
        layout: Layout,
        decode_group: int | None = None,
        compile_backend: str | Callable[..., Any] | None = None,
        float_output: bool = True,
        clone_output: bool = True,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.model = model
        self.device = device
        self.dtype = dtype
        self.fp = fastpath
        self.layout = layout
        self.decode_group = decode_group
        self.float_output = float_output
        self.clone_output = clone_output
        self.emit = on_event or (lambda _e: None)
        self.compile_backend = compile_backend
        self.on_cuda = device.type == "cuda"
        self._graphs: dict[tuple, tuple[Any, torch.Tensor, torch.Tensor]] = {}
        self._pool: Any = None
        self._seen: set[tuple] = set()
        self.info: dict[str, Any] = {
            "variant": fastpath.name,
            "layout": layout.name,
            "compiled": False,
            "compiles": 0,
            "compile_fallback": None,
            "graphs": 0,
            "graphs_fallback": None,
            "first_call_s": {},
        }
        self._compiled: Callable[[torch.Tensor, int], torch.Tensor] | None = None
        if fastpath.compile:
            self._compiled = self._make_compiled(compile_backend)

    def reconfigured(self, dtype: torch.dtype, copy_model: bool = False) -> FastForward:
        """The same options in another dtype (the fp16 -> bf16 rerun): weights cast in place (in
        a copy with ``copy_model``), compiled or captured graphs dropped (they were built for the
        old dtype)."""
        return configure(
            self.model,
            device=self.device,
            dtype=dtype,
            fastpath=replace(self.fp, layout=self.layout),
            decode_group=self.decode_group,
            compile_backend=self.compile_backend,
            copy_model=copy_model,
            on_event=self.emit,
        )

    # -- the network call ---------------------------------------------------------------------
    def _core(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        x = x.to(torch.float32 if self.fp.autocast else self.dtype)
        if self.fp.autocast and self.dtype != torch.float32:
            with torch.autocast(self.device.type, dtype=self.dtype):
                y = self.model(x, frames, self.decode_group)
        else:
            y = self.model(x, frames, self.decode_group)
        return y.float() if self.float_output else y

    def _make_compiled(
        self, backend: str | Callable[..., Any] | None
    ) -> Callable[[torch.Tensor, int], torch.Tensor] | None:
        mode = None
        if self.fp.graphs and self.on_cuda:
            mode = "reduce-overhead"
        elif self.fp.max_autotune:
            mode = "max-autotune-no-cudagraphs"
        inner = backend or "inductor"
        if isinstance(inner, str):
            from torch._dynamo import lookup_backend

            inner = lookup_backend(inner)

        def counting(gm: Any, example_inputs: Any, **kw: Any) -> Any:
            self.info["compiles"] += 1
            return inner(gm, example_inputs, **kw)

        try:
            if mode is not None and backend is None:
                return torch.compile(self._core, dynamic=self.fp.dynamic, mode=mode)
            return torch.compile(self._core, dynamic=self.fp.dynamic, backend=counting)
        except (RuntimeError, ImportError) as e:  # no compiler backend at all
            self._fallback(e)
            return None

    def _fallback(self, e: BaseException, reason: str | None = None) -> None:
        """Stop compiling: record why in ``info`` and say so in a warning event tagged
        ``fallback: "compile"`` (the CLI repeats such warnings in its final report)."""
        if reason is None:
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip()
        self.info["compile_fallback"] = reason[:500]
        self._compiled = None
        self.emit(
            {
                "type": "warning",
                "fallback": "compile",
                "message": f"compilation (--compile) stopped: {reason[:200]}; the network runs "
                "uncompiled from here",
            }
        )

    def _graph_call(self, x: torch.Tensor, frames: int) -> torch.Tensor | None:
        key = (tuple(x.shape), x.dtype, frames)
        entry = self._graphs.get(key)
        if entry is None:
            if len(self._graphs) >= self.max_graphs or self.info.get("graphs_fallback"):
                return None
            entry = self._capture(x, frames)
            if entry is None:
                return None
            self._graphs[key] = entry
            self.info["graphs"] = len(self._graphs)
        graph, static_in, static_out = entry
        static_in.copy_(x)
        graph.replay()
        return static_out.clone() if self.clone_output else static_out

    def _capture(
        self, x: torch.Tensor, frames: int
    ) -> tuple[Any, torch.Tensor, torch.Tensor] | None:
        static_in = x.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # warm up (cuDNN choices, allocator) outside the capture
                self._core(static_in, frames)
        torch.cuda.current_stream().wait_stream(side)
        if self._pool is None:
            # One pool for every captured shape: replays run one at a time and their outputs
            # are cloned, so graphs may reuse each other's intermediate memory.
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, pool=self._pool):
                static_out = self._core(static_in, frames)
        except RuntimeError as e:
            if _is_oom(e):
                raise
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            self.info["graphs_fallback"] = reason[:500]
            self.emit(
                {
                    "type": "warning",
                    "fallback": "graphs",
                    "message": f"CUDA graph capture (--fastpath graphs) failed: {reason[:200]}; "
                    "the network runs without graphs",
                }
            )
            return None
        return graph, static_in, static_out

    def release_graphs(self) -> None:
        """Drop every captured graph and their shared memory pool (before an out-of-memory
        back-off retries at a smaller plan; later shapes are captured again)."""
        if not self._graphs and self._pool is None:
            return
        self._graphs.clear()
        self._pool = None
        self.info["graphs"] = 0
        if self.on_cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()

    def __call__(self, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
        key = (tuple(x.shape), frames)
        first = key not in self._seen
        t0 = time.perf_counter()
        with torch.inference_mode(), _cudnn_benchmark(self.fp.cudnn_benchmark):
            try:
                y = self._dispatch(x, frames)
            except torch.OutOfMemoryError:
                self.release_graphs()
                raise
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
            y = self._compiled_call(x, frames)
            if y is not None:
                return y
        if self.fp.graphs and self.on_cuda:
            replayed = self._graph_call(x, frames)
            if replayed is not None:
                return replayed
        return self._core(x, frames)

    def _compiled_call(self, x: torch.Tensor, frames: int) -> torch.Tensor | None:
        """A compiled call, or None after falling back. PyTorch's recompile limit raises here
        instead of silently running eager, so the fallback is seen and reported."""
        import torch._dynamo
        from torch._dynamo.exc import FailOnRecompileLimitHit

        assert self._compiled is not None
        if not (x.is_inference() and x.is_contiguous()):
            # Dynamo guards on the input's strides and dispatch keys: a chunk stacked from
            # decoded (H, W, C) frames, or made outside inference mode, and a padded one would
            # build two graphs of one shape. A contiguous inference copy of the LR input (small
            # next to the network, whose first step copies it anyway) keeps one graph a file.
            x = x.clone(memory_format=torch.contiguous_format)
        try:
            with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
                if self.fp.graphs and self.on_cuda:
                    torch.compiler.cudagraph_mark_step_begin()
                    y = self._compiled(x, frames)
                    y = y.clone() if self.clone_output else y
                else:
                    y = self._compiled(x, frames)
        except torch.OutOfMemoryError:
            raise
        except FailOnRecompileLimitHit as e:
            limit = torch._dynamo.config.recompile_limit
            shape = "x".join(map(str, x.shape))
            self._fallback(
                e, f"recompile limit ({limit} input shapes) reached at input {shape} x {frames}"
            )
            return None
        except (RuntimeError, torch._dynamo.exc.TorchDynamoException) as e:
            self._fallback(e)
            return None
        self.info["compiled"] = True
        return y


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


__all__ = [
    "DEFAULT_LAYOUTS",
    "TOKENS",
    "FastForward",
    "FastPath",
    "configure",
    "default_layout",
    "parse_variants",
    "strict_fp32",
]
