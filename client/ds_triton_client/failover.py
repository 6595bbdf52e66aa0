"""One call's walk over the endpoints: which to try next, when to stop, what to raise (no I/O).

The sync and async clients drive a ``Failover`` from their one I/O loop each; every
decision (retry or not, backoff, ejection, the error the caller sees) is made here.
"""

from __future__ import annotations

from collections.abc import Callable

from ds_triton_client.balancer import Balancer, EndpointState
from ds_triton_client.endpoints import Endpoint
from ds_triton_client.errors import ClientError, DeadlineExceededError, StreamInterruptedError, map_error
from ds_triton_client.retry import Deadline, RetryPolicy


class Failover:
    """The attempts of one call, each on the best endpoint not yet tried.

    Args:
        balancer: Picks endpoints and records outcomes.
        retry: How many attempts, and the backoff between them.
        deadline: Covers the call and all its retries.
        on_success: Called once when an attempt succeeds (the client watches the model).
    """

    def __init__(
        self,
        balancer: Balancer,
        retry: RetryPolicy,
        deadline: Deadline,
        on_success: Callable[[], None] = lambda: None,
    ) -> None:
        self._balancer = balancer
        self._retry = retry
        self._deadline = deadline
        self._on_success = on_success
        self._tried: list[Endpoint] = []
        self._attempts = 0
        self._last: ClientError | None = None

    def next_endpoint(self) -> EndpointState:
        """Start the next attempt on the endpoint the balancer prefers.

        Raises:
            DeadlineExceededError: The deadline passed (naming the last error, if any).
        """
        if self._deadline.expired():
            cause = f"; last error: {self._last}" if self._last else ""
            raise DeadlineExceededError(
                f"deadline of {self._deadline.seconds:.3g}s passed after {self._attempts} attempt(s){cause}",
                self._last.endpoint if self._last else None,
            )
        self._attempts += 1
        return self._balancer.acquire(avoid=self._tried)

    def failed(self, state: EndpointState, exc: BaseException, started: bool = False) -> float:
        """Record a failed attempt; return the seconds to wait before the next one.

        Args:
            state: The attempt's endpoint.
            exc: What went wrong (any transport exception; it is typed here).
            started: The attempt had already delivered output (a stream), so it is never repeated.

        Raises:
            StreamInterruptedError: ``started`` was true.
            ClientError: The typed error, when the retry policy allows no other attempt.
        """
        error = map_error(exc, state.endpoint.url)
        self._balancer.release(state, failure=str(error) if error.counts_against_endpoint else None)
        if started:
            raise StreamInterruptedError(
                f"stream broke after it started: {error.message}", error.endpoint, error.status
            ) from exc
        if not self._retry.should_retry(error, self._attempts):
            raise error from exc
        self._tried.append(state.endpoint)
        self._last = error
        return min(self._retry.delay(self._attempts), self._deadline.remaining())

    def succeeded(self, state: EndpointState) -> None:
        self._balancer.release(state)
        self._on_success()

    def abandoned(self, state: EndpointState) -> None:
        """The caller stopped (closed a stream, was cancelled): not the endpoint's fault."""
        self._balancer.release(state)
