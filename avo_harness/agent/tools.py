"""The agent's tools: what the model sees (name, description, input schema) and what runs.

Reading: the lineage, any candidate's files (its module and the helper modules, ``_*.py``,
beside it), diff or stored report, and the knowledge base. Working: drafts ("attempts": a
module and its helpers) kept in the step, evaluated by the very evaluation the loop runs
(``evolve.evaluate``); the workbench (``bench``): one case, chosen configurations next to
the best committed candidate, compile facts and a profile, each by the judge's own code in
its sandbox; entries for the run's notebook; and one submission, refused unless that exact
attempt passed an evaluation in this step. A wrong input from the model is answered with an
error result that says what was wrong, so the model can correct itself; it never ends the
step. A tool that runs something is bounded by the time the step has left, and its answer
says what it took.
"""
from __future__ import annotations

import ast
import difflib
import json
import random
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..evolve.evaluate import EvalSettings, Evaluation, Placement, evaluate
from ..evolve.lineage import Record, best_committed, source_hash
from ..judge.scan import scan_source
from ..tasks import Case, Task
from .bench import (ASM_CHARS, MAX_ASM_CHARS, MAX_CASE_BYTES, Bench, BenchError, case_text,
                    compile_text, profile_text, profile_unavailable, time_text)
from .knowledge import Knowledge
from .views import candidate_text, lineage_text, report_text

#: A helper module's file name: beside the candidate, never collected as one.
HELPER = re.compile(r"_[a-z][a-z0-9_]{0,40}\.py")
#: Notebook entries one step may write, and the length of each.
NOTES_PER_STEP, NOTE_CHARS = 8, 3_000
_IR_KINDS = ["ttir", "ttgir", "llir", "ptx", "sass"]


class ToolError(Exception):
    """The model's call was wrong; the message goes back to it as an error result."""


@dataclass(frozen=True)
class Attempt:
    """A draft: the candidate module and the helper modules beside it, by file name."""

    source: str
    helpers: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """Its identity; without helpers the source's hash, as the lineage hashes a source."""
        if not self.helpers:
            return source_hash(self.source)
        return source_hash(json.dumps([self.source, sorted(self.helpers.items())]))

    def files(self, stem: str) -> dict[str, str]:
        """File name to text, the module first."""
        return {f"{stem}.py": self.source, **self.helpers}


@dataclass(frozen=True)
class Submission:
    source: str
    parents: list[int]
    rationale: str
    attempt: int
    helpers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    properties: dict[str, dict[str, Any]]
    required: tuple[str, ...]
    run: Callable[[Workspace, dict[str, Any]], str]
    #: It runs something: bounded by the step's time, and its answer says what it took.
    costly: bool = False

    def spec(self) -> dict[str, Any]:
        """As the Messages API takes it."""
        return {"name": self.name, "description": self.description,
                "input_schema": {"type": "object", "properties": self.properties,
                                 "required": list(self.required),
                                 "additionalProperties": False}}

    def check(self, args: Any) -> dict[str, Any]:
        """The input, validated against the schema (the model may send anything)."""
        if not isinstance(args, dict):
            raise ToolError(f"{self.name} takes a JSON object, got {type(args).__name__}")
        unknown = sorted(set(args) - set(self.properties))
        if unknown:
            raise ToolError(f"{self.name}: unknown argument(s) {', '.join(unknown)}; it takes "
                            f"{', '.join(self.properties)}")
        missing = [name for name in self.required if name not in args]
        if missing:
            raise ToolError(f"{self.name}: missing required argument(s) {', '.join(missing)}")
        for name, value in args.items():
            schema = self.properties[name]
            if not _conforms(value, schema):
                raise ToolError(f"{self.name}: {name} must be {_describe(schema)}, got "
                                f"{json_type(value)}")
        return args


def json_type(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "an object", type(None): "null"}.get(type(value),
                                                                          type(value).__name__)


def _conforms(value: Any, schema: dict[str, Any]) -> bool:
    kind = schema["type"]
    if kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "string":
        ok = isinstance(value, str)
    elif kind == "object":
        ok = isinstance(value, dict)
    else:  # an array of one of the kinds above
        ok = isinstance(value, list) and all(_conforms(v, schema["items"]) for v in value)
    return ok and ("enum" not in schema or value in schema["enum"])


def _describe(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(map(repr, schema["enum"]))
    if schema["type"] == "array":
        items = schema["items"]
        among = f" among {', '.join(map(repr, items['enum']))}" if "enum" in items else ""
        return f"an array of {items['type']}s{among}"
    return {"integer": "an integer", "string": "a string", "object": "an object"}[schema["type"]]


@dataclass
class Workspace:
    """One step's drafts, their evaluations, its notes, and its submission."""

    task: Task
    records: list[Record]
    eval_settings: EvalSettings
    scratch: Path
    knowledge: Knowledge
    label: str
    log: Callable[[str], None]
    #: The helper modules of lineage candidates, by id (those without any are absent).
    helpers: dict[int, dict[str, str]] = field(default_factory=dict)
    #: When the step ends (``time.monotonic()``); None: no limit.
    deadline: float | None = None
    #: Where the step's tools run and time (a slot's GPU and its lock, ``judge/gpu_lock.py``):
    #: the workbench and evaluate_candidate hold that GPU's lock while they time, as the
    #: search's evaluations on it do.
    placement: Placement = Placement()
    attempts: list[Attempt] = field(default_factory=list)
    evaluations: dict[str, Evaluation] = field(default_factory=dict)  # by attempt digest
    notes: list[str] = field(default_factory=list)
    submission: Submission | None = None

    def call(self, name: str, args: Any) -> tuple[str, bool]:
        """Run a tool; returns its text and whether it is an error."""
        tool = TOOLS.get(name)
        started = time.monotonic()
        try:
            if tool is None:
                raise ToolError(f"no tool {name!r}; the tools are {', '.join(TOOLS)}")
            text, error = tool.run(self, tool.check(args)), False
        except (ToolError, BenchError) as exc:
            text, error = str(exc), True
        if tool is not None and tool.costly:
            left = f"; {self.time_left():,.0f} s left" if self.deadline is not None else ""
            text += f"\n[{time.monotonic() - started:.1f} s of this step's time{left}]"
        return text, error

    @property
    def bench(self) -> Bench:
        return Bench(self.task, self.eval_settings, self.scratch, self.placement)

    def time_left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def limit(self) -> float:
        """How long a tool may run: the evaluation timeout, within what the step has left."""
        return min(self.eval_settings.eval_timeout_s, self.time_left())

    def record(self, id: int) -> Record:
        for record in self.records:
            if record.id == id:
                return record
        raise ToolError(f"no candidate #{id} in the lineage (ids run from "
                        f"{self.records[0].id} to {self.records[-1].id})" if self.records
                        else "the lineage is empty")

    def of_record(self, record: Record) -> Attempt:
        """A lineage candidate as an attempt: its source and its helpers."""
        return Attempt(record.source, dict(self.helpers.get(record.id, {})))

    def attempt(self, number: int | None) -> tuple[int, Attempt]:
        if not self.attempts:
            raise ToolError("no attempt yet: write one with write_candidate or edit_candidate")
        number = len(self.attempts) if number is None else number
        if not 1 <= number <= len(self.attempts):
            raise ToolError(f"no attempt {number}; there are {len(self.attempts)}")
        return number, self.attempts[number - 1]

    def base(self, args: dict[str, Any]) -> tuple[str, Attempt | None]:
        """What a write or an edit starts from: ``candidate_id``, ``attempt``, else the latest
        attempt (None before the first)."""
        if "candidate_id" in args and "attempt" in args:
            raise ToolError("give attempt or candidate_id, not both")
        if "candidate_id" in args:
            record = self.record(args["candidate_id"])
            return f"#{record.id}", self.of_record(record)
        if "attempt" in args or self.attempts:
            number, attempt = self.attempt(args.get("attempt"))
            return f"attempt {number}", attempt
        return "nothing", None

    def stem(self, number: int) -> str:
        return f"{self.label}_a{number}"

    def add_attempt(self, attempt: Attempt, how: str) -> str:
        _check_module(attempt.source, "the module", self.task)
        for name, text in attempt.helpers.items():
            _check_module(text, name, self.task, entry=False)
            for record in self.records:
                theirs = self.helpers.get(record.id, {}).get(name)
                if theirs is not None and theirs != text:
                    raise ToolError(f"not saved: a helper {name} is in the lineage already, with "
                                    f"other contents (#{record.id} {record.name}): a helper's "
                                    "name is its identity there; give yours a new name")
        self.attempts.append(attempt)
        files = f" with {', '.join(attempt.helpers)}" if attempt.helpers else ""
        return (f"attempt {len(self.attempts)} saved ({how}; {len(attempt.source.splitlines())} "
                f"lines{files}); evaluate it with evaluate_candidate")

    def twin(self, attempt: Attempt) -> Record | None:
        """The lineage candidate with exactly this source and these helpers."""
        digest = source_hash(attempt.source)
        return next((r for r in self.records if r.source_hash == digest
                     and self.helpers.get(r.id, {}) == attempt.helpers), None)

    def refuse_twin(self, number: int, attempt: Attempt) -> None:
        """An attempt identical to a lineage candidate is neither evaluated nor submitted:
        its evaluation is in the lineage already."""
        twin = self.twin(attempt)
        if twin is not None:
            raise ToolError(f"attempt {number} is exactly #{twin.id} {twin.name}, already in "
                            "the lineage (read_candidate view=report shows its evaluation); "
                            "change something")

    def passing(self) -> list[tuple[int, Evaluation]]:
        """Attempts new to the lineage that passed, fastest first."""
        found = [(n, self.evaluations.get(a.digest)) for n, a in
                 enumerate(self.attempts, 1) if self.twin(a) is None]
        passed = [(n, e) for n, e in found if e is not None and e.fitness.passed]
        return sorted(passed, key=lambda pair: -pair[1].fitness.geomean)

    def case(self, args: dict[str, Any]) -> tuple[str, Case]:
        """The input a workbench tool runs: a benchmark configuration by name, a replay, or a
        described case (the keys it leaves out are the first configuration's); the seed, when
        not given, is private, as the judge's are."""
        given = [k for k in ("config", "replay", "case") if k in args]
        if len(given) > 1:
            raise ToolError(f"give one of config, replay and case, not {' and '.join(given)}")
        configs = {c.name: c.case for c in self.task.bench_configs(cuda=self.bench.cuda)}
        base = next(iter(configs.values()))
        if "config" in args:
            if args["config"] not in configs:
                raise ToolError(f"no benchmark configuration {args['config']!r}; they are "
                                f"{', '.join(configs)}")
            case = dict(configs[args["config"]])
        elif "replay" in args:
            text = args["replay"]
            try:
                case = json.loads(text[text.index("{"):text.rindex("}") + 1])
            except ValueError:
                raise ToolError("replay: no JSON case in it (give the replay command of a "
                                "failure, or the case as JSON)") from None
        else:
            case = {**base, **args.get("case", {})}
        unknown = sorted(set(case) - set(base) - {"seed"})
        if unknown:
            raise ToolError(f"unknown case key(s) {', '.join(unknown)}; a case has "
                            f"{', '.join([*base, 'seed'])}")
        case.setdefault("seed", random.SystemRandom().randrange(2**31))
        try:
            size = self.task.bytes_moved(case)
        except Exception as exc:  # whatever the model wrote: its values are checked here
            raise ToolError(f"not a valid case ({type(exc).__name__}: {exc})") from None
        cap = MAX_CASE_BYTES[self.eval_settings.device]
        if size > cap:
            raise ToolError(f"this case moves {size / 2**20:,.0f} MiB; at most "
                            f"{cap / 2**20:,.0f} MiB here")
        shown = (f"{args['config']} (seed={case['seed']})" if "config" in args
                 else " ".join(f"{k}={v}" for k, v in case.items()))
        return shown, case

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


def _check_module(source: str, name: str, task: Task, entry: bool = True) -> None:
    """What the harness would refuse before running a file, refused before saving it."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ToolError(f"not saved: syntax error in {name} at line {exc.lineno}: "
                        f"{exc.msg}") from None
    if entry and not any(isinstance(node, ast.FunctionDef) and node.name == task.entry
                         for node in tree.body):
        raise ToolError(f"not saved: the module must define {task.entry}() at top level")
    findings = scan_source(source, task.forbidden)
    if findings:
        raise ToolError(f"not saved: the harness refuses {name}: " + "; ".join(
            f"{f.rule} {f}" for f in findings[:5]))


def _files_text(files: dict[str, str]) -> str:
    return "\n".join(f"=== {name} ===\n{text}" for name, text in files.items())


def _files_diff(old: dict[str, str], new: dict[str, str], old_label: str,
                new_label: str) -> str:
    """A unified diff per file (the module first), of the files either side has."""
    parts = []
    for old_name, new_name in [(next(iter(old)), next(iter(new)))] + [
            (n, n) for n in dict.fromkeys([*old, *new]) if n.startswith("_")]:
        parts += difflib.unified_diff(
            old.get(old_name, "").splitlines(), new.get(new_name, "").splitlines(),
            f"{old_label} {old_name}", f"{new_label} {new_name}", lineterm="")
    return "\n".join(parts) or "(identical files)"


def _read_lineage(ws: Workspace, args: dict[str, Any]) -> str:
    return lineage_text(ws.records, args.get("last", 40))


def _read_candidate(ws: Workspace, args: dict[str, Any]) -> str:
    view = args.get("view", "source")
    against = ws.record(args["against"]) if "against" in args else None
    if ("id" in args) == ("attempt" in args):
        raise ToolError("read_candidate: give id (a lineage candidate) or attempt, one of them")
    if "attempt" in args:
        number, attempt = ws.attempt(args["attempt"])
        files = attempt.files(ws.stem(number))
        if view == "source":
            return _files_text(files)
        if view == "report":
            evaluation = ws.evaluations.get(attempt.digest)
            if evaluation is None:
                raise ToolError(f"attempt {number} has not been evaluated")
            return report_text(f"attempt {number}", evaluation.report, evaluation.fitness.reason,
                               best_committed(ws.records))
        base = against or best_committed(ws.records)
        if base is None:
            raise ToolError("nothing is committed to compare with; name a candidate in against")
        return _files_diff(ws.of_record(base).files(base.name), files,
                           f"#{base.id}", f"attempt {number}")
    record = ws.record(args["id"])
    text = candidate_text(record, ws.records, view, against)
    helpers = ws.helpers.get(record.id)
    return text + ("\n" + _files_text(helpers) if helpers and view == "source" else "")


def _search_knowledge(ws: Workspace, args: dict[str, Any]) -> str:
    found = ws.knowledge.search(args["query"])
    if not found:
        return "nothing matches; the contents are in the system prompt"
    return "\n\n".join(f"[{s.id}]\n{s.text}" for s in found)


def _read_knowledge(ws: Workspace, args: dict[str, Any]) -> str:
    try:
        return ws.knowledge.read(args["section"])
    except KeyError as exc:
        raise ToolError(str(exc.args[0])) from None


def _file(args: dict[str, Any]) -> str | None:
    """The helper a write or an edit is about; None for the module."""
    name = args.get("file")
    if name is not None and not HELPER.fullmatch(name):
        raise ToolError(f"file {name!r} is not a helper's name: _name.py in lower case (the "
                        "module itself: leave file out)")
    return name


def _write_candidate(ws: Workspace, args: dict[str, Any]) -> str:
    name = _file(args)
    origin, base = ws.base(args)
    if name is None:
        attempt = Attempt(args["source"], dict(base.helpers) if base else {})
        how = "written whole" + (f", helpers of {origin}" if base and base.helpers else "")
    elif base is None:
        raise ToolError("write the module first (or start from a lineage candidate with "
                        "candidate_id); a helper is saved beside an attempt's module")
    else:
        helpers = {**base.helpers, name: args["source"]}
        if not args["source"].strip():
            helpers.pop(name)
        attempt = Attempt(base.source, helpers)
        how = f"{name} {'removed from' if name not in helpers else 'written into'} {origin}"
    return ws.add_attempt(attempt, how)


def _edit_candidate(ws: Workspace, args: dict[str, Any]) -> str:
    name = _file(args)
    origin, base = ws.base(args)
    if base is None:
        raise ToolError("no attempt yet: write one, or edit a lineage candidate (candidate_id)")
    text = base.source if name is None else base.helpers.get(name)
    if text is None:
        raise ToolError(f"{origin} has no helper {name}; its helpers: "
                        f"{', '.join(base.helpers) or 'none'}")
    count = text.count(args["old_text"]) if args["old_text"] else 0
    where = origin if name is None else f"{name} of {origin}"
    if count != 1:
        raise ToolError(f"old_text occurs {count} times in {where}; it must occur exactly once "
                        "(copy it exactly, with enough context to be unique)")
    line = text[:text.index(args["old_text"])].count("\n") + 1
    edited = text.replace(args["old_text"], args["new_text"])
    attempt = Attempt(edited, dict(base.helpers)) if name is None else \
        Attempt(base.source, {**base.helpers, name: edited})
    return ws.add_attempt(attempt, f"{where} edited at line {line}")


def _evaluate_candidate(ws: Workspace, args: dict[str, Any]) -> str:
    number, attempt = ws.attempt(args.get("attempt"))
    ws.refuse_twin(number, attempt)
    label = f"attempt {number}"
    if attempt.digest in ws.evaluations:
        evaluation = ws.evaluations[attempt.digest]
        label += " (same files as evaluated before)"
    else:
        # A folder of its own: helpers of different attempts may share a name.
        folder = ws.scratch / f"a{number}" / "candidates" / ws.task.name
        folder.mkdir(parents=True, exist_ok=True)
        files = attempt.files(ws.stem(number))
        for name, text in files.items():
            (folder / name).write_text(text)
        ws.log(f"  evaluating attempt {number} ...")
        left = ws.time_left()
        evaluation = evaluate(folder / next(iter(files)), ws.eval_settings,
                              time_left_s=left if left < float("inf") else None,
                              placement=ws.placement)
        shutil.rmtree(folder.parent.parent, ignore_errors=True)
        ws.evaluations[attempt.digest] = evaluation
    fitness = evaluation.fitness
    ws.log(f"  attempt {number}: " + (f"passed, geomean {fitness.geomean:.4g}" if fitness.passed
                                      else f"failed ({fitness.reason})"))
    return report_text(label, evaluation.report, fitness.reason, best_committed(ws.records))


def _on_case(ws: Workspace, args: dict[str, Any], tool: str
             ) -> tuple[str, dict[str, str], Case]:
    """What a workbench tool on one input runs: its label (the attempt and the input),
    the attempt's files, and the case (``Workspace.case``); logged."""
    number, attempt = ws.attempt(args.get("attempt"))
    shown, case = ws.case(args)
    ws.log(f"  {tool}: attempt {number} on {shown}")
    return f"attempt {number} on {shown}", attempt.files(ws.stem(number)), case


def _run_case(ws: Workspace, args: dict[str, Any]) -> str:
    label, files, case = _on_case(ws, args, "run_case")
    return case_text(label, ws.bench.case(files, case, ws.limit()))


def _time_config(ws: Workspace, args: dict[str, Any]) -> str:
    number, attempt = ws.attempt(args.get("attempt"))
    configs = {c.name: c.case for c in ws.task.bench_configs(cuda=ws.bench.cuda)}
    unknown = [name for name in args["configs"] if name not in configs]
    if unknown or not args["configs"]:
        raise ToolError(f"configs must name benchmark configurations: {', '.join(configs)}")
    best = best_committed(ws.records)
    if best is None:
        raise ToolError("nothing is committed yet to time against (evaluate_candidate times "
                        "an attempt on every configuration)")
    ws.log(f"  time_config: attempt {number} and #{best.id} on {', '.join(args['configs'])}")
    answer = ws.bench.time(attempt.files(ws.stem(number)), ws.of_record(best).files(best.name),
                           [{"name": n, "case": configs[n]} for n in args["configs"]],
                           ws.limit())
    return time_text(f"attempt {number}", answer, f"#{best.id} {best.name}")


def _compile_info(ws: Workspace, args: dict[str, Any]) -> str:
    if not ws.bench.cuda:
        return ("compile_info: no compiled kernel here: on a CPU the kernels run in Triton's "
                "interpreter, which compiles nothing (no registers, spills, shared memory, "
                "IR or SASS to read); compile_info answers on a GPU")
    chars = args.get("chars", ASM_CHARS)
    if not 0 < chars <= MAX_ASM_CHARS:
        raise ToolError(f"chars must be 1 to {MAX_ASM_CHARS:,}")
    label, files, case = _on_case(ws, args, "compile_info")
    return compile_text(label, ws.bench.compile(files, case, args.get("asm", []), chars,
                                                ws.limit()))


def _profile(ws: Workspace, args: dict[str, Any]) -> str:
    unavailable = profile_unavailable(ws.bench.cuda)
    if unavailable is not None:
        return unavailable
    label, files, case = _on_case(ws, args, "profile")
    rows, waited_s = ws.bench.profile(files, case, ws.limit())
    return profile_text(label, rows, waited_s)


def _write_notes(ws: Workspace, args: dict[str, Any]) -> str:
    text = args["text"].strip()
    if not text:
        raise ToolError("the note is empty")
    if len(ws.notes) >= NOTES_PER_STEP:
        raise ToolError(f"this step has written its {NOTES_PER_STEP} notes; fold what is left "
                        "into the submission's rationale")
    ws.notes.append(text[:NOTE_CHARS])
    cut = f" (cut to {NOTE_CHARS:,} characters)" if len(text) > NOTE_CHARS else ""
    return (f"noted{cut}: entry {len(ws.notes)} of this step in the run's notebook, which every "
            "later step of this run reads in its first message")


def _submit_candidate(ws: Workspace, args: dict[str, Any]) -> str:
    number, attempt = ws.attempt(args["attempt"])
    evaluation = ws.evaluations.get(attempt.digest)
    if evaluation is None:
        raise ToolError(f"attempt {number} has not been evaluated; evaluate_candidate first "
                        "(only a version that passed its evaluation can be submitted)")
    if not evaluation.fitness.passed:
        raise ToolError(f"attempt {number} failed its evaluation ({evaluation.fitness.reason}); "
                        "only a version that passed can be submitted")
    ws.refuse_twin(number, attempt)
    rationale = " ".join(args["rationale"].split())
    if not rationale:
        raise ToolError("the rationale is empty: say what changed, why, and what you measured")
    best = best_committed(ws.records)
    parents = args.get("parents", [best.id] if best is not None else [])
    for parent in parents:
        ws.record(parent)
    ws.submission = Submission(attempt.source, list(parents), rationale, number,
                               dict(attempt.helpers))
    return (f"attempt {number} submitted (geomean here {evaluation.fitness.geomean:.4g}); the "
            "loop evaluates it again and commits it if it is at least as fast as the best")


_ATTEMPT = {"type": "integer", "description": "attempt number (default: the latest)"}
_FILE = {"type": "string", "description": "a helper module beside the candidate, _name.py "
         "(default: the candidate module itself)"}
_WHERE = {
    "config": {"type": "string", "description": "a benchmark configuration by name (default: "
               "the first)"},
    "case": {"type": "object", "description": "an input as the task's case keys (listed in "
             "the system prompt); keys left out are those of the first configuration"},
    "replay": {"type": "string", "description": "a failure's replay command (or its case as "
               "JSON): that very input, seed included"},
}
TOOLS: dict[str, Tool] = {tool.name: tool for tool in (
    Tool("read_lineage",
         "Every candidate evaluated so far for this task, over all runs: id, name, operator, "
         "status, geomean TFLOP/s and ratio to the best committed, size of its change against "
         "its parent, rationale and failure reason; then the TFLOP/s per benchmark "
         "configuration of those that passed.",
         {"last": {"type": "integer", "description": "show only the latest N (default 40)"}},
         (), _read_lineage),
    Tool("read_candidate",
         "One lineage candidate (id) or attempt: its files (the module and its helper "
         "modules), its unified diff against its parent (an attempt: against the best "
         "committed, or 'against'), or the compact report of its evaluation.",
         {"id": {"type": "integer", "description": "a lineage candidate's id (#id)"},
          "attempt": {"type": "integer", "description": "an attempt of this step instead"},
          "view": {"type": "string", "enum": ["source", "diff", "report"],
                   "description": "what to show (default: source)"},
          "against": {"type": "integer", "description": "for view=diff: compare with this id"}},
         (), _read_candidate),
    Tool("search_knowledge",
         "Search the knowledge base (this task's contract and notes first, then the Triton "
         "language of the installed version, Hopper, how the harness measures); returns the "
         "best matching sections whole.",
         {"query": {"type": "string", "description": "keywords"}}, ("query",),
         _search_knowledge),
    Tool("read_knowledge",
         "Read one knowledge-base section by its id (as listed in the contents, e.g. "
         "'triton#tensor-descriptors-tma'), or a whole file by its name (e.g. 'hopper').",
         {"section": {"type": "string", "description": "a section id or a file name"}},
         ("section",), _read_knowledge),
    Tool("write_candidate",
         "Save a new attempt: the whole text of the candidate module, or of one helper module "
         "beside it (file: _name.py; imported as `from _name import ...`; an empty source "
         "removes it). Its other files come from 'attempt' or 'candidate_id' (default: the "
         "latest attempt). Checked for syntax, the entry function and forbidden calls; not "
         "yet evaluated.",
         {"source": {"type": "string", "description": "the file's whole text"},
          "file": _FILE, "attempt": _ATTEMPT,
          "candidate_id": {"type": "integer", "description": "take the other files from this "
                           "lineage candidate"}},
         ("source",), _write_candidate),
    Tool("edit_candidate",
         "Save a new attempt made by replacing one exact, unique piece of text in a file (the "
         "module, or a helper with 'file') of an attempt (default: the latest) or of a lineage "
         "candidate (candidate_id). Cheaper than rewriting a whole file.",
         {"old_text": {"type": "string", "description": "text that occurs exactly once"},
          "new_text": {"type": "string", "description": "its replacement"},
          "file": _FILE, "attempt": _ATTEMPT,
          "candidate_id": {"type": "integer", "description": "start from this lineage id"}},
         ("old_text", "new_text"), _edit_candidate),
    Tool("evaluate_candidate",
         "Run the harness on an attempt: the same pytest evaluation the loop uses (correctness "
         "against a float64 reference with hypothesis, then timing). Returns the correctness "
         "outcome (on failure: rule, minimal failing input, error statistics, replay command), "
         "each benchmark configuration's median time and TFLOP/s against the best committed "
         "candidate, its physical floor and the share of it reached, and the geomean. Takes "
         "the longest of the tools (its time is the step's): evaluate deliberately.",
         {"attempt": _ATTEMPT}, (), _evaluate_candidate, costly=True),
    Tool("run_case",
         "Run an attempt on one input, in the judge's sandbox with the judge's checks: a "
         "benchmark configuration, a failure's replay, or an input you describe. Returns "
         "whether it is right (rule, max error against the tolerance, worst element, a map of "
         "where the error is) and, if right, that input's timed median, TFLOP/s and physical "
         "floor. Seconds, not the minutes of an evaluation.",
         {"attempt": _ATTEMPT, **_WHERE}, (), _run_case, costly=True),
    Tool("time_config",
         "Time an attempt and the best committed candidate on the benchmark configurations "
         "named, interleaved in one process by one clock (every timed output verified), with "
         "each one's physical floor and the ratio attempt / best. Checks no other input.",
         {"attempt": _ATTEMPT,
          "configs": {"type": "array", "items": {"type": "string"},
                      "description": "benchmark configuration names"}},
         ("configs",), _time_config, costly=True),
    Tool("compile_info",
         "What Triton compiled when an attempt ran one input (GPU only): for each kernel its "
         "launch setting (num_warps, num_stages, num_ctas, maxnreg), registers per thread, "
         "spills, shared memory, and on request its TTIR, TTGIR, LLVM IR, PTX or SASS (cut to "
         "'chars' characters each).",
         {"attempt": _ATTEMPT, **_WHERE,
          "asm": {"type": "array", "items": {"type": "string", "enum": _IR_KINDS},
                  "description": "texts to return (default: none)"},
          "chars": {"type": "integer", "description": f"characters of each text (default "
                    f"{ASM_CHARS:,}, at most {MAX_ASM_CHARS:,})"}},
         (), _compile_info, costly=True),
    Tool("profile",
         "Nsight Compute metrics of an attempt's kernels on one input (GPU with ncu only): "
         "duration, compute and memory throughput against peak, DRAM bandwidth, tensor-pipe "
         "activity, achieved and theoretical occupancy, registers and shared memory, and the "
         "main warp stall reasons. Slow (ncu replays each kernel).",
         {"attempt": _ATTEMPT, **_WHERE}, (), _profile, costly=True),
    Tool("write_notes",
         "Add an entry to this run's notebook: what you tried, what you learned, with the "
         "numbers. Every later step of this run reads the notebook in its first message, and "
         "the lineage keeps it. Write what a successor must know, not a diary.",
         {"text": {"type": "string", "description": "the entry"}}, ("text",), _write_notes),
    Tool("submit_candidate",
         "Submit an attempt as this step's candidate; ends the step. Refused unless that exact "
         "attempt passed evaluate_candidate in this step. The loop evaluates it again and "
         "commits it if its geomean is at least the best committed one; its helpers are kept "
         "with it in the lineage.",
         {"attempt": {"type": "integer", "description": "the attempt to submit"},
          "rationale": {"type": "string", "description": "what changed, why it should be "
                        "faster, and what the evaluation showed"},
          "parents": {"type": "array", "items": {"type": "integer"},
                      "description": "lineage ids it derives from (default: the best "
                      "committed)"}},
         ("attempt", "rationale"), _submit_candidate),
)}
