"""What each slash command does, and `SPECS`, every command with its usage and who may use it
(the composition root makes them the process's `Commands`)."""

from __future__ import annotations

from bot.config.states import TERMINAL, State
from bot.config.workflow import INTAKE_STATES, HarnessPin, Workflow
from bot.engine.access import Level
from bot.engine.commands.answers import ANSWER, answer
from bot.engine.commands.ask import start_ask
from bot.engine.commands.registry import Context, Outcome, Spec
from bot.engine.status_comment import render
from harness_store.errors import NotFound
from harness_store.store import pin_harness

BUSY = frozenset({State.IN_PROGRESS, State.MERGING})


def _flow(context: Context) -> Workflow | None:
    return context.decision.flow


async def run(context: Context) -> Outcome:
    config, row = context.config, context.loaded.state
    if config is None:
        return Outcome(False, "the repository's `.github/openase.yml` is invalid; see its comment.")
    name = context.command.args.split()[0] if context.command.args else None
    if name is not None:
        flow = config.workflow(name)
        if flow is None:
            known = ", ".join(f"`{n}`" for n in config.workflows)
            return Outcome(False, f"there is no workflow `{name}` (workflows: {known}).")
    else:
        intake = [f for f in config.workflows.values() if f.pickup in INTAKE_STATES]
        flow = intake[0] if intake else next(iter(config.workflows.values()))
    if (
        row is not None
        and row.state not in TERMINAL
        and row.state
        not in (
            State.FAILED,
            State.BACKLOG,
            *INTAKE_STATES,
        )
    ):
        return Outcome(False, f"the ticket is already `{row.state}`.")
    await context.decision.send_back(
        flow,
        reason=f"/run by {context.actor.mention}: workflow {flow.name}",
        last_failure=None,
        held=False,
    )
    return Outcome(True)


async def retry(context: Context) -> Outcome:
    row, flow = context.loaded.state, _flow(context)
    if row is None or flow is None:
        return Outcome(False, "this ticket has not run yet; use `/run`.")
    if row.state in BUSY and not row.needs_input:
        return Outcome(False, f"the ticket is `{row.state}` right now; `/cancel` it first.")
    if row.state == State.DONE:
        return Outcome(False, "the ticket is done; reopen it and `/run` it to start over.")
    guidance = context.command.args
    await context.decision.send_back(
        flow,
        reason=f"/retry by {context.actor.mention}",
        feedback=(
            f"## Guidance for this attempt\n\n{context.actor.mention} asked for a retry:"
            f"\n\n{guidance}"
            if guidance
            else None
        ),
    )
    return Outcome(True)


async def cancel(context: Context) -> Outcome:
    row = context.loaded.state
    if row is None or row.state in TERMINAL or row.state == State.FAILED:
        return Outcome(False, "there is nothing to cancel.")
    if row.run_id is not None:
        context.followups.cancel[row.run_id] = f"/cancel by {context.actor.mention}"
    await context.decision.transition(
        State.CANCELED,
        reason=f"/cancel by {context.actor.mention}",
        run_id=None,
    )
    return Outcome(True)


async def status(context: Context) -> Outcome:
    if context.loaded.state is None:
        return Outcome(True, "OpenASE has not picked this ticket up (label it or `/run`).")
    view = await context.decision.status_view()
    return Outcome(True, "\n\n" + render(view))


async def approve(context: Context) -> Outcome:
    row = context.loaded.state
    if row is None or row.state != State.IN_REVIEW:
        state = row.state if row is not None else "not started"
        return Outcome(False, f"there is nothing to approve: the ticket is `{state}`.")
    await context.decision.transition(
        row.state,
        reason=f"approved by {context.actor.mention} (/approve)",
        approved=True,
    )
    context.followups.merge_checks.add(context.loaded.ticket.id)
    return Outcome(True)


async def hold(context: Context) -> Outcome:
    return await _set_hold(context, True)


async def unhold(context: Context) -> Outcome:
    return await _set_hold(context, False)


async def _set_hold(context: Context, held: bool) -> Outcome:
    row = context.loaded.state
    if row is None:
        return Outcome(False, "this ticket has not been picked up; nothing to hold.")
    if row.held == held:
        return Outcome(True, "it already is." if held else "it was not on hold.")
    await context.decision.transition(
        row.state,
        reason=f"/{'hold' if held else 'unhold'} by {context.actor.mention}",
        held=held,
    )
    if not held:
        context.followups.dispatch.add(context.loaded.ticket.id)
        context.followups.merge_checks.add(context.loaded.ticket.id)
    return Outcome(True)


async def harness(context: Context) -> Outcome:
    try:
        pin = HarnessPin.parse(context.command.args.split()[0])
    except ValueError as error:
        return Outcome(False, f"{error}. Usage: `/harness NAME[@VERSION]`.")
    try:
        target = await pin_harness(
            context.session,
            context.loaded.ticket.id,
            pin.name,
            pin.version,
            pinned_by=context.actor.login,
        )
    except NotFound as error:
        return Outcome(False, f"{error}.")
    await context.decision.transition(
        context.loaded.state.state if context.loaded.state else State.BACKLOG,
        reason=f"harness pinned to {target.name}@{target.version} by {context.actor.mention}",
    )
    return Outcome(True, f"the next runs use harness `{target.name}@{target.version}`.")


async def help_(context: Context) -> Outcome:
    rows = ["| command | what it does | who |", "|---|---|---|"]
    for spec in context.commands:
        who = "anyone" if spec.needs == Level.ANYONE else "write access"
        rows.append(f"| `{spec.usage}` | {spec.summary} | {who} |")
    note = (
        "\n\nCommands go one per line, anywhere in a new comment; code, quotes and edits "
        "are ignored. `.github/openase.yml` may allow more users or teams per command "
        "under `commands:`."
    )
    return Outcome(True, "these are the commands:\n\n" + "\n".join(rows) + note)


# In the order `/help` lists them.
SPECS: tuple[Spec, ...] = (
    Spec(
        "run",
        "/run [workflow]",
        "assign the agent (as the trigger label does)",
        Level.WRITE,
        "optional",
        handler=run,
    ),
    Spec(
        "retry",
        "/retry [guidance…]",
        "run the agent again, with your guidance in its prompt",
        Level.WRITE,
        "optional",
        handler=retry,
    ),
    Spec(
        "cancel",
        "/cancel",
        "stop the running agent and cancel the ticket",
        Level.WRITE,
        "none",
        handler=cancel,
    ),
    Spec(
        "status",
        "/status",
        "reply with the ticket's state, machine, harness, attempts and cost",
        Level.ANYONE,
        "none",
        handler=status,
    ),
    Spec(
        "approve",
        "/approve",
        "approve the pull request (the human gate before merging)",
        Level.WRITE,
        "none",
        handler=approve,
    ),
    Spec(
        "hold",
        "/hold",
        "keep the ticket from starting or merging until /unhold",
        Level.WRITE,
        "none",
        handler=hold,
    ),
    Spec(
        "unhold",
        "/unhold",
        "let a held ticket start and merge again",
        Level.WRITE,
        "none",
        handler=unhold,
    ),
    Spec(
        "harness",
        "/harness NAME[@VERSION]",
        "pin this ticket's harness (the current version without @)",
        Level.WRITE,
        "required",
        handler=harness,
    ),
    Spec(
        ANSWER,
        "/answer TEXT",
        "answer the agent's question; its session goes on (a plain comment works too)",
        Level.WRITE,
        "required",
        handler=answer,
    ),
    Spec(
        "ask",
        "/ask QUESTION",
        "ask the agent about the code (read-only; no branch, no state change)",
        Level.WRITE,
        "required",
        handler=start_ask,
    ),
    Spec(
        "help",
        "/help",
        "list the commands and who may use them",
        Level.ANYONE,
        "none",
        handler=help_,
    ),
)
