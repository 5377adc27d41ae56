"""``trace(model)``: remember which module call made each graph node.

    with graph.trace(model):
        loss = model(src, tgt, mask=mask)
    print(graph.to_text(loss, params=model, collapse_modules=True))

While the context is active, every module in ``model`` has a forward pre-hook
that pushes a frame ``(dotted name, class name, call number, id)`` onto a scope
stack and a forward hook that pops it, and ``Function.apply`` calls
``record(fn)`` on every recorded node (one flag test per op when no trace is
active), which stores the current stack as ``fn.scope``.  Leaving the context
removes every hook; nodes made outside it get no scope.
"""
import itertools

from .function import NodeHook

_calls = itertools.count(1)    # numbers every traced module call, across traces


def module_paths(model):
    """{id(module): [every dotted name it is reachable under]} (a tied module has several)."""
    paths, stack = {}, [("", model, ())]
    while stack:
        name, mod, ancestors = stack.pop()
        paths.setdefault(id(mod), (mod, []))[1].append(name)
        for child_name, child in reversed(list(mod._modules.items())):
            if child is not None and id(child) not in ancestors:
                full = f"{name}.{child_name}" if name else child_name
                stack.append((full, child, ancestors + (id(mod),)))
    return paths


class trace:
    """Context manager recording the module scope of every node made inside it (see module doc)."""

    def __init__(self, model):
        if not hasattr(model, "register_forward_pre_hook"):
            raise TypeError(f"trace() needs a minitx Module, got {type(model).__name__}")
        self.model = model
        self.stack, self.handles = (), []

    def __enter__(self):
        self.paths = module_paths(self.model)
        for mod, _ in self.paths.values():
            self.handles.append(mod.register_forward_pre_hook(self._enter))
            self.handles.append(mod.register_forward_hook(self._exit))
        self.prev, NodeHook.on_record = NodeHook.on_record, self.record
        return self

    def __exit__(self, *exc):
        NodeHook.on_record = self.prev
        for h in self.handles:
            h.remove()
        self.handles, self.stack = [], ()

    def _enter(self, module, args):
        names = self.paths[id(module)][1]
        parent = self.stack[-1][0] if self.stack else None
        name = names[0]
        if parent is not None:               # a tied module: take the name under the caller
            name = next((n for n in names if parent == "" or n.startswith(parent + ".")), name)
        self.stack = self.stack + ((name, type(module).__name__, next(_calls), id(module)),)

    def _exit(self, module, args, out):
        for i in range(len(self.stack) - 1, -1, -1):   # also drops frames left by a caught exception
            if self.stack[i][3] == id(module):
                self.stack = self.stack[:i]
                break

    def record(self, fn):
        """Called by ``Function.apply`` on each recorded node: store the current module stack."""
        fn.scope = self.stack
