"""A scripted local model server for driving the real agent CLIs in tests."""

from tests.fakes.model_server.core import ModelServer, RecordedRequest
from tests.fakes.model_server.scenario import Scenario, Step, ToolCall

__all__ = ["ModelServer", "RecordedRequest", "Scenario", "Step", "ToolCall"]
