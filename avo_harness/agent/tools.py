"""The agent's tools: what the model sees (name, description, input schema) and what runs.

Reading: the lineage, any candidate's source, diff or stored report, and the knowledge base.
Working: drafts ("attempts") kept in a scratch folder, evaluated by the very evaluation the
loop runs (``evolve.evaluate``), and one submission, refused unless that exact source passed
an evaluation in this step. A wrong input from the model is answered with an error result
that says what was wrong, so the model can correct itself; it never ends the step.
"""
from __future__ import annotations

import ast
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..evolve.evaluate import EvalSettings, Evaluation, evaluate
from ..evolve.lineage import Record, source_hash
from ..judge.scan import scan_source
from ..tasks import Task
from .knowledge import Knowledge
from .views import best_committed, candidate_text, lineage_text, report_text


class ToolError(Exception):
    """The model's call was wrong; the message goes back to it as an error result."""


@dataclass(frozen=True)
class Submission:
    source: str
    parents: list[int]
    rationale: str
    attempt: int


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    properties: dict[str, dict[str, Any]]
    required: tuple[str, ...]
    run: Callable[[Workspace, dict[str, Any]], str]

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
    else:  # array of integers, the only other kind these tools take
        ok = isinstance(value, list) and all(_conforms(v, schema["items"]) for v in value)
    return ok and ("enum" not in schema or value in schema["enum"])


def _describe(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(map(repr, schema["enum"]))
    return {"integer": "an integer", "string": "a string",
            "array": "an array of integers"}[schema["type"]]


@dataclass
class Workspace:
    """One step's drafts, their evaluations, and its submission."""

    task: Task
    records: list[Record]
    eval_settings: EvalSettings
    scratch: Path
    knowledge: Knowledge
    label: str
    log: Callable[[str], None]
    attempts: list[str] = field(default_factory=list)
    evaluations: dict[str, Evaluation] = field(default_factory=dict)  # by source hash
    submission: Submission | None = None

    def call(self, name: str, args: Any) -> tuple[str, bool]:
        """Run a tool; returns its text and whether it is an error."""
        tool = TOOLS.get(name)
        try:
            if tool is None:
                raise ToolError(f"no tool {name!r}; the tools are {', '.join(TOOLS)}")
            return tool.run(self, tool.check(args)), False
        except ToolError as exc:
            return str(exc), True

    def record(self, id: int) -> Record:
        for record in self.records:
            if record.id == id:
                return record
        raise ToolError(f"no candidate #{id} in the lineage (ids run from "
                        f"{self.records[0].id} to {self.records[-1].id})" if self.records
                        else "the lineage is empty")

    def attempt(self, number: int | None) -> tuple[int, str]:
        if not self.attempts:
            raise ToolError("no attempt yet: write one with write_candidate or edit_candidate")
        number = len(self.attempts) if number is None else number
        if not 1 <= number <= len(self.attempts):
            raise ToolError(f"no attempt {number}; there are {len(self.attempts)}")
        return number, self.attempts[number - 1]

    def add_attempt(self, source: str, how: str) -> str:
        try:
            tree = ast.parse(source)
        except SyntaxError as exc:
            raise ToolError(f"not saved: syntax error at line {exc.lineno}: {exc.msg}") from None
        entry = self.task.entry
        if not any(isinstance(node, ast.FunctionDef) and node.name == entry
                   for node in tree.body):
            raise ToolError(f"not saved: the module must define {entry}() at top level")
        findings = scan_source(source, self.task.forbidden)
        if findings:
            raise ToolError("not saved: the harness refuses this source: " + "; ".join(
                f"{f.rule} {f}" for f in findings[:5]))
        self.attempts.append(source)
        return (f"attempt {len(self.attempts)} saved ({how}; {len(source.splitlines())} lines); "
                "evaluate it with evaluate_candidate")

    def refuse_twin(self, number: int, source: str) -> None:
        """An attempt identical to a lineage candidate is neither evaluated nor submitted:
        its evaluation is in the lineage already."""
        twin = next((r for r in self.records if r.source_hash == source_hash(source)), None)
        if twin is not None:
            raise ToolError(f"attempt {number} is exactly #{twin.id} {twin.name}, already in "
                            "the lineage (read_candidate view=report shows its evaluation); "
                            "change something")

    def passing(self) -> list[tuple[int, Evaluation]]:
        """Attempts new to the lineage whose exact source passed, fastest first."""
        known = {r.source_hash for r in self.records}
        found = [(n, self.evaluations.get(source_hash(s))) for n, s in
                 enumerate(self.attempts, 1) if source_hash(s) not in known]
        passed = [(n, e) for n, e in found if e is not None and e.fitness.passed]
        return sorted(passed, key=lambda pair: -pair[1].fitness.geomean)

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


def _read_lineage(ws: Workspace, args: dict[str, Any]) -> str:
    return lineage_text(ws.records, args.get("last", 40))


def _read_candidate(ws: Workspace, args: dict[str, Any]) -> str:
    against = ws.record(args["against"]) if "against" in args else None
    return candidate_text(ws.record(args["id"]), ws.records, args.get("view", "source"), against)


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


def _write_candidate(ws: Workspace, args: dict[str, Any]) -> str:
    return ws.add_attempt(args["source"], "written whole")


def _edit_candidate(ws: Workspace, args: dict[str, Any]) -> str:
    if "candidate_id" in args and "attempt" in args:
        raise ToolError("edit_candidate: give attempt or candidate_id, not both")
    if "candidate_id" in args:
        base = ws.record(args["candidate_id"])
        source, origin = base.source, f"#{base.id}"
    else:
        number, source = ws.attempt(args.get("attempt"))
        origin = f"attempt {number}"
    count = source.count(args["old_text"]) if args["old_text"] else 0
    if count != 1:
        raise ToolError(f"old_text occurs {count} times in {origin}; it must occur exactly once "
                        "(copy it exactly, with enough context to be unique)")
    line = source[:source.index(args["old_text"])].count("\n") + 1
    return ws.add_attempt(source.replace(args["old_text"], args["new_text"]),
                          f"{origin} edited at line {line}")


def _evaluate_candidate(ws: Workspace, args: dict[str, Any]) -> str:
    number, source = ws.attempt(args.get("attempt"))
    digest = source_hash(source)
    ws.refuse_twin(number, source)
    label = f"attempt {number}"
    if digest in ws.evaluations:
        evaluation = ws.evaluations[digest]
        label += " (same source as evaluated before)"
    else:
        path = ws.scratch / "candidates" / ws.task.name / f"{ws.label}_a{number}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
        ws.log(f"  evaluating attempt {number} ...")
        evaluation = evaluate(path, ws.eval_settings)
        path.unlink(missing_ok=True)
        ws.evaluations[digest] = evaluation
    fitness = evaluation.fitness
    ws.log(f"  attempt {number}: " + (f"passed, geomean {fitness.geomean:.4g}" if fitness.passed
                                      else f"failed ({fitness.reason})"))
    return report_text(label, evaluation.report, fitness.reason, best_committed(ws.records))


def _submit_candidate(ws: Workspace, args: dict[str, Any]) -> str:
    number, source = ws.attempt(args["attempt"])
    evaluation = ws.evaluations.get(source_hash(source))
    if evaluation is None:
        raise ToolError(f"attempt {number} has not been evaluated; evaluate_candidate first "
                        "(only a version that passed its evaluation can be submitted)")
    if not evaluation.fitness.passed:
        raise ToolError(f"attempt {number} failed its evaluation ({evaluation.fitness.reason}); "
                        "only a version that passed can be submitted")
    ws.refuse_twin(number, source)
    rationale = " ".join(args["rationale"].split())
    if not rationale:
        raise ToolError("the rationale is empty: say what changed, why, and what you measured")
    best = best_committed(ws.records)
    parents = args.get("parents", [best.id] if best is not None else [])
    for parent in parents:
        ws.record(parent)
    ws.submission = Submission(source, list(parents), rationale, number)
    return (f"attempt {number} submitted (geomean here {evaluation.fitness.geomean:.4g}); the "
            "loop evaluates it again and commits it if it is at least as fast as the best")


_ATTEMPT = {"type": "integer", "description": "attempt number (default: the latest)"}
TOOLS: dict[str, Tool] = {tool.name: tool for tool in (
    Tool("read_lineage",
         "Every candidate evaluated so far for this task, over all runs: id, name, operator, "
         "status, geomean TFLOP/s and ratio to the best committed, size of its change against "
         "its parent, rationale and failure reason; then the TFLOP/s per benchmark "
         "configuration of those that passed.",
         {"last": {"type": "integer", "description": "show only the latest N (default 40)"}},
         (), _read_lineage),
    Tool("read_candidate",
         "One lineage candidate: its source, its unified diff against its parent (or against "
         "another candidate), or the compact report of its evaluation.",
         {"id": {"type": "integer", "description": "the candidate's lineage id (#id)"},
          "view": {"type": "string", "enum": ["source", "diff", "report"],
                   "description": "what to show (default: source)"},
          "against": {"type": "integer", "description": "for view=diff: compare with this id"}},
         ("id",), _read_candidate),
    Tool("search_knowledge",
         "Search the knowledge base (task contract, Triton and Hopper, the attention "
         "algorithm and its optimisations, how the harness measures, measured baselines); "
         "returns the best matching sections whole.",
         {"query": {"type": "string", "description": "keywords"}}, ("query",),
         _search_knowledge),
    Tool("read_knowledge",
         "Read one knowledge-base section by its id (as listed in the contents, e.g. "
         "'triton#tensor-descriptors-tma'), or a whole file by its name (e.g. 'baselines').",
         {"section": {"type": "string", "description": "a section id or a file name"}},
         ("section",), _read_knowledge),
    Tool("write_candidate",
         "Save a complete candidate module as a new attempt (checked for syntax, the entry "
         "function and forbidden calls; not yet evaluated).",
         {"source": {"type": "string", "description": "the whole Python module"}},
         ("source",), _write_candidate),
    Tool("edit_candidate",
         "Save a new attempt made by replacing one exact, unique piece of text in an attempt "
         "(default: the latest) or in a lineage candidate (candidate_id). Cheaper than "
         "rewriting the whole module for a targeted change.",
         {"old_text": {"type": "string", "description": "text that occurs exactly once"},
          "new_text": {"type": "string", "description": "its replacement"},
          "attempt": _ATTEMPT,
          "candidate_id": {"type": "integer", "description": "start from this lineage id"}},
         ("old_text", "new_text"), _edit_candidate),
    Tool("evaluate_candidate",
         "Run the harness on an attempt: the same pytest evaluation the loop uses (correctness "
         "against a float64 reference with hypothesis, then timing). Returns the correctness "
         "outcome (on failure: rule, minimal failing input, error statistics, replay command), "
         "each benchmark configuration's median time and TFLOP/s against the best committed "
         "candidate, and the geomean. Takes a while: evaluate deliberately.",
         {"attempt": _ATTEMPT}, (), _evaluate_candidate),
    Tool("submit_candidate",
         "Submit an attempt as this step's candidate; ends the step. Refused unless that exact "
         "source passed evaluate_candidate in this step. The loop evaluates it again and "
         "commits it if its geomean is at least the best committed one.",
         {"attempt": {"type": "integer", "description": "the attempt to submit"},
          "rationale": {"type": "string", "description": "what changed, why it should be "
                        "faster, and what the evaluation showed"},
          "parents": {"type": "array", "items": {"type": "integer"},
                      "description": "lineage ids it derives from (default: the best "
                      "committed)"}},
         ("attempt", "rationale"), _submit_candidate),
)}
