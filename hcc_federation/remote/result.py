"""The outcome of one remote command."""

from dataclasses import dataclass


@dataclass(frozen=True)
class CommandResult:
    """What a finished remote command left: its exit status and its (capped) output."""

    argv: tuple[str, ...]
    exit_status: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def text(self) -> str:
        """stdout decoded as UTF-8; undecodable bytes are replaced, never fatal."""
        return self.stdout.decode("utf-8", "replace")

    def error_text(self) -> str:
        return self.stderr.decode("utf-8", "replace").strip()
