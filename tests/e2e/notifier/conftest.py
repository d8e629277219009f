import pytest

from rapport_testing.notifier import HttpSink, SmtpServer


@pytest.fixture
def smtp():
    s = SmtpServer().start()  # the SMTP server and its message status endpoint
    yield s
    s.stop()


@pytest.fixture
def sinks():
    """``sinks(behaviour)`` → an HttpSink; ``sinks(behaviour, SmsProvider)`` → the SMS provider."""
    made: list[HttpSink] = []

    def make(behaviour: str = "ok", cls: type[HttpSink] = HttpSink) -> HttpSink:
        made.append(cls(behaviour))
        return made[-1]

    yield make
    for s in made:
        s.close()
