"""Shared by the PyTorch / numpy peers of the benchmarks (run in bench/.venv's pip PyTorch when it
exists, Debian's /usr/bin/python3 otherwise).

Each script prints exactly one JSON object on stdout (its last line); progress goes to stderr.
Inputs and outputs cross as safetensors files, read here without the safetensors package
(header as JSON, data with np.fromfile so that no file pages stay mapped: the peak RSS then
counts what the script holds, as the Node side's does).
"""

import json
import os
import resource
import struct
import sys
import time

import numpy as np

DTYPES = {'F64': np.float64, 'F32': np.float32, 'F16': np.float16, 'BF16': np.uint16, 'I64': np.int64, 'I32': np.int32}


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def blas_info():
    """The BLAS/LAPACK libraries this process actually loaded (from /proc/self/maps), and numpy's build info."""
    np.dot(np.ones((2, 2)), np.ones((2, 2)))
    loaded = set()
    try:
        with open('/proc/self/maps') as f:
            for line in f:
                path = line.split()[-1] if len(line.split()) >= 6 else ''
                name = os.path.basename(path)
                if any(k in name for k in ('blas', 'lapack', 'mkl', 'dnnl', 'gomp', 'omp')):
                    loaded.add(os.path.realpath(path))
    except OSError:
        pass
    try:
        built = np.__config__.get_info('blas_opt_info').get('libraries', [])
    except Exception:  # numpy >= 1.25 has no get_info
        built = []
    return {'numpy_blas_opt_libraries': built, 'loaded': sorted(loaded)}


def torch_blas(torch):
    """The BLAS named in torch's build configuration (torch.__config__.show())."""
    config = torch.__config__.show()
    for line in config.splitlines():
        if 'BLAS_INFO' in line:
            return line.split('BLAS_INFO=')[-1].split(',')[0].strip()
    for name in ('MKL', 'OpenBLAS', 'Accelerate'):
        if name.lower() in config.lower():
            return name
    return 'unknown'


def setup(threads):
    """Sets torch's thread count and reports the environment the timings come from."""
    import torch
    torch.set_num_threads(threads)
    info = {
        'python': sys.version.split()[0],
        'torch': torch.__version__,
        'numpy': np.__version__,
        'torch_threads': torch.get_num_threads(),
        'torch_interop_threads': torch.get_num_interop_threads(),
        'blas': blas_info(),
        'torch_blas': torch_blas(torch),
        # The widest SIMD torch's CPU kernels (and MKL) use here: AVX512 means 512-bit FMA, 4x the
        # lanes of WebAssembly's 128-bit SIMD.
        'torch_cpu_capability': torch.backends.cpu.get_cpu_capability(),
        'openblas_env': {k: v for k, v in os.environ.items() if k.startswith('OPENBLAS')},
        'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY'),
    }
    log(f"python {info['python']}, torch {info['torch']} ({info['torch_threads']} threads), numpy {info['numpy']}; "
        f"BLAS loaded: {', '.join(info['blas']['loaded']) or 'none found'}")
    return info


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class SafeFile:
    def __init__(self, path):
        self.path = path
        with open(path, 'rb') as f:
            (n,) = struct.unpack('<Q', f.read(8))
            header = json.loads(f.read(n))
        self.metadata = header.pop('__metadata__', {})
        self.base = 8 + n
        self.entries = header

    def read(self, name):
        """The tensor as numpy: float types as float32 (bf16 widened exactly), integers as stored."""
        e = self.entries[name]
        start, end = e['data_offsets']
        dt = DTYPES[e['dtype']]
        count = (end - start) // np.dtype(dt).itemsize
        a = np.fromfile(self.path, dtype=dt, count=count, offset=self.base + start).reshape(e['shape'])
        if e['dtype'] == 'BF16':
            import torch  # widening through torch's bfloat16 is about 4x faster than numpy shifts here
            return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16).float().numpy()
        if e['dtype'] in ('F16', 'F64'):
            return a.astype(np.float32)
        return a


class Folder:
    """A Hugging Face folder: config.json and model.safetensors or the shards of its index."""

    def __init__(self, path):
        self.path = path
        with open(os.path.join(path, 'config.json')) as f:
            self.config = json.load(f)
        index = os.path.join(path, 'model.safetensors.index.json')
        if os.path.exists(index):
            with open(index) as f:
                shards = sorted(set(json.load(f)['weight_map'].values()))
        else:
            shards = ['model.safetensors']
        self.where = {}
        self.order = []
        for s in shards:
            sf = SafeFile(os.path.join(path, s))
            for name in sf.entries:
                self.where[name] = sf
                self.order.append(name)

    def entry(self, name):
        return self.where[name].entries[name]

    def read(self, name):
        return self.where[name].read(name)

    def file_bytes(self):
        return sum(os.path.getsize(sf.path) for sf in {id(v): v for v in self.where.values()}.values())


def write_safetensors(path, tensors):
    """tensors: name -> numpy array (float32 or int32)."""
    header = {}
    offset = 0
    arrays = []
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        dtype = {np.dtype(np.float32): 'F32', np.dtype(np.int32): 'I32'}[a.dtype]
        header[name] = {'dtype': dtype, 'shape': list(a.shape), 'data_offsets': [offset, offset + a.nbytes]}
        offset += a.nbytes
        arrays.append(a)
    raw = json.dumps(header).encode()
    raw += b' ' * ((8 - (8 + len(raw)) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(raw)))
        f.write(raw)
        for a in arrays:
            f.write(a.tobytes())


def measure(fn, budget_s=1.5, min_samples=3, max_samples=15, min_sample_s=0.05, slow_s=2.0):
    """As bench/lib/adaptive.ts: warm-up, then samples (each repeating fn to at least min_sample_s) until
    min_samples and the budget are spent; an operation slower than slow_s is timed once after its warm-up."""
    t = time.perf_counter()
    first = fn()
    warm = time.perf_counter() - t
    if warm >= slow_s:
        t = time.perf_counter()
        fn()
        samples, iters = [time.perf_counter() - t], 1
    else:
        iters = max(1, int(np.ceil(min_sample_s / max(warm, 1e-6))))
        samples = []
        start = time.perf_counter()
        while len(samples) < min_samples or (len(samples) < max_samples and time.perf_counter() - start < budget_s):
            t = time.perf_counter()
            for _ in range(iters):
                fn()
            samples.append((time.perf_counter() - t) / iters)
    return {'medianMs': float(np.median(samples)) * 1e3, 'samplesMs': [s * 1e3 for s in samples],
            'itersPerSample': iters, 'warmupMs': warm * 1e3}, first


def emit(result):
    result['peakRssMb'] = peak_rss_mb()
    sys.stdout.write(json.dumps(result) + '\n')
    sys.stdout.flush()
