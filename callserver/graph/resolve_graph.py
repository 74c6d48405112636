"""Load-time checks that need more than one key: references between agents, tools,
guardrails, prompt files and placeholders. Produces a GraphSpec or reports issues."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agents import FunctionTool
from agents.guardrail import OutputGuardrail

from callserver.graph.builtin_tools import end_call_tool
from callserver.graph.errors import ConfigIssue, no_such
from callserver.graph.graph_models import AgentSpec, GraphFile
from callserver.graph.placeholders import check_template
from callserver.graph.resolve_analysis import resolve_post_call
from callserver.graph.resolve_dtmf import resolve_dtmf
from callserver.graph.resolve_engine import check_engine
from callserver.graph.resolve_tools import resolve_guardrail, resolve_tool
from callserver.graph.spec import AgentPlan, GraphSpec, Limits, handoff_tool_name
from callserver.graph.yamlsrc import LineDict, format_path, locate


class GraphResolver:
    """Resolves one validated graph file; collects issues instead of stopping at the first."""

    def __init__(
        self,
        file: Path,
        shown: str,
        data: Any,
        env: Mapping[str, str],
        known_bad: set[tuple[str, str]] | None = None,
    ) -> None:
        self.known_bad = known_bad or set()
        """Entries already reported as invalid: references to them are not errors again."""
        self.file = file
        self.shown = shown
        self.data = data
        self.env = env
        self.issues: list[ConfigIssue] = []
        self.warnings: list[str] = []
        self.extra_files: list[Path] = []
        self.variables: tuple[str, ...] = ()
        """Variables the graph declares: ``{{ var.NAME }}`` may name only these."""

    def report(self, path: list[str | int], message: str) -> None:
        line, _ = locate(self.data, path)
        self.issues.append(ConfigIssue(self.shown, line, format_path(path), message))

    def warn(self, message: str) -> None:
        self.warnings.append(f"{self.shown}: {message}")

    def _value_line(self, path: list[str | int]) -> int:
        node: Any = self.data
        for part in path[:-1]:
            node = node[part]
        if isinstance(node, LineDict):
            return node.value_lines.get(path[-1], node.key_lines.get(path[-1], 1))
        return 1

    def _template(self, text: str, path: list[str | int], file: str | None = None) -> None:
        first = 1 if file else self._value_line(path)
        for problem in check_template(text, self.variables):
            self.issues.append(
                ConfigIssue(
                    file or self.shown, first + problem.line - 1, format_path(path), problem.message
                )
            )

    def resolve(self, name: str, gf: GraphFile) -> GraphSpec | None:
        """The GraphSpec, or None when any issue was reported."""
        self.variables = tuple(gf.variables)
        try:
            ZoneInfo(gf.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            self.report(["timezone"], f"unknown time zone {gf.timezone!r} (e.g. Europe/Paris)")
        tools: dict[str, FunctionTool] = {}
        for key, spec in gf.tools.items():
            tool = resolve_tool(key, spec, self.env, self.report, self.warn)
            if tool is not None:
                tools[key] = tool
        guardrails: dict[str, OutputGuardrail[Any]] = {}
        for key, gspec in gf.guardrails.items():
            guardrail = resolve_guardrail(key, gspec, self.report)
            if guardrail is not None:
                guardrails[key] = guardrail
        if "end_call" not in gf.tools:
            tools["end_call"] = end_call_tool()
        if gf.start not in gf.agents and ("agents", gf.start) not in self.known_bad:
            self.report(["start"], no_such("agent", gf.start, gf.agents))
        if gf.greeting:
            self._template(gf.greeting, ["greeting"])
        live = check_engine(gf, self.report)
        if gf.live is not None:
            for key in ("instructions", "safety_identifier"):
                text = getattr(gf.live, key)
                if text:
                    self._template(text, ["live", key])
        self._outbound(gf)
        seen_names: dict[str, str] = {}
        plans: dict[str, AgentPlan] = {}
        for key, agent in gf.agents.items():
            display = agent.name or key
            tool_name = handoff_tool_name(display)
            if tool_name in seen_names:
                self.report(
                    ["agents", key, "name"] if agent.name else ["agents", key],
                    f"agent name {display!r} clashes with agent {seen_names[tool_name]!r} "
                    f"(both hand off as {tool_name})",
                )
            seen_names[tool_name] = key
            plan = self._agent(key, display, agent, gf, tools, guardrails)
            if plan is not None:
                plans[key] = plan
        self._unreachable(gf)
        dtmf, dtmf_issues = resolve_dtmf(
            gf.dtmf,
            agents=gf.agents,
            data=self.data,
            shown=self.shown,
            known_bad=self.known_bad,
            warn=self.warn,
        )
        self.issues.extend(dtmf_issues)
        post_call = resolve_post_call(gf.analysis, gf.redact, self.report, self.warn)
        if self.issues:
            return None
        limits = Limits(
            max_duration_s=gf.limits.max_duration,
            idle_timeout_s=gf.limits.idle_timeout,
            max_concurrent=gf.limits.max_concurrent,
        )
        return GraphSpec(
            name=name,
            file=self.shown,
            description=gf.description,
            start=gf.start,
            agents=plans,
            session=gf.session,
            limits=limits,
            greeting=gf.greeting,
            timezone=gf.timezone,
            guardrail_debounce_chars=gf.guardrail_debounce_chars,
            dtmf=dtmf,
            engine=gf.engine,
            live=live,
            post_call=post_call,
            variables=dict(gf.variables),
            outbound=gf.outbound,
        )

    def _outbound(self, gf: GraphFile) -> None:
        """The ``outbound:`` block: a dialer the engine can use, a templated message."""
        outbound = gf.outbound
        if outbound is None:
            return
        if outbound.dialer == "live" and gf.engine != "live":
            self.report(
                ["outbound", "dialer"],
                "only GPT-Live dials itself (engine: live); a realtime graph's calls are "
                "placed by Twilio (dialer: twilio)",
            )
        if outbound.leave_message:
            self._template(outbound.leave_message, ["outbound", "leave_message"])

    def _agent(
        self,
        key: str,
        display: str,
        agent: AgentSpec,
        gf: GraphFile,
        tools: Mapping[str, FunctionTool],
        guardrails: Mapping[str, OutputGuardrail[Any]],
    ) -> AgentPlan | None:
        at: list[str | int] = ["agents", key]
        before = len(self.issues)
        instructions = self._instructions(key, agent)
        agent_tools: list[FunctionTool] = []
        names: dict[str, str] = {}
        for i, tool_name in enumerate(agent.tools):
            if tool_name in names:
                self.report([*at, "tools", i], f"tool {tool_name!r} is listed twice")
            elif tool_name not in tools:
                known = [*gf.tools, "end_call"]
                if tool_name in gf.tools or ("tools", tool_name) in self.known_bad:
                    continue  # already reported where the tool is defined
                self.report([*at, "tools", i], no_such("tool", tool_name, known))
            else:
                agent_tools.append(tools[tool_name])
            names[tool_name] = "tool"
        edges: list[tuple[str, str | None]] = []
        for i, edge in enumerate(agent.handoffs):
            if ("agents", edge.agent) in self.known_bad:
                continue
            if edge.agent not in gf.agents:
                self.report([*at, "handoffs", i], no_such("agent", edge.agent, gf.agents))
                continue
            if edge.agent == key:
                self.report([*at, "handoffs", i], "an agent cannot hand off to itself")
                continue
            if any(t == edge.agent for t, _ in edges):
                self.report([*at, "handoffs", i], f"handoff to {edge.agent!r} is listed twice")
                continue
            target = gf.agents[edge.agent]
            tname = handoff_tool_name(target.name or edge.agent)
            if tname in names:
                self.report([*at, "handoffs", i], f"{tname} clashes with the tool of that name")
            names[tname] = "handoff"
            edges.append((edge.agent, edge.description))
        agent_guardrails: list[OutputGuardrail[Any]] = []
        for i, gname in enumerate(agent.output_guardrails):
            if gname in guardrails:
                agent_guardrails.append(guardrails[gname])
            elif gname not in gf.guardrails and ("guardrails", gname) not in self.known_bad:
                self.report(
                    [*at, "output_guardrails", i], no_such("guardrail", gname, gf.guardrails)
                )
        voice: Any = agent.voice
        if voice is not None and key != gf.start:
            self.report(
                [*at, "voice"],
                "only the starting agent may set a voice: the voice cannot change once the "
                "assistant has spoken (set session.voice instead)",
            )
        if len(self.issues) > before or instructions is None:
            return None
        return AgentPlan(
            key=key,
            name=display,
            instructions=instructions,
            handoff_description=agent.handoff_description,
            voice=voice.model_dump() if hasattr(voice, "model_dump") else voice,
            tools=tuple(agent_tools),
            handoffs=tuple(edges),
            guardrails=tuple(agent_guardrails),
        )

    def _instructions(self, key: str, agent: AgentSpec) -> str | None:
        if agent.instructions is not None:
            self._template(agent.instructions, ["agents", key, "instructions"])
            return agent.instructions
        at: list[str | int] = ["agents", key, "instructions_file"]
        path = (self.file.parent / str(agent.instructions_file)).resolve()
        shown = str(Path(self.shown).parent / str(agent.instructions_file))
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self.report(at, f"file not found: {shown}")
            return None
        except (OSError, UnicodeDecodeError) as exc:
            self.report(at, f"cannot read {shown}: {exc}")
            return None
        self.extra_files.append(path)
        self._template(text, at, file=shown)
        return text

    def _unreachable(self, gf: GraphFile) -> None:
        if gf.start not in gf.agents:
            return
        keyed = [a.handoff for a in gf.dtmf.keys.values() if a.handoff] if gf.dtmf else []
        seen = {gf.start, *(k for k in keyed if k in gf.agents)}
        todo = list(seen)
        while todo:
            for edge in gf.agents[todo.pop()].handoffs:
                if edge.agent in gf.agents and edge.agent not in seen:
                    seen.add(edge.agent)
                    todo.append(edge.agent)
        for key in gf.agents:
            if key not in seen:
                self.warn(
                    f"agent {key!r} cannot be reached from {gf.start!r} by handoffs or DTMF keys"
                )
