import pytest

from rapport_notifier.testing import HttpSink, SmtpServer


@pytest.fixture
def smtp():
    s = SmtpServer()
    s.controller.start()
    yield s
    s.controller.stop()


@pytest.fixture
def sinks():
    made: list[HttpSink] = []

    def make(behaviour: str = "ok") -> HttpSink:
        made.append(HttpSink(behaviour))
        return made[-1]

    yield make
    for s in made:
        s.close()

