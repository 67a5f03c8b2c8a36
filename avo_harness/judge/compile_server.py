"""The trusted compile path: each kernel compiled once for every candidate, safely.

Compiling is the largest phase of an evaluation on a GPU, and a mutation shares most of
its kernels with its parent; yet a Triton cache that a candidate's process wrote cannot
be shared, since it may hold any binary under any name. Here the candidate's process
(``compile_client``) only sends the IR of a kernel's first stage; a compile job that runs
no candidate code (``compile_job``: sandboxed, a new process for each compile) compiles
it, and the server keeps the answer under the sha256 of all that decides it: the IR, the
target, the options, Triton's version and the jobs' environment. An entry is what Triton
makes of that IR whoever sent it, so every candidate of every run may read it: a hostile
candidate can only add compiles of IR it sent, which only the very same IR finds.

The server runs in the parent, one thread per child (``serve``), at most ``jobs`` compile
jobs at once over all of them; identical requests in flight wait for one job.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import Future
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple

from . import bytecode, confine

#: The cache's folder in a store (``--avo-store``): every evaluation's and the workbench's.
FOLDER = "compile-cache"
#: Bumped when what an entry holds changes: older entries are then never read.
SCHEMA = 1
#: Stages an IR may be sent from: Triton's first (after its passes), Gluon's first.
STAGES = ("ttir", "ttgir")
MAX_IR_BYTES = 16 << 20
#: What one compile may answer (a cubin, its PTX and LLVM IR).
MAX_ANSWER_BYTES = 128 << 20
#: Requests one child may make; then the server hangs up and the child compiles itself.
MAX_REQUESTS = 4096
#: Entries kept; the least recently written go first.
MAX_ENTRIES = 50_000
#: The compile options a request may set. Left out: those that name files or command lines
#: (``extern_libs``, ``ir_override``, ``ptx_options``, ``instrumentation_mode``), which a
#: compile of someone's IR must not take from them; a kernel that sets one compiles itself.
FORWARDED = ("num_warps", "num_ctas", "num_stages", "warp_size", "maxnreg", "ptx_version",
             "enable_fp_fusion", "enable_reflect_ftz", "launch_cooperative_grid",
             "launch_pdl", "supported_fp8_dtypes", "deprecated_fp8_dot_operand_dtypes",
             "default_dot_input_precision", "allowed_dot_input_precisions",
             "max_num_imprecise_acc_default", "debug", "sanitize_overflow", "arch",
             "backend_name")


#: A file in a source location of MLIR's text: ``loc("PATH":line:col)``.
_FILE_LOC = re.compile(r'loc\("([^"\\]*)":')
#: The name every candidate's own module goes by in the IR a server compiles.
MODULE_NAME = "candidate.py"


class Job(NamedTuple):
    """One compile the server ran: the kernel (its name, warps and stages) and its seconds
    (a sandboxed process's start included), to find which kernels bound a compile phase."""
    kernel: str
    seconds: float


#: A kernel's name in the IR of either stage: ``tt.func public @name(``.
_FUNC = re.compile(r"tt\.func (?:public )?@([\w$.]+)")


def kernel_name(request: Mapping[str, Any]) -> str:
    """``name wW sS`` for a validated request (``?`` where its IR names no function; a name
    the candidate chose, so at most 80 characters of it)."""
    found = _FUNC.search(request["ir"])
    options = request["options"]
    return (f"{found.group(1)[:80] if found else '?'} w{options.get('num_warps', '?')} "
            f"s{options.get('num_stages', '?')}")


class Refused(ValueError):
    """A request that is not one the client sends."""


def validated(request: Any) -> dict[str, Any]:
    """``request`` if it is a well-formed compile request (else ``Refused``, saying why)."""
    if not isinstance(request, dict) or set(request) != {"ext", "ir", "target", "options"}:
        raise Refused("not a compile request")
    ext, ir, target, options = (request[k] for k in ("ext", "ir", "target", "options"))
    if ext not in STAGES:
        raise Refused(f"an IR of stage {str(ext)[:20]!r}")
    if not isinstance(ir, str) or len(ir) > MAX_IR_BYTES:
        raise Refused("an IR that is not text of at most 16 MiB")
    if not (isinstance(target, list) and len(target) == 3 and target[0] == "cuda"
            and _integer(target[1]) and 50 <= target[1] < 1000 and target[2] == 32):
        raise Refused(f"the target {str(target)[:60]}")
    if not isinstance(options, dict) or not set(options) <= set(FORWARDED):
        raise Refused("options beyond those forwarded")
    for name, value in options.items():
        if not _plain(value):
            raise Refused(f"the option {name} = {str(value)[:40]}")
    return {"ext": ext, "ir": ir, "target": target, "options": options}


def portable(ir: str, module: str | None) -> str:
    """``ir`` with its source locations the same wherever the candidate lies: a file of the
    candidate's folder by its name alone, the candidate's module as ``MODULE_NAME``.

    Locations only say which line an instruction came from (for debuggers and profilers);
    the code is the same without them. But they hold absolute paths, which differ for every
    candidate of a search (and every folder the loop stages one in), and would give each
    candidate entries of its own: a mutation would find none of its parent's kernels."""
    if not module:
        return ir
    folder, _, name = module.rpartition("/")

    def local(match: re.Match[str]) -> str:
        head, _, tail = match.group(1).rpartition("/")
        if head != folder:
            return match.group(0)
        return f'loc("{MODULE_NAME if tail == name else tail}":'

    return _FILE_LOC.sub(local, ir)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**31


def _plain(value: Any) -> bool:
    """A value an option of Triton's takes: a flag, a number, a short name or a few names."""
    if value is None or isinstance(value, bool) or _integer(value):
        return True
    if isinstance(value, str):
        return len(value) <= 64
    return isinstance(value, list) and len(value) <= 16 and all(
        isinstance(v, str) and len(v) <= 64 for v in value)


class CompileServer:
    """Compiles the IR that candidates' processes send, into ``cache`` (shared by all)."""

    def __init__(self, cache: Path, *, jobs: int | None = None, timeout_s: float = 600.0,
                 confinement: confine.Confinement | None = None) -> None:
        self.cache = cache
        self.timeout_s = timeout_s
        self.confinement = confinement or confine.detect()
        self._slots = threading.BoundedSemaphore(jobs or os.cpu_count() or 1)
        self._lock = threading.Lock()
        self._inflight: dict[str, Future[dict[str, Any]]] = {}
        self._writes = 0
        #: Requests answered from the cache (``hits``), compiled (``compiles``), failed to
        #: compile (``failures``), answered by another's compile in flight (``waited``),
        #: not compile requests (``refused``).
        self.counts: Counter[str] = Counter()

    def serve(self, conn: Connection, counts: Counter[str] | None = None,
              module: str | None = None, jobs: list[Job] | None = None) -> None:
        """Answer one child's requests until it hangs up (run on a thread of its own),
        tallying what it did for them in ``counts`` and the jobs it ran in ``jobs`` too;
        ``module``: the path of the candidate it runs (its IR's locations name it, see
        ``portable``)."""
        counts = Counter() if counts is None else counts
        with conn:
            for _ in range(MAX_REQUESTS):
                try:
                    message = conn.recv_bytes(MAX_IR_BYTES + (1 << 16))
                except (EOFError, OSError):  # gone, or a message over the limit
                    return
                try:
                    answer = self.compile(json.loads(message), counts, module, jobs)
                except (Refused, ValueError) as exc:
                    self._count("refused", counts)
                    answer = {"error": f"refused: {exc}"[:300]}
                try:
                    conn.send_bytes(json.dumps(answer).encode())
                except OSError:
                    return

    def compile(self, request: Any, counts: Counter[str] | None = None,
                module: str | None = None, jobs: list[Job] | None = None) -> dict[str, Any]:
        """The answer to one request: ``{"asm": {stage: text}, "metadata": {...}}`` (a
        binary stage in base64), or ``{"error": why}`` if it does not compile. What is
        compiled and kept is the request's IR made ``portable`` for ``module``; a compile
        it ran is appended to ``jobs``."""
        request = validated(request)
        request["ir"] = portable(request["ir"], module)
        key = self.key(request)
        kept = self._read(key)
        if kept is not None:
            self._count("hits", counts)
            return kept
        with self._lock:
            future = self._inflight.get(key)
            owner = future is None
            if future is None:
                future = self._inflight[key] = Future()
        if not owner:
            self._count("waited", counts)
            return future.result()
        answer = {"error": "the compile server failed"}
        try:
            began = time.monotonic()
            answer = self._run(request)
            if jobs is not None:
                jobs.append(Job(kernel_name(request), round(time.monotonic() - began, 3)))
            self._count("failures" if "error" in answer else "compiles", counts)
            if "error" not in answer:
                self._write(key, answer)
        except OSError as exc:
            answer = {"error": f"the compile job could not run: {exc}"[:300]}
        finally:
            with self._lock:
                del self._inflight[key]
            future.set_result(answer)  # whatever happened: those waiting go on
        return answer

    def key(self, request: Mapping[str, Any]) -> str:
        env = {k: v for k, v in _job_environment("").items() if k not in ("HOME", "TMPDIR")}
        return hashlib.sha256(json.dumps([SCHEMA, _triton_version(), env, request],
                                         sort_keys=True).encode()).hexdigest()

    def _count(self, what: str, counts: Counter[str] | None) -> None:
        with self._lock:
            self.counts[what] += 1
            if counts is not None:
                counts[what] += 1

    def _path(self, key: str) -> Path:
        return self.cache / key[:2] / f"{key}.json"

    def _read(self, key: str) -> dict[str, Any] | None:
        try:
            answer = json.loads(self._path(key).read_bytes())
        except (OSError, ValueError):
            return None
        return answer if _answer(answer) else None

    def _write(self, key: str, answer: dict[str, Any]) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fresh = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}")
            fresh.write_text(json.dumps(answer))
            os.replace(fresh, path)
        except OSError:  # a compile not kept costs time, never a verdict
            return
        with self._lock:
            self._writes += 1
            prune = self._writes % 256 == 0
        if prune:
            _prune(self.cache)

    def _run(self, request: dict[str, Any]) -> dict[str, Any]:
        """One compile job: a new sandboxed process, killed past ``timeout_s``."""
        with self._slots:
            scratch = Path(tempfile.mkdtemp(prefix="avo-compile-"))
            try:
                return self._job(request, scratch)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)

    def _job(self, request: dict[str, Any], scratch: Path) -> dict[str, Any]:
        argv = [sys.executable, "-P", "-m", "avo_harness.judge.compile_job", str(scratch),
                str(self.confinement.landlock_abi)]
        command = confine.wrap(argv, self.confinement, scratch=scratch, cuda=False)
        env = _job_environment(str(scratch))
        bytecode.for_child(env)  # not in ``_job_environment``: a key's part, it compiles nothing
        with open(scratch / "stderr", "wb") as err:
            proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=err, env=env, cwd=scratch, start_new_session=True)
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            proc.kill()

        timer = threading.Timer(self.timeout_s, expire)
        timer.start()
        try:
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps(request).encode())
                proc.stdin.close()
            except BrokenPipeError:
                pass
            out = proc.stdout.read(MAX_ANSWER_BYTES + 1)
            if len(out) > MAX_ANSWER_BYTES:
                proc.kill()
                return {"error": "the compile answered more than 128 MiB"}
            code = proc.wait()
        finally:
            timer.cancel()
            proc.kill()  # a job that closed its output and went on
            proc.wait()
            proc.stdout.close()
        if expired.is_set():
            return {"error": f"the compile took over {self.timeout_s:g} s"}
        try:
            answer = json.loads(out)
        except ValueError:
            tail = (scratch / "stderr").read_bytes()[-300:].decode(errors="replace").strip()
            return {"error": f"the compile job failed (exit {code}): "
                    f"{tail.splitlines()[-1] if tail else 'no answer'}"[:300]}
        return answer if _answer(answer) or _error(answer) else {
            "error": "the compile job answered something else"}


def _answer(answer: Any) -> bool:
    """A compile's answer: every later stage's text, the binary among them, the metadata."""
    return isinstance(answer, dict) and set(answer) == {"asm", "metadata"} and isinstance(
        answer["metadata"], dict) and isinstance(answer["asm"], dict) and "cubin" in \
        answer["asm"] and all(isinstance(k, str) and isinstance(v, str)
                              for k, v in answer["asm"].items())


def _error(answer: Any) -> bool:
    return isinstance(answer, dict) and set(answer) == {"error"} and isinstance(
        answer["error"], str)


def binary(answer: Mapping[str, Any], stage: str) -> str | bytes:
    """A stage of an answer as Triton holds it: a binary one as bytes."""
    text = answer["asm"][stage]
    return base64.b64decode(text) if stage == "cubin" else text


def _triton_version() -> str:
    import triton

    return str(triton.__version__)


def _job_environment(scratch: str) -> dict[str, str]:
    """The candidate's child's environment as far as Triton's compiler reads it (so that a
    job compiles what the child would have), with the job's own scratch folder."""
    from .sandbox import ENV_KEPT

    env = {k: os.environ[k] for k in ENV_KEPT if k in os.environ and k not in _NOT_FOR_JOBS}
    package_root = str(Path(__file__).resolve().parents[2])
    env.update(PYTHONPATH=package_root, HOME=scratch, TMPDIR=scratch,
               PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1")
    return env


#: Kept for a candidate's child, not for a compile: the jobs open no device, and the key of
#: a compile must not depend on the GPU a slot times on.
_NOT_FOR_JOBS = ("TRITON_INTERPRET", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")


def _prune(cache: Path) -> None:
    entries = sorted(cache.glob("*/*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[MAX_ENTRIES:]:
        old.unlink(missing_ok=True)
