"""The thinnest stand-in for torch and the model libraries: any attribute is another stand-in,
calling one returns one, and as a value it is false, empty and zero. Fooocus's own modules can then
import and define their classes (nn.Module subclasses, @torch.no_grad() functions) without a GPU
stack; nothing here computes. Module-level values Fooocus reads as real data are set explicitly."""
import os
import types


class StubMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return child(cls, name)

    def __call__(cls, *a, **k):
        # `@torch.no_grad` and friends used without parentheses: keep the function.
        if cls._pure and len(a) == 1 and not k and isinstance(a[0], (types.FunctionType, type)):
            return a[0]
        return super().__call__(*a, **k)

    def __bool__(cls):
        return False

    def __repr__(cls):
        return "<stand-in %s>" % cls.__qualname__

    def __iter__(cls):
        return iter(())

    def __or__(cls, other):  # typing: `torch.Tensor | None`
        return cls

    __ror__ = __or__

    def __getitem__(cls, item):  # typing: `Optional[torch.Tensor]`, `Tensor[...]`
        return cls


_cache = {}


def child(parent, name):
    key = (parent, name)
    if key not in _cache:
        base = (Exception,) if name.endswith(("Error", "Exception")) else ()
        c = StubMeta(name, (Stub,) + base, {"_pure": True, "__qualname__": "%s.%s" % (parent.__qualname__, name), "__module__": parent.__module__})
        _cache[key] = c
    return _cache[key]


class Stub(metaclass=StubMeta):
    _pure = True

    def __init_subclass__(cls, **kw):
        cls._pure = False  # a class Fooocus derives (an nn.Module) is built normally

    def __init__(self, *a, **k):
        pass

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return child(type(self), name)()

    def __call__(self, *a, **k):
        if len(a) == 1 and not k and isinstance(a[0], types.FunctionType):
            return a[0]  # @torch.no_grad(), @torch.inference_mode()
        return type(self)()

    def __enter__(self):
        return self

    def __exit__(self, *e):
        return False

    def __bool__(self):
        return False

    def __len__(self):
        return 0

    def __iter__(self):
        return iter(())

    def __int__(self):
        return 0

    def __index__(self):
        return 0

    def __float__(self):
        return 0.0

    def __format__(self, spec):
        return format(0, spec) if spec else repr(self)

    def __repr__(self):
        return "<stand-in %s()>" % type(self).__qualname__

    def __getitem__(self, k):
        return type(self)()

    def __setitem__(self, k, v):
        pass

    def __contains__(self, k):
        return False

    def __eq__(self, other):
        return self is other

    def __hash__(self):
        return id(self)

    def _same(self, *a):
        return self

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _same
    __floordiv__ = __mod__ = __pow__ = __neg__ = __matmul__ = __and__ = __or__ = _same

    def __lt__(self, other):
        return False

    __le__ = __ge__ = __lt__

    def __gt__(self, other):
        # False where a truth value is wanted, a tensor where one is used as such: 2.5's SAM mask
        # is `(final_mask_tensor > 0).to('cpu').numpy()` (extras/inpaint_mask.py).
        return type(self)()


SUBMODULES = {"torch.cuda", "torch.hub", "torch.version"}  # those with values set in module()


class StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        if "%s.%s" % (self.__name__, name) in SUBMODULES:
            import importlib

            return importlib.import_module("%s.%s" % (self.__name__, name))
        root = StubMeta(self.__name__, (Stub,), {"_pure": True, "__qualname__": self.__name__, "__module__": self.__name__})
        value = child(root, name)
        setattr(self, name, value)
        return value


def download_url_to_file(url, dst, *a, **k):
    """torch.hub's downloader, which Fooocus's load_file_from_url calls for a model file it does not
    find: an empty placeholder instead of the weights, and no network. Upstream decides which files
    it needs and prints its own `Downloading: ...` line, as on a real first launch."""
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    open(dst, "wb").close()


class Device:
    """torch.device: Fooocus branches on `.type` ('cpu' takes the psutil path for memory)."""

    def __init__(self, spec="cpu", index=None):
        self.type, _, i = str(spec).partition(":") if not isinstance(spec, int) else ("cuda", "", spec)
        self.index = int(i) if i not in ("", None) else index

    def __eq__(self, other):
        return isinstance(other, Device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))

    def __str__(self):
        return self.type if self.index is None else "%s:%s" % (self.type, self.index)

    __repr__ = __str__


def module(name):
    m = StubModule(name)
    m.__path__ = []
    m.__file__ = "<stand-in %s>" % name
    if name == "torch":
        m.__version__ = "2.1.0"
        m.device = Device
        m.get_num_threads = lambda: os.cpu_count() or 1
    if name == "torch.version":
        m.__version__ = "2.1.0"
        m.cuda = None
        m.hip = None
    if name == "torch.hub":
        m.download_url_to_file = download_url_to_file
        m.get_dir = lambda: os.path.join(os.path.expanduser("~"), ".cache", "torch", "hub")
    if name == "torch.cuda":
        # Without --always-cpu, ComfyUI's model_management sizes the GPU at import: an 8 GiB one.
        gib8 = 8 * 1024 ** 3
        m.mem_get_info = lambda *a: (gib8, gib8)
        m.memory_stats = lambda *a: {"reserved_bytes.all.current": 0, "active_bytes.all.current": 0}
        m.current_device = lambda: 0
        m.get_device_name = lambda *a: "stand-in GPU"
        m.get_allocator_backend = lambda: "native"
    if name == "cv2":
        m.__version__ = "4.8.0"
    return m
