"""``modelway worker``: the FastChat error code of each gateway error, and the command's refusals of bad options
(clear messages, exit status 2, no traceback)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from modelway.cli import main
from modelway.cluster.codes import ErrorCode, error_code
from modelway.errors import (
    AllDeploymentsFailedError,
    AuthenticationError,
    ContextLengthError,
    InvalidRequestError,
    ProviderTimeoutError,
    RateLimitError,
    UnknownModelError,
    UpstreamServerError,
)
from modelway.limits.base import LimitExceededError


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (LimitExceededError("x", code="rate_limit_exceeded", limit="rpm", retry_after=1), ErrorCode.RATE_LIMIT),
        (LimitExceededError("x", code="budget_exceeded", limit="budget", retry_after=None), ErrorCode.QUOTA_EXCEEDED),
        (UnknownModelError("x"), ErrorCode.INVALID_MODEL),
        (InvalidRequestError("x", param="temperature"), ErrorCode.PARAM_OUT_OF_RANGE),
        (InvalidRequestError("x", param=None), ErrorCode.VALIDATION_TYPE_ERROR),
        (ContextLengthError("x"), ErrorCode.CONTEXT_OVERFLOW),
        (RateLimitError("x", code="insufficient_quota"), ErrorCode.QUOTA_EXCEEDED),
        (AuthenticationError("x"), ErrorCode.INTERNAL_ERROR),
        (ProviderTimeoutError("x"), ErrorCode.CONTROLLER_WORKER_TIMEOUT),
        (UpstreamServerError("x"), ErrorCode.INTERNAL_ERROR),
        (AllDeploymentsFailedError("x", attempts=[RateLimitError("y")]), ErrorCode.RATE_LIMIT),
    ],
)
def test_error_code_mapping(exc: Exception, code: ErrorCode) -> None:
    assert error_code(exc) == code


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "glm"], "give --controller"),
        (["--controller", "http://x:1"], "at least one --model"),
        (["--controller", "http://x:1", "-m", "nope=x"], "--model nope: not a model"),
        (["--controller", "http://x:1", "-m", "demo/glm-4-flash"], "need --demo"),
        (["--controller", "http://x:1", "-m", "zhipu/glm-4=a@b"], "cannot contain '@'"),
        (["--controller", "http://x:1", "-m", "zhipu/glm-4=a", "-m", "zhipu/glm-4-flash=a"], "announced twice"),
        (["--controller", "http://x:1", "-m", "zhipu/glm-4", "--host", "0.0.0.0"], "give --worker-address"),
    ],
)
def test_cli_refuses_bad_options_clearly(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["worker", *args], env={"MODELWAY_CONFIG": ""})
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
