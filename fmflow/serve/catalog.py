"""The flows a server offers: each with its program, signature and HTTP models.

A flow's request model has one field per input, typed by the same pydantic
annotations the runtime validates with (``program.types``), and forbids
unknown keys; request bodies are validated against it in strict JSON mode
(a string is not an int, ``1.5`` is not an int, an enum is its member's name).
The response model is ``{output: <the flow's output type>, run_id: str}``.
Both describe the flow in ``/openapi.json`` and ``GET /flows``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from .. import ast
from ..defaults import NOT_CONSTANT, constant_value
from ..runtime import Program
from ..runtime.inputs import InputError, check_input_types
from ..runtime.outputs import describe_errors

_REQUEST_CONFIG = ConfigDict(extra="forbid", protected_namespaces=())


class FlowNameClash(ValueError):
    """Two served files declare a flow of the same name (a usage error)."""


@dataclass
class InputProblem:
    input: str | None        # the input the problem is about; None for the body as a whole
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"input": self.input, "message": self.message}


class InvalidInputs(Exception):
    """A request body that is not a valid set of the flow's inputs; ``problems`` names each."""

    def __init__(self, flow: str, problems: list[InputProblem]) -> None:
        self.flow = flow
        self.problems = problems
        listed = "; ".join(p.message for p in problems)
        super().__init__(f"flow '{flow}': invalid input{'s' if len(problems) > 1 else ''}: {listed}")


class ServedFlow:
    """One flow of one program, with the models that describe it over HTTP."""

    def __init__(self, program: Program, decl) -> None:
        self.program = program
        self.decl = decl
        self.name: str = decl.name
        self.params, self.returns = program.signature(decl)
        self.input_names = [name for name, _ in self.params]
        types = program.types
        # Attribute names of our own, each input's name as its alias: an input may be called
        # `copy`, `schema` or `model_config`, names that pydantic keeps for itself.
        fields = {f"input_{i}": (types.annotation(t), _input_field(program, decl, param))
                  for i, (param, (_name, t)) in enumerate(zip(decl.params, self.params))}
        self.request_model: type[BaseModel] = create_model(
            f"{self.name}_input", __config__=_REQUEST_CONFIG, __doc__=decl.doc.text if decl.doc else None, **fields)
        self.response_model: type[BaseModel] = create_model(
            f"{self.name}_response", output=(types.annotation(self.returns), ...), run_id=(str, ...))

    @property
    def file(self) -> str:
        return self.program.path

    def parse_inputs(self, body: bytes) -> dict[str, Any]:
        """The inputs of a request body as JSON data, or InvalidInputs naming every bad one."""
        try:
            data = json.loads(body) if body.strip() else None
        except ValueError as error:
            raise InvalidInputs(self.name, [InputProblem(None, f"the body is not valid JSON ({error})")]) from None
        if not isinstance(data, dict):
            raise InvalidInputs(self.name, [InputProblem(
                None, f"the body must be a JSON object of the flow's inputs ({self._inputs_text()})")])
        try:
            self.request_model.model_validate_json(body, strict=True)
        except ValidationError as error:
            raise InvalidInputs(self.name, self._problems(error)) from None
        try:  # what the runtime refuses too (unknown fields of nested types, lone surrogates): a 422, not a 500
            check_input_types(self.params, data, self.program.resolver_for_fields)
        except InputError as error:
            raise InvalidInputs(self.name, [InputProblem(error.input, str(error))]) from None
        return data

    def _problems(self, error: ValidationError) -> list[InputProblem]:
        problems = []
        for detail, message in zip(error.errors(include_url=False), describe_errors(error)):
            name = str(detail["loc"][0]) if detail["loc"] else None
            if detail["type"] == "extra_forbidden":
                message = f"{name}: no such input ({self._inputs_text()})"
            elif detail["type"] == "missing" and len(detail["loc"]) == 1:
                message = f"{name}: missing input"
            problems.append(InputProblem(name, message))
        return problems

    def _inputs_text(self) -> str:
        return "inputs: " + (", ".join(self.input_names) or "none")

    def input_schema(self) -> dict[str, Any]:
        return self.request_model.model_json_schema()

    def output_schema(self) -> dict[str, Any]:
        return self.program.types.json_schema(self.returns)

    def describe(self) -> dict[str, Any]:
        """The flow as `GET /flows` lists it."""
        return {"name": self.name, "file": self.file, "path": f"/flows/{self.name}",
                "stream": f"/flows/{self.name}/stream", "input_schema": self.input_schema(),
                "output_schema": self.output_schema()}


def _input_field(program: Program, flow, param):
    """An input's request field: required unless it has a default; its `##` doc as description.

    The JSON schema shows a constant default; any other is evaluated by the run,
    so the field only becomes optional (a default_factory is not in schemas).
    """
    description = param.doc.text if param.doc is not None else None
    if param.default is None:
        return Field(..., alias=param.name, description=description)
    value = constant_value(param.default, lambda name: isinstance(program.lookup(name, within=flow), ast.EnumDecl))
    if value is NOT_CONSTANT:
        return Field(default_factory=lambda: None, alias=param.name, description=description)
    return Field(default=value, alias=param.name, description=description)


class FlowCatalog:
    """Every served flow by name; names are unique across the served files."""

    def __init__(self, flows: list[ServedFlow]) -> None:
        self.flows: dict[str, ServedFlow] = {}
        for flow in flows:
            other = self.flows.get(flow.name)
            if other is not None:
                raise FlowNameClash(f"flow '{flow.name}' is declared in both {other.file} and {flow.file}; "
                                    "serve them from separate servers or rename one")
            self.flows[flow.name] = flow

    @classmethod
    def from_programs(cls, programs: list[Program]) -> "FlowCatalog":
        seen: set[str] = set()
        flows = []
        for program in programs:
            real = os.path.realpath(program.path)
            if real in seen:  # the same file named twice (or a file and its folder)
                continue
            seen.add(real)
            flows.extend(ServedFlow(program, decl) for decl in program.flows())
        return cls(flows)

    def __iter__(self):
        return iter(self.flows.values())

    def __len__(self) -> int:
        return len(self.flows)

    def get(self, name: str) -> ServedFlow | None:
        return self.flows.get(name)
