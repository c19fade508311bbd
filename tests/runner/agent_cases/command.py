"""The `command` agent's case for the agent contract tests: any program, run from an argv
template, with the prompt and harness handed over as files and variables. It has no output
format and no CLI of its own, so it takes part in the module contract only."""

from __future__ import annotations

from runner.agents.command import Command
from runner.contract import AgentConfig
from tests.runner.agent_cases.base import AgentCase, ArgvCase

AGENT = AgentCase(
    cli="command",
    agent_class=Command,
    default_binary="",  # none: the program is the template's argv[0]
    skills_dir=".agents/skills",
    config=AgentConfig.model_validate({"cli": "command", "argv": ("agent",)}),
    argv_cases=(
        ArgvCase(
            "every placeholder expands; doubled braces are literal",
            AgentConfig.model_validate(
                {
                    "cli": "command",
                    "argv": (
                        "my-agent",
                        "--task={prompt}",
                        "{prompt_file}",
                        "--instructions",
                        "{instructions_file}",
                        "--in",
                        "{workspace}",
                        "{ticket}",
                        "{{not a placeholder}}",
                        "--model={model}",
                    ),
                    "model": "local-7b",
                    "extra_args": ("--ticket-again", "{ticket}"),
                }
            ),
            binary="ignored",
            argv=lambda tmp: [
                "my-agent",
                "--task=Write hello.txt",
                str(tmp / "prompt.md"),
                "--instructions",
                str(tmp / "instructions.md"),
                "--in",
                str(tmp / "repo"),
                "octo/hello#1",
                "{not a placeholder}",
                "--model=local-7b",
                "--ticket-again",
                "octo/hello#1",
            ],
            written={
                "prompt.md": "Write hello.txt",
                "instructions.md": "You are the coder harness.",
            },
        ),
    ),
    own_env=lambda run: {
        "OPENASE_PROMPT_FILE": str(run.prompt_file),
        "OPENASE_INSTRUCTIONS_FILE": str(run.prompt_file.with_name("instructions.md")),
        "OPENASE_TICKET": run.ticket_key,
        "OPENASE_WORKSPACE": str(run.workspace),
    },
    provider_env={"OPENAI_API_KEY": "sk-test"},
)
