"""Record a whole training step as a CUDA graph once, then replay it (GPU only).

Run eagerly, a training step launches a few hundred small kernels, each from
Python; on a fast GPU the launches, not the arithmetic, set the pace.  A CUDA
graph records the step's kernels once and replays all of them with one launch::

    def train_step(src, tgt, mask):
        opt.zero_grad()
        loss = model(src, tgt, mask=mask)
        loss.backward()
        opt.step()
        return loss

    step = CapturedStep(train_step, optimizers=[opt])
    for src, tgt, mask in batches:            # device arrays of fixed shapes
        loss = step(src, tgt, mask)           # loss.item() syncs; do it only to print

What a captured step needs:

* fixed shapes and dtypes: every call's inputs have the first call's shapes
  (pad batches to one length);
* ``step_fn`` does all of the step's device work (zero_grad, forward,
  backward, clipping, optimizer step) and returns the loss Tensor; it reads
  no value back to the host (no ``.item()``, no ``if`` on a device value);
* optimizers that support capture (:class:`~minitx.optim.Adam`,
  :class:`~minitx.optim.AdamW`), all passed in ``optimizers``: learning-rate
  changes between calls (schedules) take effect, other hyperparameters are
  fixed once captured;
* no dropout: random masks drawn during the capture would be replayed as they are.

The first ``warmup`` calls run eagerly (kernels compile, the optimizer lays
out its flat buffers); the next call records the step and replays it, and
every later call copies its inputs into the recorded input buffers and
replays.  Arrays the step allocates come from a memory pool of the graph's
own, so nothing else can reuse memory the graph writes; once the graph is
recorded, the blocks CuPy's default pool cached during the eager warm-up are
released.  The returned loss
Tensor is the same object each call, overwritten by each replay.
"""
from . import backend
from .autograd.tensor import Tensor
from .errors import DeviceError, InputError, ShapeError


class CapturedStep:
    """A training step recorded as a CUDA graph; call it like ``step_fn`` (see module doc)."""

    def __init__(self, step_fn, optimizers, warmup=3):
        if not callable(step_fn):
            raise InputError(f"CapturedStep: step_fn must be callable, got {type(step_fn).__name__}")
        optimizers = list(optimizers)
        for opt in optimizers:
            if not getattr(opt, "supports_capture", False):
                raise InputError(f"CapturedStep: {type(opt).__name__} cannot be captured (its step "
                                 "keeps host-side state); use Adam or AdamW")
        if int(warmup) < 1:
            raise InputError(f"CapturedStep: warmup must be >= 1 eager step, got {warmup}")
        self.step_fn, self.optimizers, self.warmup = step_fn, optimizers, int(warmup)
        self.calls = 0          # steps taken so far, eager and replayed
        self.graph = None       # the recorded graph, once captured
        self.loss = None        # the loss Tensor the graph overwrites
        self._static = None     # the recorded input arrays
        self._pool = None       # the graph's private memory pool

    @property
    def memory_pool(self):
        """The CuPy memory pool the captured step allocates from (None before the capture)."""
        return self._pool

    def __call__(self, *inputs):
        arrays = [x.data if isinstance(x, Tensor) else x for x in inputs]
        for i, a in enumerate(arrays):
            if not backend.is_gpu_array(a):
                raise DeviceError(f"CapturedStep: input {i} is not a GPU array; CUDA graphs "
                                  "record GPU work only (move the batch with .to('gpu'))")
        if self.graph is None and self.calls < self.warmup:
            self.calls += 1
            return self.step_fn(*inputs)
        if self.graph is None:
            self._capture(inputs, arrays)       # records the step; the launch below runs it
        else:
            self._load_inputs(arrays)
        cp = backend.array_module("gpu")
        for opt in self.optimizers:
            opt.before_replay()
        self.graph.launch(stream=cp.cuda.get_current_stream())
        for opt in self.optimizers:
            opt.after_replay()
        self.calls += 1
        return self.loss

    def _load_inputs(self, arrays):
        """Copy this call's inputs into the recorded buffers (on the current stream)."""
        if len(arrays) != len(self._static):
            raise InputError(f"CapturedStep: captured with {len(self._static)} inputs, "
                             f"called with {len(arrays)}")
        for i, (buf, a) in enumerate(zip(self._static, arrays)):
            if a.shape != buf.shape or a.dtype != buf.dtype:
                raise ShapeError(f"CapturedStep: input {i} has shape {a.shape} and dtype {a.dtype}, "
                                 f"but the step was captured with {buf.shape} {buf.dtype}; "
                                 "pad every batch to one shape")
            buf[...] = a

    def _capture(self, inputs, arrays):
        """Record step_fn on a side stream, allocating from a private pool."""
        cp = backend.array_module("gpu")
        self._static = [a.copy() for a in arrays]                         # the graph's input buffers
        static_inputs = [Tensor(buf) if isinstance(x, Tensor) else buf
                         for x, buf in zip(inputs, self._static)]
        cp.cuda.get_current_stream().synchronize()                       # eager work done first
        self._pool = cp.cuda.MemoryPool()
        stream = cp.cuda.Stream(non_blocking=True)
        for opt in self.optimizers:
            opt.capturing = True
        try:
            with cp.cuda.using_allocator(self._pool.malloc), stream:
                stream.begin_capture()
                try:
                    loss = self.step_fn(*static_inputs)
                except BaseException:
                    try:
                        stream.end_capture()                              # leave the stream usable
                    except Exception:   # an invalidated capture also fails to end; keep the first error
                        pass
                    raise
                graph = stream.end_capture()
        finally:
            for opt in self.optimizers:
                opt.capturing = False
        if not isinstance(loss, Tensor):
            raise InputError(f"CapturedStep: step_fn must return the loss Tensor, got {type(loss).__name__}")
        self.graph, self.loss = graph, loss
        cp.get_default_memory_pool().free_all_blocks()    # the eager warm-up's cached temporaries
