"""What can go wrong in the harness store, each with a message a user can act on."""

from __future__ import annotations


class HarnessStoreError(Exception):
    """Base of every error the harness store raises on purpose."""


class InvalidName(HarnessStoreError):
    """A harness or skill name the store does not accept."""


class InvalidHarness(HarnessStoreError):
    """Harness text that cannot be stored: empty, too large, or not a valid template."""


class InvalidSkill(HarnessStoreError):
    """A skill folder that cannot be stored; `path` names the offending file when there is one."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class InvalidSkillPath(InvalidSkill):
    """A file path inside a skill that could escape its folder or is otherwise unusable."""


class InvalidFrontMatter(InvalidSkill):
    """SKILL.md lacks the YAML front matter (`name`, `description`) every agent CLI needs."""


class SkillTooLarge(InvalidSkill):
    """A skill over the file-count or size caps."""


class NotFound(HarnessStoreError):
    """Something looked up by name, version or id does not exist."""


class NameNotFound(NotFound):
    """No version at all exists under this name."""


class VersionNotFound(NotFound):
    """The name exists but not this version (or no row has this id)."""


class TicketNotFound(NotFound):
    """The ticket id is not in the mirror."""


class PublishConflict(HarnessStoreError):
    """Another transaction published the same version number first; retry the transaction.

    Only possible under REPEATABLE READ or SERIALIZABLE isolation: under READ COMMITTED
    the per-name lock serialises publishers.
    """


class RenderError(HarnessStoreError):
    """A harness template that could not be rendered; `line` is its line when known."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line

    def __str__(self) -> str:
        return self.message if self.line is None else f"line {self.line}: {self.message}"

    def at_line(self, line: int | None) -> RenderError:
        """The same error, placed at a template line (keeps a line already known)."""
        if self.line is not None or line is None:
            return self
        self.line = line
        return self


class TemplateSyntax(RenderError):
    """The template does not parse (or uses a filter or tag harnesses do not offer)."""


class UndefinedVariable(RenderError):
    """The template used a variable that was not given; `variable` names it (`ticket.foo`)."""

    def __init__(self, variable: str, *, line: int | None = None) -> None:
        super().__init__(f"undefined variable {variable!r}", line=line)
        self.variable = variable


class UntrustedVariable(UndefinedVariable):
    """The template used text third parties write (`ticket.body`), which harnesses never get:
    it reaches the agent in its prompt, fenced as untrusted input."""

    def __init__(self, variable: str, why: str, *, line: int | None = None) -> None:
        super().__init__(variable, line=line)
        self.message = (
            f"{variable!r} is not available to harnesses: {why}, so it reaches the agent only "
            "in its prompt, fenced as untrusted input, never in its instructions. Remove it "
            "from the harness"
        )


class UnsafeTemplate(RenderError):
    """The template reached for something the sandbox refuses (Python internals, calls)."""


class RenderLimitExceeded(RenderError):
    """Rendering would use more output, memory or time than a harness may."""
